"""Runs: the trainings and answer sets a config asks for -- each model once per seed, and each sweep point
once per seed.

Torch-free: the DAG (``rules/common.smk``) reads this at parse time.

A *run* is what one ``train`` job writes and one ``respond`` job answers with. Its name is a path under
``results/models/``, ``results/responses/``, ``results/judge/`` and ``results/reference/``:

- a model with one seed (the default) is one run named as the model, so paths stay what they were;
- ``models.<m>.seeds: [s1, s2, ...]`` (or ``replicates: N``: ``train.seed``, +1, ... +N-1) adds runs
  ``<m>-seed<s2>``, ...; the first seed keeps the model's own name, so asking for more seeds trains only
  the new ones. The seed drives everything random in training: new weights (a LoRA adapter), data order
  and dropout. A model that is not trained has one run whatever it says (its answers depend on no seed);
- ``sweeps.<name>``: a trained model's recipe with some settings varied -- ``grid`` (every combination)
  or ``points`` (a table, one mapping per row) over ``train.<key>``, ``lora.<key>`` and
  ``experiment.size`` -- crossed with the sweep's seeds. Rule files turn the table into
  ``snakemake.utils.Paramspace`` names (one ``<column>~<value>`` per setting); each point and seed is a
  run ``sweeps/<name>/<point>/seed<s>``. Sweep runs are trained, answered, scored by the judge-free
  metrics and their validation loss; the judge scores them only with ``judge: true``.

Replicates of the models are part of the study (``all_model_responses.json``, the judge, the analysis);
sweep runs are not: editing a sweep value replans that point's jobs and the sweep table only.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from ..errors import ConfigError

SWEEP_ROOT = "sweeps"
# train settings a sweep cannot vary: seeds are crossed in by `seeds`/`replicates`; these only say how a
# step runs (tunejudge.run.config.RUNTIME_ONLY)
NOT_SWEPT = ("seed", "device", "checkpoint_every")
LORA_KEYS = ("r", "alpha", "dropout")
DPO_KEYS = ("beta", "min_margin", "simpo_gamma")  # preference tuning's settings a sweep may vary
EXPERIMENT_KEYS = ("size",)


@dataclass(frozen=True)
class Run:
    name: str               # the path component: "full", "full-seed124", "sweeps/lr/lr~0.0005/seed123"
    model: str              # the config model whose recipe this is
    seed: int | None        # the training seed (None: not trained)
    sweep: str | None = None
    point: str | None = None  # the Paramspace instance pattern of the sweep point
    settings: dict = field(default_factory=dict)  # the point's values: {"train.lr": 5e-4, "experiment.size": 54}
    judged: bool = True

    @property
    def trained(self) -> bool:
        return self.seed is not None

    def train_overrides(self) -> dict:
        return {k.split(".", 1)[1]: v for k, v in self.settings.items() if k.startswith("train.")}

    def lora_overrides(self) -> dict:
        return {k.split(".", 1)[1]: v for k, v in self.settings.items() if k.startswith("lora.")}

    def dpo_overrides(self) -> dict:
        return {k.split(".", 1)[1]: v for k, v in self.settings.items() if k.startswith("dpo.")}

    def experiment_size(self):
        return self.settings.get("experiment.size")


def trains(spec: dict) -> bool:
    """A model trains: on an experiment's records, or on a preference set (finetune: dpo)."""
    return bool(spec.get("experiment")) or spec.get("finetune") == "dpo"


def train_seed(config: dict, model: str) -> int:
    """The seed a model's (first) training uses: models.<m>.train.seed, else train.seed (default 123)."""
    return int({**config.get("train", {}), **config["models"][model].get("train", {})}.get("seed", 123))


def _seeds(spec: dict, default: int, where: str) -> list[int]:
    seeds, n = spec.get("seeds"), spec.get("replicates")
    if seeds is not None and n is not None:
        raise ConfigError(f"config: {where}: give seeds or replicates, not both")
    if seeds is not None:
        if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
            raise ConfigError(f"config: {where}.seeds = {seeds!r}: a non-empty list of integers")
        if len(set(seeds)) != len(seeds):
            raise ConfigError(f"config: {where}.seeds = {seeds!r}: a seed is listed twice")
        return list(seeds)
    if n is not None:
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ConfigError(f"config: {where}.replicates = {n!r}: a positive integer")
        return [default + k for k in range(n)]
    return [default]


def model_seeds(config: dict, model: str) -> list[int]:
    """A trained model's seeds, first one first; [] for a model that is not trained."""
    spec = config["models"][model]
    if not trains(spec):
        if spec.get("seeds") is not None or spec.get("replicates") is not None:
            raise ConfigError(f"config: models.{model}: seeds/replicates need training (an experiment); "
                              "an untrained model's greedy answers depend on no seed")
        return []
    return _seeds(spec, train_seed(config, model), f"models.{model}")


def replicate_name(model: str, seed: int) -> str:
    return f"{model}-seed{seed}"


def model_runs(config: dict) -> list[Run]:
    """Every model's runs, the model's own (first seed) first, in config order."""
    out = []
    for m in config["models"]:
        seeds = model_seeds(config, m)
        if not seeds:
            out.append(Run(m, m, None))
        for k, s in enumerate(seeds):
            out.append(Run(m if k == 0 else replicate_name(m, s), m, s))
    return out


