"""Replicates and sweeps through the real Snakemake, on the default data: a model trained with 3 seeds
against the base (report with per-seed and pooled results; a hand-made disagreement between seeds raises
the flag), and a sweep of two learning rates x 2 seeds (4 trainings, the sweep table and plot; editing one
value replans only its jobs).

The models are the random-init gpt2-tiny (config/fast.yaml's), fully fine-tuned: seconds per training,
so seven trainings fit the suite. The judge is the scripted OpenAI-compatible server on 127.0.0.1 (the
real local judge runs in tests/test_pipeline_models.py); only the rules after the split may run, so the
data stage built with the local model is kept as it is."""

import csv
import json
import os

import pytest
import yaml
from conftest import CORES, copy_workdir, planned_jobs, snakemake

pytestmark = pytest.mark.pipeline

SEEDS = {
    "models": {"base": {}, "full": {"experiment": "full", "replicates": 3}},
    "gpt2": {"size": "gpt2-tiny", "weights": "random"},
    "train.epochs": 1,
    "train.lr": 5.0e-4,
    "train.trackers": ["tensorboard"],
    "generation.max_new_tokens": 8,
    "analysis.pairs": [["full", "base"]],
    "analysis.bootstrap": 500,
    "judge.controls.enabled": False,
    "sweeps": {"lr": {"model": "full", "grid": {"train.lr": [1.0e-4, 1.0e-3]}, "seeds": [1, 2]}},
}
AFTER_SPLIT = ["--allowed-rules", "init_gpt2", "train", "respond", "merge_responses", "model_labels", "judge",
               "reference_metrics", "analyze", "plots", "report", "provenance", "sweeps", "split_size", "browser", "all"]


def _judge_config(wd, srv):
    extra = wd / "config/judge_openai.yaml"
    extra.write_text(yaml.safe_dump({"judge": {"backend": "openai", "in_flight": 8, "openai": {
        "model": "scripted-judge", "base_url": srv.base_url, "api_key_env": "TUNEJUDGE_SEEDS_KEY"}}}))
    return ["--configfile", str(wd / "config/config.yaml"), str(extra)]


@pytest.fixture(scope="module")
def run(default_data, tmp_path_factory):
    from tunejudge_dev.testing.openai_server import ScriptedOpenAI

    wd = copy_workdir(default_data, tmp_path_factory.mktemp("seeds") / "wd", SEEDS)
    os.environ["TUNEJUDGE_SEEDS_KEY"] = "sk-seeds"
    try:
        with ScriptedOpenAI() as srv:
            configs = _judge_config(wd, srv)
            proc = snakemake(wd, "--cores", CORES, *AFTER_SPLIT, *configs, "--resources", "gpu=1")
    finally:
        del os.environ["TUNEJUDGE_SEEDS_KEY"]
    return wd, proc, configs


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_each_seed_is_its_own_training_answers_and_verdicts(run):
    wd, proc, _ = run
    out = proc.stdout + proc.stderr
    trained = {json.loads((wd / f"results/models/{r}/history.json").read_text())["seed"]: r
               for r in ("full", "full-seed124", "full-seed125")}
    assert trained == {123: "full", 124: "full-seed124", 125: "full-seed125"}  # the first seed keeps the name
    losses = {json.loads((wd / f"results/models/{r}/history.json").read_text())["final_val_loss"] for r in trained.values()}
    assert len(losses) == 3  # three different trainings
    rows = json.loads((wd / "results/all_model_responses.json").read_text())
    assert {"model base", "model full", "model full-seed124", "model full-seed125"} <= set(rows[0])
    assert not any(k.startswith("model sweeps") for k in rows[0])  # sweep points are not the study's models
    for r in ("full", "full-seed124", "full-seed125", "base"):
        assert {x["model"] for x in _rows(wd / f"results/judge/{r}.jsonl")} == {r}
    assert "rule init_gpt2" in out


