"""Runs (tunejudge.run.runs): each model once per seed, each sweep point once per seed; clear config errors."""

import copy

import pytest
import yaml
from conftest import REPO
from snakemake.utils import Paramspace

from tunejudge.errors import ConfigError
from tunejudge.preflight.plan import plan_run, run_jobs
from tunejudge.run import runs as R
from tunejudge.run.config import compose

DEFAULT = yaml.safe_load((REPO / "config/config.yaml").read_text())


def config(**changes):
    cfg = copy.deepcopy(DEFAULT)
    for key, value in changes.items():
        node = cfg
        *parents, last = key.split("__")
        for k in parents:
            node = node.setdefault(k, {})
        node[last] = value
    return cfg


def all_runs(cfg):
    spaces = {s: Paramspace(R.sweep_table(cfg, s), filename_params="*", single_wildcard="point")
              for s in cfg.get("sweeps") or {}}
    return R.model_runs(cfg) + [r for s, sp in spaces.items() for r in R.sweep_runs(cfg, s, list(sp.instance_patterns))]


def test_one_seed_keeps_every_name_and_more_seeds_add_runs():
    assert [(r.name, r.seed) for r in R.model_runs(DEFAULT)] == [("base", None), ("full", 123), ("small", 123)]
    cfg = config(models__full__replicates=3, models__small__seeds=[7, 3])
    assert [(r.name, r.model, r.seed) for r in R.model_runs(cfg)] == [
        ("base", "base", None), ("full", "full", 123), ("full-seed124", "full", 124), ("full-seed125", "full", 125),
        ("small", "small", 7), ("small-seed3", "small", 3)]
    cfg = config(models__full__train={"seed": 40}, models__full__replicates=2)
    assert [r.name for r in R.model_runs(cfg) if r.model == "full"] == ["full", "full-seed41"]


@pytest.mark.parametrize("changes, message", [
    ({"models__base__replicates": 2}, "seeds/replicates need training"),
    ({"models__full__replicates": 2, "models__full__seeds": [1, 2]}, "give seeds or replicates, not both"),
    ({"models__full__seeds": [1, 1]}, "a seed is listed twice"),
    ({"models__full__replicates": 0}, "a positive integer"),
    ({"sweeps": {"lr": {"model": "base", "grid": {"train.lr": [1e-4]}}}}, "the trained model whose recipe is swept"),
    ({"sweeps": {"lr": {"model": "full"}}}, "give grid (every combination) or points"),
    ({"sweeps": {"lr": {"model": "full", "grid": {"train.seed": [1, 2]}}}}, "seeds are crossed in"),
    ({"sweeps": {"lr": {"model": "full", "grid": {"judge.seed": [1, 2]}}}}, "one of train.<key>, lora.<key>, dpo.<key>, experiment.size"),
    ({"sweeps": {"lr": {"model": "full", "points": [{"train.lr": 1e-4}, {"train.epochs": 2}]}}}, "every point sets the same"),
    ({"sweeps": {"lr": {"model": "full", "grid": {"train.lr": [1e-4, 1e-4]}}}}, "is listed twice"),
])
def test_bad_runs_config_is_one_clear_error(changes, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        all_runs(config(**changes))


def test_a_sweep_is_a_paramspace_crossed_with_seeds():
    cfg = config(sweeps={"lr": {"model": "full", "grid": {"train.lr": [1e-4, 5e-4], "experiment.size": [54]},
                                "seeds": [1, 2]},
                         "rank": {"model": "full", "points": [{"lora.r": 4}, {"lora.r": 8}]}})
    runs = [r for r in all_runs(cfg) if r.sweep]
    assert [r.name for r in runs] == [
        "sweeps/lr/lr~0.0001_experiment_size~54/seed1", "sweeps/lr/lr~0.0001_experiment_size~54/seed2",
        "sweeps/lr/lr~0.0005_experiment_size~54/seed1", "sweeps/lr/lr~0.0005_experiment_size~54/seed2",
        "sweeps/rank/lora_r~4/seed123", "sweeps/rank/lora_r~8/seed123"]  # default seeds: the model's
    r = runs[2]
    assert r.train_overrides() == {"lr": 5e-4} and r.experiment_size() == 54 and not r.judged
    assert runs[-1].lora_overrides() == {"r": 8}
    table = R.runs_table(R.model_runs(cfg) + runs)
    assert run_jobs(table) == {"train": 8, "respond": 9, "replicates": 0, "sweep_runs": 6}
    # preflight: judged runs are the study's unless a sweep asks for the judge
    plan = plan_run(cfg, judged_runs=3 + 2, jobs=run_jobs(table))
    assert plan.requests["judge"] == 24 * 5 * 3 and plan.as_dict(None)["jobs"]["train"] == 8


def test_asking_for_seeds_in_a_later_file_keeps_the_model(tmp_path):
    """models.* is replaced whole by a later file, except when it names only seeds or replicates."""
    more = tmp_path / "seeds.yaml"
    more.write_text("models:\n  full: {replicates: 5}\n")
    cfg = compose([REPO / "config/config.yaml", more])
    assert cfg["models"]["full"] == {**DEFAULT["models"]["full"], "replicates": 5}
    cfg = compose([REPO / "config/config.yaml", more], {"models": {"full": {"seeds": [1, 2]}}})
    assert cfg["models"]["full"] == {**DEFAULT["models"]["full"], "seeds": [1, 2]}  # the later choice replaces
    other = tmp_path / "other.yaml"
    other.write_text("models:\n  full: {experiment: small}\n")
    assert compose([REPO / "config/config.yaml", other])["models"]["full"] == {"experiment": "small"}
