"""The SLURM profile's requests for trainings beyond one GPU, without a cluster: `python -m tunejudge.preflight.slurm`
dry-runs the pipeline with the profile and builds each job's sbatch line with snakemake-executor-plugin-slurm's own
functions -- a 4-GPU model asks for 4 GPUs on one node and runs torchrun there; a 2-node model asks for 2 nodes of
4 GPUs and runs srun + torchrun with the rendezvous on the allocation's first node."""

import shutil
import subprocess
import sys

import pytest
from conftest import REPO, make_workdir

pytestmark = pytest.mark.pipeline


def test_the_profile_asks_for_4_gpus_and_for_2_nodes_and_launches_accordingly(tmp_path):
    wd = make_workdir(tmp_path)
    for f in ("paper.yaml", "cluster.yaml"):
        shutil.copyfile(REPO / "config" / f, wd / "config" / f)
    cmd = [sys.executable, "-m", "tunejudge.preflight.slurm", "--rules", "train", "--profile",
           str(REPO / "profiles/slurm"), "--snakefile", str(REPO / "Snakefile"), "--configfile",
           "config/config.yaml", "config/paper.yaml", "config/cluster.yaml"]
    proc = subprocess.run(cmd, cwd=wd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    jobs = {}
    for block in proc.stdout.split("# train (model=")[1:]:
        name, _, rest = block.partition(")")
        jobs[name] = rest
    assert set(jobs) == {"lora8b", "qlora8b", "full8b"}
    lora, qlora, full = jobs["lora8b"], jobs["qlora8b"], jobs["full8b"]
    assert "--gpus=4" in lora and "--nodes=1" in lora and "--cpus-per-task=8" in lora
    assert "torch.distributed.run --standalone --nproc-per-node=4 -m tunejudge.training.job" in lora
    assert "--gpus=1" in qlora and "inside the allocation" not in qlora  # one process: no launcher
    assert "--nodes=2" in full and "--gres=gpu:4" in full and "--gpus=" not in full
    assert "srun --overlap --nodes=2 --ntasks-per-node=1 bash -c" in full
    assert "--nnodes=2 --nproc-per-node=4 --rdzv-backend=c10d" in full
    assert '--rdzv-endpoint=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1):29500' in full