def test_every_training_is_a_named_tensorboard_run(run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    wd, _, _ = run
    runs = ["full", "full-seed124", "full-seed125", *(f"sweeps/lr/lr~{lr}/seed{s}" for lr in ("0.0001", "0.001") for s in (1, 2))]
    for r in runs:
        acc = EventAccumulator(str(wd / "results/tensorboard" / r))
        acc.Reload()
        hist = json.loads((wd / f"results/models/{r}/history.json").read_text())
        assert len(acc.Scalars("train/loss")) == hist["steps"] and acc.Scalars("eval/val_loss")
        assert acc.Scalars("hparam/final_val_loss")[0].value == pytest.approx(hist["final_val_loss"], abs=1e-5)
    assert not (wd / "results/tensorboard/base").exists()  # not trained: no run


def test_report_gives_per_seed_and_pooled_results(run):
    wd, _, _ = run
    rep = {(r["pair"], r["measure"]): r for r in csv.DictReader((wd / "results/tables/replicates.csv").open())}
    row = rep[("full vs base", "total")]
    assert (row["seeds_a"], row["seeds_b"]) == ("3", "1") and row["few_seeds"] == "True"
    assert row["per_seed"].count("seed ") == 3 and row["note"] == "only full has replicates: base is one run"
    assert float(row["mb_lo"]) <= float(row["gain"]) <= float(row["mb_hi"])
    assert ("full vs base", "reference") in rep
    seeds = list(csv.DictReader((wd / "results/tables/seeds.csv").open()))
    assert [r["run"] for r in seeds if r["measure"] == "total" and r["model"] == "full"] == \
        ["full", "full-seed124", "full-seed125", "pooled"]
    report = (wd / "results/report.md").read_text()
    section = report.split("## Do the conclusions survive reseeding?")[1].split("\n## ")[0]
    assert "`full` (3 seeds)" in section and "Multi-Bootstrap" in section and "**Few seeds**" in section
    assert "| full | full-seed124 | 124 |" in section and "| pooled |" in section
    assert "![seed spread](plots/seeds.png)" in section
    assert (wd / "results/plots/seeds.png").read_bytes()[:4] == b"\x89PNG"


def test_seeds_that_disagree_raise_the_flag(run, tmp_path):
    """Hand-made verdicts: seeds 123 and 124 score 0 on every item, seed 125 scores 5: the base beats two
    seeds and loses to the third, and the report says the seeds disagree."""
    import shutil

    wd = tmp_path / "copy"
    shutil.copytree(run[0], wd, symlinks=True)
    for run_name, score in (("full", 0.0), ("full-seed124", 0.0), ("full-seed125", 1.0)):
        path = wd / f"results/judge/{run_name}.jsonl"
        rows = [dict(r, score=score, score_5=5 * score) for r in _rows(path)]
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    snakemake(wd, "--cores", CORES, "results/report.md", "--allowed-rules", "analyze", "plots", "report")
    row = next(r for r in csv.DictReader((wd / "results/tables/replicates.csv").open()) if r["measure"] == "total")
    assert row["seeds_disagree"] == "True" and "b better" in row["verdicts"] and "a better" in row["verdicts"]
    report = (wd / "results/report.md").read_text()
    assert "**full vs base (total): the seeds disagree**" in report
    assert "the seeds disagree" in (wd / "results/logs/analyze/analyze.log").read_text()


def test_a_sweep_of_two_learning_rates_by_two_seeds(run):
    wd, _, _ = run
    rows = list(csv.DictReader((wd / "results/tables/sweeps.csv").open()))
    runs = {r["run"] for r in rows}
    assert runs == {f"sweeps/lr/lr~{lr}/seed{s}" for lr in ("0.0001", "0.001") for s in (1, 2)}
    for r in rows:
        hist = json.loads((wd / f"results/models/{r['run']}/history.json").read_text())
        assert hist["seed"] == int(r["seed"]) and float(r["val_loss"]) == pytest.approx(hist["final_val_loss"], abs=1e-6)
        assert "label" not in hist and hist["made_by"]["device"] == "cpu"
        assert not (wd / f"results/judge/{r['run']}.jsonl").exists()  # judge: false (the default) for sweeps
        assert (wd / f"results/reference/{r['run']}.jsonl").exists()
    assert (wd / "results/plots/sweeps.png").read_bytes()[:4] == b"\x89PNG"
    report = (wd / "results/report.md").read_text()
    assert "## Sweeps" in report and "| lr | `lr~0.001` | 2 |" in report


def test_editing_one_sweep_value_replans_only_its_jobs(run, tmp_path):
    wd, _, configs = run
    assert planned_jobs(snakemake(wd, "-n", *AFTER_SPLIT, *configs)) == {}
    edited = copy_workdir(wd, tmp_path / "wd", {"sweeps.lr.grid": {"train.lr": [1.0e-4, 3.0e-3]}})
    jobs = planned_jobs(snakemake(edited, "-n", *AFTER_SPLIT, "--configfile", str(edited / "config/config.yaml"),
                                  str(edited / "config/judge_openai.yaml")))
    # the new point's two seeds: trained, answered, scored; then the sweep table and the report
    assert jobs == {"train": 2, "respond": 2, "reference_metrics": 2, "sweeps": 1, "report": 1, "provenance": 1,
                    "all": 1}, jobs


def test_a_sweep_over_the_experiment_size_gets_the_split_rules_records(run, tmp_path):
    """experiment.size 54 of experiment full is the default config's experiment small (same mix, 54 records)."""
    wd = copy_workdir(run[0], tmp_path / "wd", {"sweeps": {"size": {"model": "full", "points": [{"experiment.size": 54}]}}})
    snakemake(wd, "--cores", "1", "data/splits/full/size54/train.json", "data/splits/full/size54/val.json",
              "--allowed-rules", "split_size")
    for part in ("train", "val"):
        assert (wd / f"data/splits/full/size54/{part}.json").read_text() == (wd / f"data/splits/small/{part}.json").read_text()
    jobs = planned_jobs(snakemake(wd, "-n", *AFTER_SPLIT, "--configfile", str(wd / "config/config.yaml"),
                                  str(wd / "config/judge_openai.yaml")))
    assert jobs["train"] == 3 and "split" not in jobs  # the point once per seed of full (replicates: 3)
