# Shared helpers: names, cross-key config checks, wildcard constraints, targets. Wiring only.
import dataclasses
import re

from snakemake.utils import Paramspace

from tunejudge.data.builders import required_fields
from tunejudge.models import bases as B  # torch-free: parsing the DAG loads no torch
from tunejudge.models.endpoint import endpoint_of, endpoints
from tunejudge.run import runs as R
from tunejudge.run.checks import HUB_SIZES, check_panel, check_references, processes_over_nodes
from tunejudge.run.config import PER_RUN_JUDGE, PRIMARY_JUDGE, load_file, panel_judge, split_runtime
from tunejudge.run.hub import dataset_key, is_hub
from tunejudge.run.numerics import resolve as resolve_numerics

SOURCES = list(config["sources"])
EXPERIMENTS = list(config["experiments"])
MODELS = list(config["models"])
TRAINED = [m for m, spec in config["models"].items() if R.trains(spec)]
GPT2_SIZE = config["gpt2"]["size"]
# Base models (tunejudge.models.bases): the gpt2 section is the base named gpt2; each model names its base.
BASES = B.bases_of(config)
# Models behind an OpenAI-compatible endpoint (models.<m>.endpoint; answered by respond_endpoint): no base, no training
ENDPOINTS = list(endpoints(config))
MODEL_BASE = {m: B.base_of_model(config, m) for m in MODELS if m not in ENDPOINTS}
FINETUNE = {m: B.finetune_of(config, m) for m in MODELS}
USED_BASES = sorted(set(MODEL_BASE.values()))
HF_BASES = [b for b in USED_BASES if BASES[b].family == "transformers"]
HUB_BASES = [b for b in HF_BASES if BASES[b].hub]
GPT2_USED = B.GPT2_BASE in USED_BASES
# Runs (tunejudge.run.runs): each model once per seed (the first seed keeps the model's name), and each sweep
# point (a Paramspace instance pattern) once per seed, under sweeps/<sweep>/<point>/seed<s>.
SWEEPS = {s: Paramspace(R.sweep_table(config, s), filename_params="*", single_wildcard="point")
          for s in config.get("sweeps") or {}}
STUDY_RUNS = R.model_runs(config)
SWEEP_RUNS = {s: R.sweep_runs(config, s, list(space.instance_patterns)) for s, space in SWEEPS.items()}
RUN = {r.name: r for r in STUDY_RUNS + [r for runs in SWEEP_RUNS.values() for r in runs]}
NATIVE_RUNS = [n for n, r in RUN.items() if r.model not in ENDPOINTS]  # answered by respond; endpoint models by respond_endpoint
REPLICATES = [r.name for r in STUDY_RUNS if r.name != r.model]  # the extra seeds of the models
JUDGED = [r.name for r in STUDY_RUNS] + [n for n, r in RUN.items() if r.sweep and r.judged]
TRAINED_RUNS = [n for n, r in RUN.items() if r.trained]
NO_MATCH = "(?!x)x"  # a wildcard constraint that matches nothing (no base of that kind)
LOGS = "results/logs"
BENCH = "results/benchmarks"

GENERATED = [s for s, spec in config["sources"].items() if spec.get("generate")]
AUDIT = config["curation"].get("audit") or {}
AUDITED = list(AUDIT.get("sources") or [])
# what the JSON schema cannot say: references between keys, reserved names (tunejudge.run.checks)
check_references(config, FINETUNE, GPT2_USED)

wildcard_constraints:
    source="|".join(SOURCES),
    experiment="|".join(EXPERIMENTS),
    model="|".join(re.escape(r) for r in RUN),  # a run: a model, a replicate, a sweep point's seed


def _reads_loader(spec):
    """Whether a source's builder reads its loader's rows: not with a download, nor when RAGAS rows
    replace them (generate.mode: replace)."""
    gen = spec.get("generate")
    return not spec.get("download") and not (gen and gen.get("mode", "replace") == "replace")


def _hub_datasets():
    """Every Hub corpus split the config reads: dataset key -> (loader, the config key naming it)."""
    out = {}
    for s, spec in config["sources"].items():
        gen = spec.get("generate") or {}
        if _reads_loader(spec) and is_hub(spec["loader"]):
            out.setdefault(dataset_key(spec["loader"]), (spec["loader"], f"sources.{s}.loader"))
        if gen and is_hub(gen["articles"]):
            out.setdefault(dataset_key(gen["articles"]), (gen["articles"], f"sources.{s}.generate.articles"))
    for key, spec in (config.get("meta_eval") or {}).items():
        if isinstance(spec, dict) and is_hub(spec["loader"]):
            out.setdefault(dataset_key(spec["loader"]), (spec["loader"], f"meta_eval.{key}.loader"))
    return out


