"""The real Snakemake end to end on a small config: base weights, training, responses, merge."""

import json

import pytest
import torch
from conftest import make_workdir, planned_jobs, snakemake

pytestmark = pytest.mark.pipeline

SMALL = {
    "split.test.size": 12,
    "experiments.full.size": 36,
    "experiments.small.size": 18,
    "train.epochs": 2,
    "train.eval_every": 2,
    "generation.max_new_tokens": 8,
}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    wd = make_workdir(tmp_path_factory.mktemp("models"), SMALL)
    proc = snakemake(wd, "--cores", "2", "--resources", "gpu=1")
    return wd, proc


def test_all_model_responses_in_the_study_format(run):
    wd, _ = run
    rows = json.loads((wd / "results/all_model_responses.json").read_text())
    test = json.loads((wd / "data/splits/test.json").read_text())
    assert [r["id"] for r in rows] == [r["id"] for r in test]
    for r in rows:
        assert {"instruction", "input", "output", "id", "source", "model base", "model full", "model small"} <= set(r)
        assert all(isinstance(r[f"model {m}"], str) for m in ("base", "full", "small"))
    labels = json.loads((wd / "results/model_labels.json").read_text())
    assert set(labels) == {"base", "full", "small"} and all("random init" in v for v in labels.values())


def test_training_outputs(run):
    wd, _ = run
    for m in ("full", "small"):
        hist = json.loads((wd / f"results/models/{m}/history.json").read_text())
        assert hist["final_val_loss"] is not None and hist["effective_batch"] == 8
        vals = [e["val_loss"] for e in hist["evaluations"]]
        assert vals[-1] < vals[0]  # the val loss falls over the run
        assert "random init" in hist["label"]
        assert (wd / f"results/models/{m}/loss.png").read_bytes()[:4] == b"\x89PNG"
        assert not (wd / f"results/models/{m}/resume").exists()  # spent after a completed run
        log = (wd / f"results/logs/train/{m}.log").read_text()
        assert "effective batch 8" in log and "parameters" in log and "tok_s" in log


def test_fine_tuning_changed_the_weights(run):
    from safetensors.torch import load_file

    wd, _ = run
    base = load_file(str(next((wd / "data/pretrained").rglob("model.safetensors"))))
    full = load_file(str(wd / "results/models/full/model.safetensors"))
    assert not torch.equal(base["h.0.attn.c_attn.weight"], full["h.0.attn.c_attn.weight"])


def test_rerun_has_nothing_to_do_and_an_edit_replans_downstream_only(run):
    wd, _ = run
    assert planned_jobs(snakemake(wd, "-n")) == {}
    p = wd / "data/instructions/agnews_instruction_data.json"
    recs = json.loads(p.read_text())
    recs[1]["output"] = "World" if recs[1]["output"] != "World" else "Sports"
    p.write_text(json.dumps(recs, indent=2))
    jobs = planned_jobs(snakemake(wd, "-n"))
    assert "build_instructions" not in jobs and "init_gpt2" not in jobs
    assert jobs["curate"] == 1 and jobs["split"] == 1 and jobs["merge_responses"] == 1


def _job_processes(pgid: int, needle: str) -> list[int]:
    """Processes of a process group whose command line contains ``needle``."""
    import os
    from pathlib import Path

    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if os.getpgid(int(d.name)) == pgid and needle in (d / "cmdline").read_bytes().decode(errors="replace"):
                    pids.append(int(d.name))
            except (OSError, ProcessLookupError):
                continue
    return pids


def test_interrupted_train_job_resumes(tmp_path):
    """Kill a real train job (as a cluster would) after its first resume state; the rerun resumes."""
    import os
    import signal
    import subprocess
    import time

    from conftest import REPO, SNAKEMAKE

    # many short steps: the job is still running when the first state appears
    wd = make_workdir(tmp_path, dict(SMALL, **{"train.checkpoint_every": 1, "train.epochs": 10}))
    target = "results/models/small/model.safetensors"
    snakemake(wd, "--cores", "2", "data/splits/test.json", "data/pretrained/random-init/gpt2-tiny-seed123/model.safetensors")
    cmd = [SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), "--directory", str(wd), "--configfile",
           str(wd / "config/config.yaml"), "--cores", "2", target]
    proc = subprocess.Popen(cmd, cwd=wd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    state = wd / "results/models/small/resume/state.pt"
    deadline = time.time() + 300
    while not state.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    assert state.exists(), "no resume state was written"
    jobs = _job_processes(proc.pid, "train.py")
    assert jobs, "the train job is not running"
    for pid in jobs:
        os.kill(pid, signal.SIGKILL)
    assert proc.wait(timeout=120) != 0  # Snakemake sees the job fail and removes its outputs
    assert not (wd / target).exists() and state.exists()
    snakemake(wd, "--cores", "2", target)
    log = (wd / "results/logs/train/small.log").read_text()
    assert "resuming from results/models/small/resume/state.pt at step" in log
    assert (wd / target).exists() and not state.parent.exists()