# ---------------------------------------------------------------- sweeps
def column(key: str) -> str:
    """A swept setting's Paramspace column (an identifier: pandas' itertuples renames others)."""
    section, name = key.split(".", 1)
    return name if section == "train" else f"{section}_{name}"


def _check_key(key: str, sweep: str, config: dict, model: str) -> None:
    where = f"config: sweeps.{sweep}: setting {key!r}"
    section, _, name = key.partition(".")
    if section == "train":
        if not name or name in NOT_SWEPT:
            raise ConfigError(f"{where}: sweep any train.<key> but {', '.join(NOT_SWEPT)} "
                              "(seeds are crossed in by seeds/replicates)")
    elif section == "lora":
        if name not in LORA_KEYS:
            raise ConfigError(f"{where}: lora.<key> is one of {', '.join(LORA_KEYS)}")
        spec = config["models"][model]
        if spec.get("finetune") != "lora" and not (spec.get("finetune") == "dpo"
                                                   and (spec.get("dpo") or {}).get("method", "lora") == "lora"):
            raise ConfigError(f"{where}: models.{model} is not fine-tuned with LoRA")
    elif section == "dpo":
        if name not in DPO_KEYS:
            raise ConfigError(f"{where}: dpo.<key> is one of {', '.join(DPO_KEYS)}")
        if config["models"][model].get("finetune") != "dpo":
            raise ConfigError(f"{where}: models.{model} is not preference-tuned (finetune: dpo)")
    elif section == "experiment":
        if name not in EXPERIMENT_KEYS:
            raise ConfigError(f"{where}: experiment.<key> is one of {', '.join(EXPERIMENT_KEYS)}")
    else:
        raise ConfigError(f"{where}: one of train.<key>, lora.<key>, dpo.<key>, experiment.size")


def sweep_points(config: dict, name: str) -> list[dict]:
    """A sweep's combinations, in order: {setting: value} per point (checked)."""
    spec = config["sweeps"][name]
    where = f"config: sweeps.{name}"
    model = spec.get("model")
    if model not in config["models"] or not trains(config["models"][model]):
        trained = [m for m, s in config["models"].items() if trains(s)]
        raise ConfigError(f"{where}.model = {model!r}: the trained model whose recipe is swept, one of {trained}")
    grid, points = spec.get("grid"), spec.get("points")
    if (grid is None) == (points is None):
        raise ConfigError(f"{where}: give grid (every combination) or points (a table), one of them")
    if grid is not None:
        if not grid or not all(isinstance(v, list) and v for v in grid.values()):
            raise ConfigError(f"{where}.grid: each setting maps to a non-empty list of values")
        keys = list(grid)
        rows = [dict(zip(keys, combo)) for combo in itertools.product(*grid.values())]
    else:
        if not isinstance(points, list) or not points or not all(isinstance(p, dict) and p for p in points):
            raise ConfigError(f"{where}.points: a non-empty list of mappings, one per point")
        keys = list(points[0])
        for i, p in enumerate(points):
            if set(p) != set(keys):
                raise ConfigError(f"{where}.points[{i}] sets {sorted(p)}; every point sets the same settings: {sorted(keys)}")
        rows = [{k: p[k] for k in keys} for p in points]
    for k in keys:
        _check_key(k, name, config, model)
    cols = [column(k) for k in keys]
    if len(set(cols)) != len(cols):
        raise ConfigError(f"{where}: two settings share the column name {cols}")
    seen = set()
    for i, r in enumerate(rows):
        for k, v in r.items():
            if not isinstance(v, (int, float, str)) or isinstance(v, bool):
                raise ConfigError(f"{where}: point {i}: {k} = {v!r}: a number or a string")
        key = tuple(r.values())
        if key in seen:
            raise ConfigError(f"{where}: point {r} is listed twice")
        seen.add(key)
    return rows


def sweep_table(config: dict, name: str):
    """A sweep's points as a DataFrame, one column per setting (:func:`column`), for ``Paramspace``."""
    import pandas as pd

    rows = sweep_points(config, name)
    return pd.DataFrame([{column(k): v for k, v in r.items()} for r in rows])


def sweep_runs(config: dict, name: str, patterns: list[str]) -> list[Run]:
    """A sweep's runs: each point (``patterns``: Paramspace's instance patterns, in the table's order)
    crossed with the sweep's seeds (default: its model's)."""
    spec = config["sweeps"][name]
    rows = sweep_points(config, name)
    if len(patterns) != len(rows):
        raise ValueError(f"sweeps.{name}: {len(patterns)} patterns for {len(rows)} points")
    seeds = _seeds(spec, train_seed(config, spec["model"]), f"sweeps.{name}") \
        if spec.get("seeds") is not None or spec.get("replicates") is not None else model_seeds(config, spec["model"])
    judged = bool(spec.get("judge", False))
    return [Run(f"{SWEEP_ROOT}/{name}/{pat}/seed{s}", spec["model"], s, name, pat, row, judged)
            for pat, row in zip(patterns, rows) for s in seeds]


def runs_table(runs: list[Run]) -> dict[str, dict]:
    """What the analysis and the report need of each run: model, seed, sweep, point, settings."""
    return {r.name: {"model": r.model, "seed": r.seed, "sweep": r.sweep, "point": r.point,
                     "settings": dict(r.settings)} for r in runs}