HUB_DATASETS = _hub_datasets()


def hub_manifest(loader):
    """The download rule's manifest for a Hub loader (none for local files)."""
    return [f"data/hub/{dataset_key(loader)}.json"] if is_hub(loader) else []


def meta_files():
    """The local files the meta-evaluation's loaders read (none for Hub loaders: their manifests)."""
    return [f for spec in (config.get("meta_eval") or {}).values() if isinstance(spec, dict)
            for f in _local_files(spec["loader"])]


def source_download(source):
    return config["sources"][source].get("download")


def _local_files(loader):
    files = loader.get("data_files") or []
    return [files] if isinstance(files, str) else list(files)


def source_files(wildcards):
    """Local files a source's builder reads: its download, or the loader's data_files (none when
    the source's rows are all generated)."""
    spec = config["sources"][wildcards.source]
    if spec.get("generate") and spec["generate"].get("mode", "replace") == "replace":
        return []
    if spec.get("download"):
        return [f"data/raw/{wildcards.source}/{spec['download']['file']}"]
    return _local_files(spec["loader"])


def source_hub(wildcards):
    """The Hub manifest of a source whose builder reads a Hub corpus (fetched by download_corpus)."""
    spec = config["sources"][wildcards.source]
    return hub_manifest(spec["loader"]) if _reads_loader(spec) else []


def generated_file(wildcards):
    """The RAGAS test set a source's builder reads, for sources with `generate`."""
    if config["sources"][wildcards.source].get("generate"):
        return [f"data/generated/{wildcards.source}/ragas_testset.jsonl"]
    return []


def article_files(wildcards):
    return _local_files(config["sources"][wildcards.source]["generate"]["articles"])


def article_hub(wildcards):
    return hub_manifest(config["sources"][wildcards.source]["generate"]["articles"])


def audit_file(wildcards):
    return [f"data/audit/{wildcards.source}.json"] if wildcards.source in AUDITED else []


# Preference sets (preferences.<set>): the samples they rank, who ranks them, the models that train on them.
PREFERENCES = config.get("preferences") or {}
SAMPLED = [s for s, spec in PREFERENCES.items() if spec["from"] in ("verifiable", "judge")]
JUDGED_SETS = [s for s, spec in PREFERENCES.items() if spec["from"] == "judge"]


def tuned_models():
    """Each preference-tuned model: its set, the model it started from, the set's sources (for the report)."""
    out = {}
    for m in MODELS:
        ft = FINETUNE[m] or {}
        if ft.get("method") == "dpo":
            out[m] = {"set": ft["preferences"], "init": ft.get("init"),
                      "sources": PREFERENCES[ft["preferences"]].get("sources") or []}
    return out


def used_preference_sets():
    """Each preference set some model trains on: the models that do."""
    out = {}
    for m, spec in tuned_models().items():
        out.setdefault(spec["set"], []).append(m)
    return out


def preference_experiment(s):
    spec = PREFERENCES[s]
    return spec.get("experiment") or config["models"][spec["model"]]["experiment"]


def sample_settings(s):
    """What decides a set's samples: the prompts (sources, how many), the sampling, the seed."""
    spec = PREFERENCES[s]
    keys = ("sources", "prompts", "samples", "temperature", "top_p", "max_new_tokens")
    return {**{k: spec.get(k) for k in keys}, "experiment": preference_experiment(s), "seed": config["seed"]}


CONTROLS = config["judge"].get("controls") or {"enabled": False}
PAIRWISE = config["judge"].get("pairwise") or {"enabled": False}
# Adversarial controls (judge.controls.adversarial): the primary judge's, beside its controls.
ADVERSARIAL = (CONTROLS.get("adversarial") or {}) if CONTROLS.get("enabled") else {}
NULL_MODEL = "null_model"  # the null model of pairwise judging (tunejudge.judge.adversarial.NULL_MODEL)


# The judge panel (judge.panel.judges): more judges, each the judge section with some keys changed.
PANEL = check_panel(config["judge"], load_file(os.path.join(workflow.basedir, "config/schema.yaml")))
PANEL_THRESHOLDS = {k: (config["judge"].get("panel") or {}).get(k, d) for k, d in (("min_spearman", 0.6), ("min_kappa", 0.4))}


