"""The default config through `--profile profiles/slurm` on a real one-node SLURM (see slurm_cluster).

CI installs SLURM and sets TUNEJUDGE_REQUIRE_SLURM=1, so a missing cluster fails there; elsewhere
the test is skipped when SLURM cannot run (deselect it with -m "not slurm").
"""

import json
import os
import re
import subprocess

import pytest
from conftest import REPO, make_workdir, snakemake
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


# A reduced DAG: every rule of the default config, small sizes, and the LLM steps (RAGAS generation,
# audit, judge) at a scripted OpenAI-compatible server on 127.0.0.1, which the batch jobs reach on this
# one-node cluster. The test proves submission, resources and the GPU mapping, not the model: the real
# local model runs in tests/test_pipeline_models.py and tests/test_pipeline_data.py.
REDUCED = {
    "split.test.size": 12,
    "experiments.full.size": 36,
    "experiments.small.size": 18,
    "train.epochs": 1,
    "generation.max_new_tokens": 8,
    "judge.backend": "openai",
    "judge.controls.enabled": False,  # one judge job more would prove nothing about SLURM (and cost ~40 s)
    "judge.openai": {"model": "scripted", "base_url": None, "api_key_env": "TUNEJUDGE_SLURM_KEY", "logprobs": True,
                     "structured_output": "json_schema", "max_tokens_field": "max_tokens"},
}


def test_default_config_runs_through_the_slurm_profile(cluster, tmp_path):
    from tunejudge.testing.openai_server import ScriptedOpenAI, request_kind

    with ScriptedOpenAI() as srv:
        wd = make_workdir(tmp_path, {**REDUCED, "judge.openai": {**REDUCED["judge.openai"], "base_url": srv.base_url}})
        # first status check 5 s after a submission, not the plugin's 40 s (a real cluster's queue
        # is slower than this idle node; the profile keeps the default)
        # and the following checks every 3 s, not 10 (squeue on one idle node answers at once)
        proc = snakemake(wd, "--profile", str(REPO / "profiles/slurm"), "--slurm-status-command", "squeue",
                         "--slurm-init-seconds-before-status-checks", "5", "--seconds-between-status-checks", "3",
                         "--max-threads", str(os.cpu_count()), env={**cluster.env, "TUNEJUDGE_SLURM_KEY": "sk-slurm"},
                         timeout=2400)
        # the batch jobs of all three LLM steps reached it
        assert {request_kind(b) for b in srv.requests} == {"judge", "ragas", "audit"} and srv.embedding_requests
    out = proc.stdout + proc.stderr
    assert (wd / "results/report.md").exists() and (wd / "results/all_model_responses.json").exists()
    # every job went through sbatch: its SLURM job id, and SLURM's record of it (MinJobAge=7200 keeps it)
    jobs = re.findall(r"Job (\d+) has been submitted with SLURM jobid (\d+)", out)
    assert len(jobs) >= 20, out[-3000:]
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
    assert set(labels) == {"base", "full", "small"}
