"""Base models, named in the config: what each is, where its weights come from, and its file paths.

Torch-free: the DAG (``rules/common.smk``) reads this at parse time.

Two families (:mod:`tunejudge.models`):

- ``gpt2``: tunejudge's own GPT-2 (``size``, ``weights: random | pretrained``), the study's model.
  The config's ``gpt2`` section is the base named ``gpt2``; a model without ``base`` uses it, so
  configs written before bases existed (``config/paper.yaml``) work as they are.
- ``transformers``: any causal LM that ``transformers`` loads, from exactly one of
  ``hub: {repo, revision}`` (fetched by the download rule into the Hub cache, read offline after),
  ``path`` (a ``from_pretrained`` folder), or ``gguf`` (a GGUF file, ``{path}`` or a packaged one,
  ``{package, file}``, dequantized by transformers' GGUF loader). Rule ``prepare_base`` turns each
  into a plain ``from_pretrained`` folder under ``data/bases/<name>/model``, read by every later job.

Every base says how prompts are written (``prompt: alpaca``, the study's, or ``chat``, the
tokenizer's chat template) and may set ``max_perplexity`` (the weights check, rule ``check_base``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError
from ..run.packages import PACKAGED_JUDGE, package_file
from ..run.runs import trains

# How every output names GPT-2 base weights (the Hub repositories of the study's sizes).
HUB_REPOS = {name: f"openai-community/{name}" for name in ("gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl")}


def base_label(size: str, weights: str, seed: int) -> str:
    """How every output names the base weights; random weights always say so."""
    if weights == "random":
        return f"{size}, random init (seed {seed}): not a pretrained GPT-2"
    return f"{size}, pretrained ({HUB_REPOS.get(size, size)})"


GPT2_BASE = "gpt2"  # the name of the base the config's gpt2 section describes
FAMILIES = ("gpt2", "transformers")
PROMPTS = ("alpaca", "chat")
# A default weights check for pretrained transformers bases: a correctly read small model scores tens
# on the check's plain English paragraph; the Gemma-3 GGUF that transformers mis-converts, ~300.
DEFAULT_MAX_PERPLEXITY = 100.0
LORA_DEFAULTS = {"r": 16, "alpha": 32, "dropout": 0.05, "target_modules": "all-linear"}
# QLoRA (Dettmers et al. 2023): the base in 4-bit NF4 with double quantization, computed in bf16, under LoRA
QLORA_QUANTIZE = "nf4"


@dataclass(frozen=True)
class BaseSpec:
    name: str
    family: str
    prompt: str = "alpaca"
    max_perplexity: float | None = None
    add_bos: bool | None = None  # None: as the tokenizer does
    # gpt2
    size: str | None = None
    weights: str | None = None  # random | pretrained
    # transformers: exactly one of these
    hub: dict | None = None  # {repo, revision}
    path: str | None = None
    gguf: dict | None = None  # {path} | {package, file}
    extra: dict = field(default_factory=dict)

    @property
    def pretrained(self) -> bool:
        return self.family == "transformers" or self.weights == "pretrained"

    def where(self) -> str:
        """Where the weights come from, in words: a Hub repository and revision, a folder, a GGUF file."""
        if self.family == "gpt2":
            return f"random init (seed {self.extra.get('seed')})" if self.weights == "random" \
                else HUB_REPOS.get(self.size, self.size)
        if self.hub:
            return f"{self.hub['repo']}@{self.hub.get('revision') or 'main'}"
        if self.gguf:
            return f"{self.gguf['package'].replace('_', '-')}:{self.gguf['file']}" if self.gguf.get("package") \
                else str(self.gguf["path"])
        return str(self.path)

    def label(self) -> str:
        """How every output names this base; random weights always say so."""
        if self.family == "gpt2":
            return base_label(self.size, self.weights, self.extra.get("seed"))
        return f"{self.name}, pretrained ({self.where()})"


def _gpt2_spec(cfg: dict, seed: int) -> BaseSpec:
    return BaseSpec(name=GPT2_BASE, family="gpt2", size=cfg["size"], weights=cfg["weights"],
                    max_perplexity=cfg.get("max_perplexity"), extra={"seed": seed})


def parse_base(name: str, cfg: dict, seed: int) -> BaseSpec:
    where = f"config: bases.{name}"
    family = cfg.get("family")
    if family not in FAMILIES:
        raise ConfigError(f"{where}.family = {family!r}: one of {', '.join(FAMILIES)}")
    prompt = cfg.get("prompt", "alpaca")
    if prompt not in PROMPTS:
        raise ConfigError(f"{where}.prompt = {prompt!r}: one of {', '.join(PROMPTS)}")
    if family == "gpt2":
        if prompt != "alpaca":
            raise ConfigError(f"{where}.prompt: GPT-2 has no chat template; use prompt: alpaca")
        for key in ("hub", "path", "gguf"):
            if cfg.get(key):
                raise ConfigError(f"{where}.{key}: a gpt2 base is named by size and weights")
        return BaseSpec(name=name, family="gpt2", size=cfg.get("size", "gpt2"), weights=cfg.get("weights", "pretrained"),
                        max_perplexity=cfg.get("max_perplexity"), extra={"seed": seed})
    given = [k for k in ("hub", "path", "gguf") if cfg.get(k)]
    if len(given) != 1:
        raise ConfigError(f"{where}: a transformers base needs exactly one of hub, path or gguf (got {given or 'none'})")
    hub, gguf = cfg.get("hub"), cfg.get("gguf")
    if hub and not hub.get("repo"):
        raise ConfigError(f"{where}.hub: needs repo (and a pinned revision)")
    if gguf and not (gguf.get("path") or (gguf.get("package") and gguf.get("file"))):
        raise ConfigError(f"{where}.gguf: give {{path: file.gguf}} or {{package: <python package>, file: <name>}}")
    return BaseSpec(name=name, family="transformers", prompt=prompt,
                    max_perplexity=cfg.get("max_perplexity", DEFAULT_MAX_PERPLEXITY), add_bos=cfg.get("add_bos"),
                    hub=dict(hub) if hub else None, path=cfg.get("path"), gguf=dict(gguf) if gguf else None)


def bases_of(config: dict) -> dict[str, BaseSpec]:
    """Every base of the config: ``bases`` and the ``gpt2`` section (the base named ``gpt2``)."""
    out = {GPT2_BASE: _gpt2_spec(config["gpt2"], config["seed"])}
    for name, cfg in (config.get("bases") or {}).items():
        if name == GPT2_BASE:
            raise ConfigError("config: bases.gpt2: that name is the gpt2 section's base; name yours otherwise")
        out[name] = parse_base(name, cfg, config["seed"])
    return out


def base_of_model(config: dict, model: str) -> str:
    spec = config["models"][model]
    name = spec.get("base", GPT2_BASE)
    known = [GPT2_BASE, *(config.get("bases") or {})]
    if name not in known:
        raise ConfigError(f"config: models.{model}.base = {name!r} is not one of the bases: {known}")
    return name


DPO_DEFAULTS = {"method": "lora", "loss": "sigmoid", "min_margin": 0.0}
# beta and SimPO's target margin gamma by loss: DPO's usual beta 0.1 (Rafailov et al. 2023); SimPO's
# length-normalised rewards need a larger beta, 2.0-2.5 in the SimPO paper (Meng et al. 2024), with
# gamma / beta about 0.5 (gamma has no role in DPO's loss)
LOSS_DEFAULTS = {"sigmoid": {"beta": 0.1, "simpo_gamma": 0.5}, "simpo": {"beta": 2.0, "simpo_gamma": 1.0}}


def uses_lora(finetune: dict | None) -> bool:
    """Whether a model's fine-tuning trains a LoRA adapter (``lora``, or ``dpo`` with method lora)."""
    return bool(finetune) and (finetune["method"] in ("lora", "qlora") or finetune.get("adapter") == "lora")