def judge_settings(name=None):
    """One judge's settings that change verdicts (not its concurrency, retries, budget, prices: the
    script reads those from the config; nor the controls, pairwise and panel settings of the run)."""
    settings = split_runtime("judge", panel_judge(config["judge"], name))[0]
    return {k: v for k, v in settings.items() if k not in PER_RUN_JUDGE}


def panel_rows():
    """Every panel judge's verdicts on every model's answers."""
    return [f"results/judge/panel/{j}/{m}.jsonl" for j in PANEL for m in MODELS]


def panel_control_rows():
    """Every panel judge's control verdicts, when judge.controls is on."""
    return [f"results/judge/panel/{j}/controls.jsonl" for j in PANEL] if CONTROLS.get("enabled") else []


def pairwise_rows():
    """Pairwise verdicts of every pair in analysis.pairs, when judge.pairwise is on."""
    if not PAIRWISE.get("enabled"):
        return []
    return [f"results/judge/pairwise/{a}_vs_{b}.jsonl" for a, b in config["analysis"]["pairs"]]


def control_rows():
    """The judge's control verdicts, when judge.controls is on."""
    return ["results/judge/controls.jsonl"] if CONTROLS.get("enabled") else []


def adversarial_rows():
    """The judge's adversarial control verdicts, when judge.controls.adversarial is on."""
    return ["results/judge/adversarial.jsonl"] if ADVERSARIAL.get("enabled") else []


def pairwise_null_rows():
    """The null model against every model, pairwise, when judge.pairwise is on."""
    return [f"results/judge/pairwise/{NULL_MODEL}_vs_{m}.jsonl" for m in MODELS] if PAIRWISE.get("enabled") else []


def panel_controls():
    """The controls a panel judge runs: the arms with a known verdict, not the adversarial ones (the
    primary judge's)."""
    return {k: v for k, v in CONTROLS.items() if k != "adversarial"}


def llm_settings():
    """The judge settings that decide what an LLM answers for RAGAS and the auditor: not the metrics,
    nor the judge's own max_tokens."""
    return {k: v for k, v in judge_settings().items() if k not in ("metrics", "max_tokens")}


def model_of(run):
    """The config model whose recipe a run (a model, a replicate, a sweep point) is."""
    return RUN[run].model


def base_spec(run):
    """The base a run is built on, as the scripts rebuild it (tunejudge.models.bases.BaseSpec)."""
    return dataclasses.asdict(BASES[MODEL_BASE[model_of(run)]])


def get_base_weights(wildcards):
    """What a run starts from: its base's weights (a GPT-2 checkpoint, or a transformers base's prepared
    folder), or, for a model with init (preference tuning after SFT), that model's export."""
    init = (FINETUNE[model_of(wildcards.model)] or {}).get("init")
    if init:
        return f"results/models/{init}/hf"
    return B.base_weights(BASES[MODEL_BASE[model_of(wildcards.model)]])


def get_weights_check(wildcards):
    """The weights check of a run's base (none for a random init or a check turned off)."""
    return B.weights_check(BASES[MODEL_BASE[model_of(wildcards.model)]])


def get_base_source(wildcards):
    """What prepare_base reads: the download's manifest, the GGUF file, or the folder's files."""
    return B.base_inputs(BASES[wildcards.base])


def base_files():
    """Per used base: its label, its weights, where they came from (download_gpt2's sidecar, a Hub
    base's manifest) and its check's output; provenance, the report and their inputs read this."""
    out = {}
    for b in USED_BASES:
        spec, checks = BASES[b], B.weights_check(BASES[b])
        if spec.family == "gpt2":
            source = f"data/pretrained/{spec.size}/source.json" if spec.weights == "pretrained" else None
        else:
            source = f"data/bases/{b}/source.json" if spec.hub else None
        out[b] = {"label": spec.label(), "weights": B.base_weights(spec), "source": source,
                  "check": checks[0] if checks else None}
    return out


def used_weights():
    return sorted({f["weights"] for f in base_files().values()})


def used_checks():
    return sorted({f["check"] for f in base_files().values() if f["check"]})


def weights_source():
    return sorted({f["source"] for f in base_files().values() if f["source"]})


