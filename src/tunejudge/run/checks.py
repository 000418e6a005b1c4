"""Checks of the merged config that go past its JSON schema: references between keys and reserved
names, for the Snakefile (parse time only: jsonschema comes with Snakemake, and no rule's script
imports this module). Each raises :class:`~tunejudge.errors.ConfigError` naming the key."""

from __future__ import annotations

from collections.abc import Mapping

from ..errors import ConfigError
from .config import panel_judge


def check_panel(judge: Mapping, schema: Mapping) -> list[str]:
    """The panel judges' names, each one's merged settings checked against the judge section's schema."""
    import jsonschema

    sub = schema["properties"]["judge"]
    names = list((judge.get("panel") or {}).get("judges") or {})
    for name in names:
        cfg = panel_judge(judge, name)
        errors = sorted(jsonschema.Draft202012Validator(sub).iter_errors(cfg), key=lambda e: list(e.absolute_path))
        if errors:
            where = ".".join(str(p) for p in errors[0].absolute_path)
            raise ConfigError(f"config: judge.panel.judges.{name}" + (f" (as merged: judge.{where})" if where else "")
                              + f": {errors[0].message}")
    return names


HUB_SIZES = ("gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl")  # GPT-2 sizes with Hub weights
RESERVED_MODELS = {
    "controls": "results/judge/controls.jsonl holds the judge's controls",
    "null_model": "the pairwise judge's null model",
}


def check_references(config: Mapping, finetune: Mapping, gpt2_used: bool) -> None:
    """Every name a key refers to exists: models' experiments, analysis pairs, audited and generated
    sources, preference sets; no model takes a reserved name. ``finetune``: model -> its fine-tuning
    (:func:`tunejudge.models.bases.finetune_of`), ``gpt2_used``: whether some model is built on GPT-2."""
    sources, experiments, models = list(config["sources"]), list(config["experiments"]), list(config["models"])
    for m, spec in config["models"].items():
        if spec.get("experiment") and spec["experiment"] not in experiments:
            raise ConfigError(f"config: models.{m}.experiment = {spec['experiment']!r} is not one of experiments: "
                              f"{experiments}")
    for name, why in RESERVED_MODELS.items():
        if name in models:
            raise ConfigError(f"config: models: {name!r} is reserved ({why})")
    for a, b in config["analysis"]["pairs"]:
        if a not in models or b not in models:
            raise ConfigError(f"config: analysis.pairs has [{a}, {b}]; both must be in models: {models}")
    for s, spec in config["sources"].items():
        if spec.get("generate") and spec["builder"] != "qa_cnn":
            raise ConfigError(f"config: sources.{s}.generate: RAGAS generation feeds the qa_cnn builder only "
                              f"(this source's builder is {spec['builder']!r})")
    for s in (config["curation"].get("audit") or {}).get("sources") or []:
        if s not in sources:
            raise ConfigError(f"config: curation.audit.sources has {s!r}, not one of sources: {sources}")
    gpt2 = config["gpt2"]
    if gpt2_used and gpt2["weights"] == "pretrained" and gpt2["size"] not in HUB_SIZES:
        raise ConfigError(f"config: gpt2.size {gpt2['size']!r} has no Hub weights; use gpt2.weights: random")
    for s, spec in (config.get("preferences") or {}).items():
        check_preference_set(config, s, spec, finetune)


def check_preference_set(config: Mapping, name: str, spec: Mapping, finetune: Mapping) -> None:
    """A preference set names a model that exists and does not train on it, an experiment and sources."""
    models, experiments, sources = list(config["models"]), list(config["experiments"]), list(config["sources"])
    where = f"config: preferences.{name}"
    if spec["from"] == "file":
        if not spec.get("path"):
            raise ConfigError(f"{where}: from file needs a path")
        return
    if spec.get("model") not in models:
        raise ConfigError(f"{where}.model = {spec.get('model')!r}: the model whose samples are ranked, one of "
                          f"models: {models}")
    exp = spec.get("experiment") or config["models"][spec["model"]].get("experiment")
    if exp not in experiments:
        raise ConfigError(f"{where}.experiment = {exp!r}: whose train and val prompts are sampled, one of "
                          f"experiments: {experiments} (the model has none)")
    for src in spec.get("sources") or []:
        if src not in sources:
            raise ConfigError(f"{where}.sources has {src!r}, not one of sources: {sources}")
    ft = finetune.get(spec["model"]) or {}
    if ft.get("method") == "dpo" and ft.get("preferences") == name:
        raise ConfigError(f"{where}.model = {spec['model']!r} trains on this very set")


def processes_over_nodes(train: Mapping, where: str) -> tuple[int, int]:
    """(processes, nodes) of one training's merged train settings; the processes split evenly over the nodes."""
    processes, nodes = int(train.get("processes", 1)), int(train.get("nodes", 1))
    if processes % nodes:
        raise ConfigError(f"config: {where}: train.processes = {processes} does not split evenly over "
                          f"train.nodes = {nodes}")
    return processes, nodes