def _dpo_of(config: dict, model: str, spec: dict) -> dict:
    where = f"config: models.{model}"
    sets = config.get("preferences") or {}
    if spec.get("preferences") not in sets:
        raise ConfigError(f"{where}.preferences = {spec.get('preferences')!r}: finetune dpo trains on a preference "
                          f"set, one of preferences: {sorted(sets)}")
    init = spec.get("init")
    if init is not None:
        models = config["models"]
        if init not in models or not trains(models[init]) or init == model:
            raise ConfigError(f"{where}.init = {init!r}: a trained model of models (whose export it starts from)")
        if base_of_model(config, init) != base_of_model(config, model):
            raise ConfigError(f"{where}.init = {init!r} is built on base {base_of_model(config, init)!r}, this model on "
                              f"{base_of_model(config, model)!r}: the same base, so the same tokens")
    dpo = {**DPO_DEFAULTS, **(spec.get("dpo") or {})}
    dpo = {**LOSS_DEFAULTS[dpo["loss"]], **dpo}
    out = {"method": "dpo", "adapter": dpo.pop("method"), **dpo, "preferences": spec["preferences"], "init": init}
    if out["adapter"] == "lora":
        base = bases_of(config)[base_of_model(config, model)]
        if base.family != "transformers":
            raise ConfigError(f"{where}.dpo.method: lora needs a transformers base; {base.name} is tunejudge's GPT-2 "
                              "(family gpt2): use dpo.method full")
        out.update({**LORA_DEFAULTS, **(spec.get("lora") or {})})
    elif spec.get("lora"):
        raise ConfigError(f"{where}.lora is set but dpo.method is full")
    return out