def report_bases():
    """Per used base, what the report says of it: base_files plus family, prompt, how each of its models
    is fine-tuned, and whether the judge runs on the same weights."""
    return {b: {**f, "family": BASES[b].family, "prompt": BASES[b].prompt,
                "finetune": {m: FINETUNE[m] for m in MODELS if MODEL_BASE.get(m) == b},
                "judge_shares_weights": B.judge_shares_weights(config["judge"], BASES[b])}
            for b, f in base_files().items()}


def length_policy():
    """Curation's length policy, applied again in each model's own tokens by training and generation."""
    return config["curation"].get("length_policy", "drop")


def split_dir(run):
    """Where a run's train and val splits are: its model's experiment's, or, for a sweep point that sets
    experiment.size, that experiment at that size (rule split_size)."""
    r = RUN[run]
    exp = config["models"][r.model]["experiment"]
    size = r.experiment_size()
    return f"data/splits/{exp}" if size is None else f"data/splits/{exp}/size{size}"


def preference_file(run):
    """The preference set a preference-tuned run trains on (its train and val pairs), else None."""
    ft = FINETUNE[model_of(run)] or {}
    return f"data/preferences/{ft['preferences']}.jsonl" if ft.get("method") == "dpo" else None


def get_train_split(wildcards):
    return preference_file(wildcards.model) or f"{split_dir(wildcards.model)}/train.json"


def get_val_split(wildcards):
    return preference_file(wildcards.model) or f"{split_dir(wildcards.model)}/val.json"


def model_weights(wildcards):
    """The weights a run answers with: its base's, or its fine-tuned export."""
    if RUN[wildcards.model].trained:
        return f"results/models/{wildcards.model}/hf"
    return get_base_weights(wildcards)


def train_settings(run):
    """A run's training settings that change its outputs (device, checkpoint_every: read by the script):
    its model's, a sweep point's values over them, and the run's seed. Examples too long in the model's
    own tokens get curation's length policy unless train.truncation says."""
    r = RUN[run]
    merged = {"truncation": length_policy(), **config["train"],
              **config["models"][r.model].get("train", {}), **r.train_overrides(), "seed": r.seed}
    return split_runtime("train", merged)[0]


def train_processes(run):
    """(processes, nodes) of a run's training: train.processes (settings) over train.nodes (runtime)."""
    r = RUN[run]
    merged = {**config["train"], **config["models"][r.model].get("train", {}), **r.train_overrides()}
    return processes_over_nodes(merged, f"models.{r.model}")


def train_gpus(run):
    """The GPUs a training asks Snakemake for: all its processes on one machine (--resources gpu=K counts
    them); across nodes, the GPUs per node as SLURM's gres (the profile's sbatch --nodes=N --gres=gpu:G)."""
    processes, nodes = train_processes(run)
    return processes if nodes == 1 else 0


def train_gres(run):
    processes, nodes = train_processes(run)
    return f"gpu:{processes // nodes}" if nodes > 1 else ""


def finetune_of(run):
    """How a run is fine-tuned: its model's method, a sweep point's lora and dpo values over it."""
    r = RUN[run]
    ft = FINETUNE[r.model]
    return {**ft, **r.lora_overrides(), **r.dpo_overrides()} if ft else ft


def judge_threads(judge=None):
    """A judge job's threads: 2 where it serves the local judge (llama.cpp decodes on them), else 1 (it
    waits on HTTP). ``judge``: a panel judge's name; None, the judge section's own."""
    cfg = config["judge"] if judge is None else panel_judge(config["judge"], judge)
    return 2 if cfg["backend"] == "local" else 1


def generation_settings():
    return split_runtime("generation", config["generation"])[0]


def respond_numerics(run):
    """Device kind, resolved dtype and decoding kernel path of a run's answers (tunejudge.run.numerics)."""
    gen = config["generation"]
    native = gen.get("engine", "native") == "native"
    family = BASES[MODEL_BASE[model_of(run)]].family if native else None
    return resolve_numerics("generation", gen.get("dtype", "auto"), gen.get("device", "auto"), family)


def train_numerics(run):
    """Device kind and resolved dtype of a run's training (tunejudge.run.numerics)."""
    merged = {**config["train"], **config["models"][RUN[run].model].get("train", {}), **RUN[run].train_overrides()}
    return resolve_numerics("train", merged.get("dtype", "auto"), merged.get("device", "auto"))


