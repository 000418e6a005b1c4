"""config/schema.yaml is enforced before any job runs; the shipped configs pass it."""

import re
import subprocess

import pytest
import yaml
from conftest import REPO, SNAKEMAKE, make_workdir, snakemake
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

SCHEMA = str(REPO / "config" / "schema.yaml")


def load(name):
    return yaml.safe_load((REPO / "config" / name).read_text())


@pytest.mark.parametrize("files", [["config.yaml"], ["config.yaml", "paper.yaml"],
                                   ["config.yaml", "paper.yaml", "rehearsal.yaml"]])
def test_shipped_configs_validate(files):
    """As a run gets them: the Snakefile's config.yaml, then each `--configfile` on top."""
    from tunejudge.run.config import compose

    validate(compose([REPO / "config" / f for f in files]), SCHEMA)


def test_paper_loaders_are_exactly_papers():
    """paper.yaml on top of config.yaml: no loader keeps a key of the default's (its sample data_files)."""
    from tunejudge.run.config import compose

    paper = load("paper.yaml")
    cfg = compose([REPO / "config/config.yaml", REPO / "config/paper.yaml"])
    for source, spec in paper["sources"].items():
        assert cfg["sources"][source]["loader"] == spec["loader"], source
        assert cfg["sources"][source].get("download") == spec.get("download"), source
        if spec.get("generate"):
            assert cfg["sources"][source]["generate"]["articles"] == spec["generate"]["articles"]
    assert set(cfg["models"]) == {"base", "full", "small", "full2k"}
    assert cfg["split"]["test"]["mix"] == paper["split"]["test"]["mix"]
    assert cfg["judge"]["metrics"] == load("config.yaml")["judge"]["metrics"]  # paper.yaml inherits them


def test_a_users_override_on_top_of_paper(tmp_path):
    """--configfile config/paper.yaml my.yaml: what my.yaml names wins whole (loaders) or key by key."""
    from tunejudge.run.config import compose

    mine = tmp_path / "my.yaml"
    mine.write_text(yaml.safe_dump({
        "sources": {"sst2": {"loader": {"path": "json", "data_files": "my/sst2.jsonl", "split": "train"}},
                    "qa_squad": {"limit": 50}},
        "models": {"full": {"train": {"lr": 1.0e-4}}},
        "train": {"epochs": 3},
    }))
    cfg = compose([REPO / "config/config.yaml", REPO / "config/paper.yaml", mine])
    paper = load("paper.yaml")
    assert cfg["sources"]["sst2"]["loader"] == {"path": "json", "data_files": "my/sst2.jsonl", "split": "train"}
    assert cfg["sources"]["qa_squad"] == {**paper["sources"]["qa_squad"], "limit": 50}
    assert cfg["sources"]["agnews"]["loader"] == paper["sources"]["agnews"]["loader"]
    resolved = {m: {**cfg["train"], **spec.get("train", {})} for m, spec in cfg["models"].items()}
    assert resolved["full"]["lr"] == 1.0e-4 and resolved["small"]["lr"] == paper["train"]["lr"]
    assert all(t["epochs"] == 3 and t["micro_batch_size"] == paper["train"]["micro_batch_size"]
               for t in resolved.values())


def test_replaced_whole_only_where_named():
    from tunejudge.run.config import merge

    base = {"sources": {"a": {"loader": {"path": "json", "data_files": "x"}, "limit": 5}}, "train": {"lr": 1, "b": 2}}
    over = {"sources": {"a": {"loader": {"path": "hub/id", "split": "train"}}}, "train": {"lr": 3}}
    assert merge(base, over) == {"sources": {"a": {"loader": {"path": "hub/id", "split": "train"}, "limit": 5}},
                                 "train": {"lr": 3, "b": 2}}
    assert base["sources"]["a"]["loader"] == {"path": "json", "data_files": "x"}  # inputs untouched


def test_a_later_file_drops_a_model_by_setting_it_to_null():
    from tunejudge.run.config import compose

    cfg = compose([REPO / "config/config.yaml", REPO / "config/dpo.yaml"])
    assert "small" not in cfg["models"] and {"base", "full", "full_dpo"} <= set(cfg["models"])
    validate(cfg, SCHEMA)
    from tunejudge.run.config import merge

    assert merge({"train": {"lr": 1}}, {"train": {"lr": None}}) == {"train": {"lr": None}}  # only where named


@pytest.mark.pipeline
def test_snakemake_resolves_paper_and_an_override_as_composed(tmp_path):
    """The real Snakemake with `--configfile config/paper.yaml my.yaml`: the config it resolves is
    compose()'s, and no Hub source's job reads a bundled sample file (the bug: sample data_files
    inherited from config.yaml, which datasets then looked for inside the Hub repository)."""
    from tunejudge.run.config import compose

    wd = tmp_path / "wd"
    (wd / "config").mkdir(parents=True)
    (wd / "config/config.yaml").write_text((REPO / "config/config.yaml").read_text())
    mine = wd / "my.yaml"
    mine.write_text(yaml.safe_dump({"sources": {"qa_squad": {"limit": 50}}, "models": {"full": {"train": {"lr": 1e-4}}}}))
    cmd = ["--configfile", str(REPO / "config/paper.yaml"), str(mine)]
    dry = snakemake_plain(wd, "-n", *cmd)
    jobs = re.split(r"\n(?=(?:local)?rule \w+:)", dry.stdout)
    reading = [b for b in jobs if re.match(r"(?:local)?rule (build_instructions|generate_qa_cnn):", b)]
    assert len(reading) == 7  # six builders, one RAGAS generation
    for block in reading:
        assert "data/samples" not in block, block
    assert "data/hub/stanfordnlp--sst2--default--train.json" in dry.stdout
    snakemake_plain(wd, "results/config.yaml", "--cores", "1", *cmd)
    got = yaml.safe_load((wd / "results/config.yaml").read_text())
    want = compose([wd / "config/config.yaml", REPO / "config/paper.yaml", mine])
    validate(want, SCHEMA)  # fills the schema's defaults, as the Snakefile does
    assert got == want