def finetune_of(config: dict, model: str) -> dict | None:
    """How a model is fine-tuned: None (it answers with its base as is), ``{"method": "full"}``,
    ``{"method": "lora", "r", "alpha", "dropout", "target_modules"}``, QLoRA (the same and ``"quantize": "nf4"``:
    the base loaded in 4 bits), or preference tuning
    ``{"method": "dpo", "adapter": "lora" | "full", (the LoRA settings), "loss", "beta", "simpo_gamma",
    "min_margin", "preferences", "init"}``."""
    spec = config["models"][model]
    if spec.get("endpoint"):  # answers as it is served (tunejudge.models.endpoint)
        return None
    if spec.get("finetune") == "dpo":
        return _dpo_of(config, model, spec)
    if spec.get("init") or spec.get("dpo") or spec.get("preferences"):
        raise ConfigError(f"config: models.{model}: init, dpo and preferences belong to finetune: dpo")
    if not spec.get("experiment"):
        if spec.get("finetune") or spec.get("lora"):
            raise ConfigError(f"config: models.{model}: finetune/lora without an experiment to train on")
        return None
    method = spec.get("finetune", "full")
    if method not in ("full", "lora", "qlora"):
        raise ConfigError(f"config: models.{model}.finetune = {method!r}: full, lora, qlora or dpo")
    if method == "full":
        if spec.get("lora"):
            raise ConfigError(f"config: models.{model}.lora is set but finetune is full; set finetune: lora")
        return {"method": "full"}
    base = bases_of(config)[base_of_model(config, model)]
    if base.family != "transformers":
        raise ConfigError(f"config: models.{model}.finetune: {method} needs a transformers base; {base.name} is "
                          "tunejudge's GPT-2 (family gpt2), which trains fully")
    lora = {**LORA_DEFAULTS, **(spec.get("lora") or {})}
    if method == "qlora":  # LoRA over the base loaded in 4 bits (bitsandbytes)
        return {"method": "qlora", **lora, "quantize": QLORA_QUANTIZE}
    return {"method": "lora", **lora}


def gguf_file(spec: BaseSpec) -> Path:
    if spec.gguf.get("package"):
        return package_file(spec.gguf["package"], spec.gguf["file"], f"config: bases.{spec.name}.gguf")
    path = Path(spec.gguf["path"])
    if not path.is_file():
        raise ConfigError(f"config: bases.{spec.name}.gguf.path = {str(path)!r}: no such file")
    return path


# ---------------------------------------------------------------- files of the DAG
def gpt2_weights(spec: BaseSpec) -> str:
    if spec.weights == "pretrained":
        return f"data/pretrained/{spec.size}/model.safetensors"
    return f"data/pretrained/random-init/{spec.size}-seed{spec.extra.get('seed')}/model.safetensors"


def base_weights(spec: BaseSpec) -> str:
    """What a model with this base and no fine-tuning answers with: a GPT-2 checkpoint file, or the
    prepared ``from_pretrained`` folder of a transformers base."""
    return gpt2_weights(spec) if spec.family == "gpt2" else f"data/bases/{spec.name}/model"


def weights_check(spec: BaseSpec) -> list[str]:
    """The weights check's output for a pretrained base with a perplexity limit (none otherwise)."""
    if spec.family == "gpt2":
        return [f"data/pretrained/{spec.size}/perplexity.json"] if spec.weights == "pretrained" and spec.max_perplexity \
            else []
    return [f"data/bases/{spec.name}/perplexity.json"]


def base_inputs(spec: BaseSpec) -> list[str]:
    """What rule prepare_base reads: the download's manifest (Hub), the GGUF file, or the folder's files."""
    if spec.hub:
        return [f"data/bases/{spec.name}/source.json"]
    if spec.gguf:
        return [str(gguf_file(spec))]
    folder = Path(spec.path)
    return sorted(str(p) for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []


def _gguf_path(gguf: dict) -> Path | None:
    try:
        return (package_file(gguf["package"], gguf["file"], "gguf") if gguf.get("package") else Path(gguf["path"])).resolve()
    except (ConfigError, KeyError, OSError):
        return None


def judge_shares_weights(judge: dict, spec: BaseSpec) -> bool:
    """Whether the local judge runs the very GGUF a base is made from (SmolLM2 judging SmolLM2)."""
    if judge.get("backend") != "local" or not spec.gguf:
        return False
    gguf = (judge.get("local") or {}).get("gguf")
    theirs = _gguf_path({"path": gguf} if gguf else PACKAGED_JUDGE)
    return theirs is not None and theirs == _gguf_path(spec.gguf)