def hub_model_repos():
    """Model repositories the download rules fetch: key -> (repo, revision, the file that says it is done)."""
    out = {}
    if GPT2_USED and config["gpt2"]["weights"] == "pretrained":
        out["weights"] = (f"openai-community/{GPT2_SIZE}", None, B.gpt2_weights(BASES[B.GPT2_BASE]))
    for b in HUB_BASES:
        out[f"base {b}"] = (BASES[b].hub["repo"], BASES[b].hub.get("revision"), f"data/bases/{b}/source.json")
    return out


def download_targets():
    """What the download rules (localrules, the only jobs that reach the network) fetch."""
    out = [f"data/hub/{key}.json" for key in HUB_DATASETS]
    out += [f"data/raw/{s}/{spec['download']['file']}" for s, spec in config["sources"].items() if spec.get("download")]
    return out + [done for _, _, done in hub_model_repos().values()]


def study_runs():
    """Every run of the study: each model, and its replicates (extra seeds)."""
    return [r.name for r in STUDY_RUNS]


def runs_of_models():
    """Each model's runs (its own, then its replicates), for the statistics over seeds."""
    return {m: [r.name for r in STUDY_RUNS if r.model == m] for m in MODELS}


def sweep_files():
    """The sweeps' table and plot, when the config has sweeps."""
    return ["results/tables/sweeps.csv", "results/plots/sweeps.png"] if SWEEPS else []


def all_targets():
    return (
        ["results/all_model_responses.json"]
        + expand("results/models/{model}/loss.png", model=[n for n in TRAINED_RUNS if not RUN[n].sweep])
        + expand("results/judge/{model}.jsonl", model=study_runs())
        + panel_rows()
        + expand("results/reference/{model}.jsonl", model=study_runs())
        + sweep_files()
        + ["results/report.md", "results/provenance.json", "results/browser.html"]
    )


def base_label(model):
    return BASES[MODEL_BASE[model]].label()


def model_label(run):
    """How every output names a run: its base, how and on what it is fine-tuned, and, for a replicate or
    a sweep point, its settings and seed; an endpoint model, its served name and where."""
    r = RUN[run]
    if r.model in ENDPOINTS:
        return endpoint_of(config, r.model).label()
    exp, ft = config["models"][r.model].get("experiment"), finetune_of(run)
    if not ft:
        return base_label(r.model) + "; no fine-tuning"
    how = "LoRA (rank {r}, alpha {alpha})".format(**ft) if B.uses_lora(ft) else "fully"
    if ft["method"] == "dpo":
        start = f" from model {ft['init']}" if ft.get("init") else ""
        label = (base_label(r.model) + f"{start}; preference-tuned {how}, {ft['loss']} loss (beta {ft['beta']}), "
                 f"on preferences {ft['preferences']}")
    else:
        label = base_label(r.model) + f"; fine-tuned {how} on experiment {exp}"
    if r.settings:
        label += " (" + ", ".join(f"{k} {v}" for k, v in r.settings.items()) + ")"
    # a model's own run keeps its label when seeds are added (a changed label would retrain it)
    return label + (f"; seed {r.seed}" if r.name != r.model else "")


def config_files():
    """The config files of this run, relative to the working directory where they lie inside it."""
    out = []
    for p in workflow.configfiles:
        p = os.path.realpath(p)
        rel = os.path.relpath(p)
        p = rel if not rel.startswith("..") else p
        if p not in out:
            out.append(p)
    return out or ["config/config.yaml"]


# ---- preference sets (rules/preference.smk)


def sample_inputs(wildcards):
    """A set's prompts (its experiment's train and val splits) and the sampling model's weights."""
    s = wildcards.set
    model = PREFERENCES[s]["model"]
    weights = f"results/models/{model}/hf" if RUN[model].trained else B.base_weights(BASES[MODEL_BASE[model]])
    return {"train": f"data/splits/{preference_experiment(s)}/train.json",
            "val": f"data/splits/{preference_experiment(s)}/val.json", "weights": weights,
            "checked": B.weights_check(BASES[MODEL_BASE[model]])}


def preference_inputs(wildcards):
    """What a set is made of: its samples and who ranked them (the judge, with its controls), or its file."""
    s, spec = wildcards.set, PREFERENCES[wildcards.set]
    if spec["from"] == "file":
        return {"file": spec["path"], "test": "data/splits/test.json"}
    out = {"samples": f"results/samples/{s}.json", "test": "data/splits/test.json"}
    if spec["from"] == "judge":
        out["judged"] = f"results/judge/samples/{s}.jsonl"
        out["controls"] = control_rows() + adversarial_rows()
    return out