def snakemake_plain(wd, *args):
    """Snakemake as a user runs it in a checkout: the working directory's config/config.yaml, then
    the --configfile files given (conftest.snakemake always names the workdir's config first)."""
    proc = subprocess.run([SNAKEMAKE, *args[:1], "--snakefile", str(REPO / "Snakefile"), *args[1:]], cwd=wd,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.mark.parametrize(
    "mutate, key",
    [
        (lambda c: c.update(sedd=1), "sedd"),
        (lambda c: c["curation"].update(max_tokens="many"), "max_tokens"),
        (lambda c: c.pop("sources"), "sources"),
        (lambda c: c["sources"]["sst2"].update(bulider="sst2"), "bulider"),
        (lambda c: c["curation"].update(length_policy="cut"), "length_policy"),
    ],
)
def test_bad_config_names_the_key(mutate, key):
    cfg = load("config.yaml")
    mutate(cfg)
    with pytest.raises(WorkflowError, match=key):
        validate(cfg, SCHEMA)


@pytest.mark.pipeline
def test_snakemake_refuses_a_bad_config_before_any_job(tmp_path):
    wd = make_workdir(tmp_path, {"curation.max_tokens": "many"})
    proc = snakemake(wd, "-n", check=False)
    assert proc.returncode != 0
    assert "max_tokens" in proc.stderr + proc.stdout
    assert not (wd / "data" / "instructions").exists()


@pytest.mark.pipeline
def test_building_the_dag_imports_neither_torch_nor_deepeval_nor_ragas(tmp_path):
    """`snakemake -n` (and --lint, and every cluster submission) parses the workflow: it must stay light."""
    import sys

    wd = make_workdir(tmp_path)
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "snakemake", "-n", "--snakefile",
                           str(REPO / "Snakefile"), "--directory", str(wd)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    assert "snakemake" in imported and "tunejudge.run.config" in imported
    assert not {"torch", "deepeval", "ragas", "datasets", "transformers"} & imported


def test_runtime_settings_split_at_any_depth_and_come_back_whole():
    from tunejudge.run.config import compose, split_runtime, with_runtime

    judge = compose([REPO / "config/config.yaml"], {})["judge"]
    verdicts, runtime = split_runtime("judge", judge)
    assert "in_flight" not in verdicts and "startup_timeout_s" not in verdicts["local"]
    assert verdicts["local"]["gguf"] == judge["local"]["gguf"] and verdicts["metrics"] == judge["metrics"]
    assert runtime["local"] == {"startup_timeout_s": judge["local"]["startup_timeout_s"]}
    assert runtime["openai"] == {"api_key_env": judge["openai"]["api_key_env"]}
    assert with_runtime("judge", verdicts, judge) == judge
    assert split_runtime("analysis", {"a": 1}) == ({"a": 1}, {})


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda c: c["models"]["full"].update(experiment="fulll"), r"models\.full\.experiment = 'fulll' is not one of"),
        (lambda c: c["analysis"].update(pairs=[["full", "nope"]]), r"analysis\.pairs has \[full, nope\]"),
        (lambda c: c["models"].update(controls={}), r"'controls' is reserved"),
        (lambda c: c["models"].update(null_model={}), r"'null_model' is reserved"),
        (lambda c: c["sources"]["sst2"].update(generate={"size": 1}), r"sources\.sst2\.generate: .* qa_cnn builder"),
        (lambda c: c["curation"].update(audit={"sources": ["qa_cnnn"]}), r"curation\.audit\.sources has 'qa_cnnn'"),
        (lambda c: c["gpt2"].update(size="gpt2-tiny", weights="pretrained"), r"gpt2\.size 'gpt2-tiny' has no Hub"),
        (lambda c: c.update(preferences={"p": {"from": "file"}}), r"preferences\.p: from file needs a path"),
        (lambda c: c.update(preferences={"p": {"from": "verifiable", "model": "nope"}}), r"preferences\.p\.model = 'nope'"),
        (lambda c: c.update(preferences={"p": {"from": "verifiable", "model": "full", "sources": ["x"]}}),
         r"preferences\.p\.sources has 'x'"),
    ],
)
def test_references_between_keys_are_checked_naming_the_key(mutate, message):
    """The cross-key checks the schema cannot say, in tunejudge.run.checks (the Snakefile calls them while
    it parses): each names the key and what it may be."""
    from tunejudge.errors import ConfigError
    from tunejudge.run.checks import check_references, processes_over_nodes

    cfg = load("config.yaml")
    check_references(cfg, {}, gpt2_used=True)  # the default passes
    mutate(cfg)
    with pytest.raises(ConfigError, match=message):
        check_references(cfg, {}, gpt2_used=True)
    assert processes_over_nodes({"processes": 8, "nodes": 2}, "models.m") == (8, 2)
    with pytest.raises(ConfigError, match=r"models\.m: train\.processes = 3 does not split evenly over train\.nodes = 2"):
        processes_over_nodes({"processes": 3, "nodes": 2}, "models.m")


def test_a_model_may_not_train_on_the_set_its_own_samples_make():
    from tunejudge.errors import ConfigError
    from tunejudge.run.checks import check_references

    cfg = load("config.yaml")
    cfg["preferences"] = {"p": {"from": "verifiable", "model": "full"}}
    with pytest.raises(ConfigError, match="trains on this very set"):
        check_references(cfg, {"full": {"method": "dpo", "preferences": "p"}}, gpt2_used=True)
