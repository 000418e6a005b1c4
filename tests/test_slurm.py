"""The default config through `--profile profiles/slurm` on a real one-node SLURM (see slurm_cluster).

CI installs SLURM and sets TUNEJUDGE_REQUIRE_SLURM=1, so a missing cluster fails there; elsewhere
the test is skipped when SLURM cannot run (deselect it with -m "not slurm").
"""

import json
import os
import re
import subprocess

import pytest
import yaml
from conftest import REPO, make_workdir, planned_jobs, snakemake
from slurm_cluster import OneNodeSlurm, available

pytestmark = [pytest.mark.slurm, pytest.mark.pipeline]

GPU_RULES = {"train", "respond"}


@pytest.fixture
def cluster(tmp_path):
    why = available()
    if why:
        if os.environ.get("TUNEJUDGE_REQUIRE_SLURM"):
            pytest.fail(why)
        pytest.skip(why)
    c = OneNodeSlurm(tmp_path / "slurm")
    c.start()
    yield c
    c.stop()


def test_profile_dry_run_asks_a_gpu_for_train_and_respond_only(tmp_path):
    wd = make_workdir(tmp_path)
    out = snakemake(wd, "-n", "--profile", str(REPO / "profiles/slurm")).stdout
    blocks = re.split(r"\n(?=(?:local)?rule \w+:)", out)
    rules = set()
    for block in blocks[1:]:
        rule = re.match(r"(?:local)?rule (\w+):", block).group(1)
        resources = re.search(r"^\s+resources: (.*)$", block, re.M)
        rules.add(rule)
        assert ("gpu=1" in (resources.group(1) if resources else "")) == (rule in GPU_RULES), block
    assert GPU_RULES | {"split", "judge", "report"} <= rules


def test_profile_dry_run_submits_one_gpu_job_per_replicate_and_sweep_point(tmp_path):
    """3 seeds of full, small's one, and a sweep of 2 learning rates x 2 seeds: 8 trainings and 9 answer sets
    (the base's too), each its own sbatch job asking one GPU; the dry run counts them."""
    wd = make_workdir(tmp_path, {"models.full": {**_DEFAULT["models"]["full"], "replicates": 3},
                                 "sweeps": {"lr": {"model": "full", "grid": {"train.lr": [1.0e-4, 1.0e-3]},
                                                   "seeds": [1, 2]}}})
    proc = snakemake(wd, "-n", "--profile", str(REPO / "profiles/slurm"))
    out = proc.stdout
    jobs = planned_jobs(proc)
    assert jobs["train"] == 3 + 1 + 4 and jobs["respond"] == 1 + 3 + 1 + 4 and jobs["sweeps"] == 1
    trained = set()
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", out)[1:]:
        if block.startswith("rule train:"):
            assert re.search(r"^\s+resources: .*gpu=1", block, re.M), block
            trained.add(re.search(r"^\s+wildcards: model=(\S+)$", block, re.M).group(1))
    assert trained == {"full", "full-seed124", "full-seed125", "small",
                       *(f"sweeps/lr/lr~{lr}/seed{s}" for lr in ("0.0001", "0.001") for s in (1, 2))}
    assert "group" not in yaml.safe_load((REPO / "profiles/slurm/config.yaml").read_text())  # one sbatch job each


# A reduced DAG: every rule of the default config on two of its sources (qa_cnn brings the RAGAS
# generation and the audit, sst2 a plain builder), the base model and one fine-tuned model, small
# sizes, and the LLM steps (RAGAS generation, audit, judge) at a scripted OpenAI-compatible server on
# 127.0.0.1, which the batch jobs reach on this one-node cluster. The test proves submission,
# resources and the GPU mapping, not the model: the real local model runs in
# tests/test_pipeline_models.py and tests/test_pipeline_data.py. Every job of the DAG is one sbatch
# job (~10 s of Snakemake start-up on this 2-core node), so the DAG is kept to 22 jobs (the answer browser and the labels included).
_DEFAULT = yaml.safe_load((REPO / "config/config.yaml").read_text())
_MIX = {"qa_cnn": 1, "sst2": 1}
REDUCED = {
    "sources": {k: _DEFAULT["sources"][k] for k in _MIX},
    "split.test": {"size": 8, "mix": _MIX},
    "experiments": {"full": {"size": 24, "val_fraction": 0.1, "mix": _MIX}},
    "models": {"base": {}, "full": {"experiment": "full"}},
    "analysis.pairs": [["full", "base"]],
    "train.epochs": 1,
    "generation.max_new_tokens": 8,
    "judge.backend": "openai",
    "judge.controls.enabled": False,  # one judge job more would prove nothing about SLURM
    "judge.openai": {"model": "scripted", "base_url": None, "api_key_env": "TUNEJUDGE_SLURM_KEY", "logprobs": True,
                     "structured_output": "json_schema", "max_tokens_field": "max_tokens"},
}


def test_default_config_runs_through_the_slurm_profile(cluster, tmp_path):
    from tunejudge_dev.testing.openai_server import ScriptedOpenAI, request_kind

    with ScriptedOpenAI() as srv:
        wd = make_workdir(tmp_path, {**REDUCED, "judge.openai": {**REDUCED["judge.openai"], "base_url": srv.base_url}})
        # Status checks: the plugin checks `init-seconds-before-status-checks` after a job finished
        # and 10 s more each time none has (4, 18, 42 s ...). A job of this DAG runs 9-16 s on this
        # node (Snakemake starts twice: the sbatch step and its srun), so at 4 s most are seen at 18 s;
        # at the plugin's 40 s each would take 40 s. A real cluster's queue is slower than this idle
        # node: the profile keeps the plugin's default.
        proc = snakemake(wd, "--profile", str(REPO / "profiles/slurm"), "--slurm-status-command", "squeue",
                         "--slurm-init-seconds-before-status-checks", "4",
                         "--max-threads", str(os.cpu_count()), env={**cluster.env, "TUNEJUDGE_SLURM_KEY": "sk-slurm"},
                         timeout=2400)
        # the batch jobs of all three LLM steps reached it
        assert {request_kind(b) for b in srv.requests} == {"judge", "ragas", "audit"} and srv.embedding_requests
    out = proc.stdout + proc.stderr
    assert (wd / "results/report.md").exists() and (wd / "results/all_model_responses.json").exists()
    # every job went through sbatch: its SLURM job id, and SLURM's record of it (MinJobAge=7200 keeps it)
    jobs = re.findall(r"Job (\d+) has been submitted with SLURM jobid (\d+)", out)
    planned = planned_jobs(snakemake(wd, "-n", "--forceall"))
    assert len(jobs) == sum(planned.values()) - planned["all"] == 22, (planned, out[-3000:])
    seen = {}
    for _, slurm_id in jobs:
        info = subprocess.run(["scontrol", "show", "job", slurm_id], capture_output=True, text=True,
                              env=cluster.env).stdout
        assert "JobState=COMPLETED" in info, info
        rule = re.search(r"Comment=rule_(\S+)", info).group(1).split("_wildcards_")[0]
        tres = re.search(r"TresPerJob=(\S+)", info)
        seen[slurm_id] = (rule, tres.group(1) if tres else "")
    # the GPU mapping: sbatch --gpus=1 for train and respond jobs, no GPU for any other rule
    assert {r for r, t in seen.values() if "gpu" in t} == GPU_RULES, seen
    assert {r for r, _ in seen.values()} >= GPU_RULES | {"split", "judge", "report"}
    labels = json.loads((wd / "results/model_labels.json").read_text())
    assert set(labels) == {"base", "full"}
