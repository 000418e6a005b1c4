"""What the SLURM profile would submit, without submitting: for each job of a dry run, the ``sbatch`` line
snakemake-executor-plugin-slurm builds from the job's resources (its own functions, on the resources Snakemake
resolved for the job), and for a training over several processes the line its job runs inside the allocation
(torchrun on one node; srun starting one torchrun per node across several).

    python -m tunejudge.preflight.slurm --configfile config/cluster.yaml [--rules train] [more snakemake args]

Run it where the pipeline runs (the project root, the profile in ``profiles/slurm``). Needs the plugin (in the
lock), not SLURM: nothing is submitted and no SLURM command is called."""

from __future__ import annotations

import argparse
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field

from ..errors import TunejudgeError

JOB_HEADER = re.compile(r"^(?:local)?rule (\w+):$")


@dataclass
class PlannedJob:
    rule: str
    wildcards: dict = field(default_factory=dict)
    resources: dict = field(default_factory=dict)
    threads: int = 1


class _Resources(dict):
    """A job's resources as the plugin reads them: ``.get`` and attribute access."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


class _Job:
    def __init__(self, planned: PlannedJob):
        self.name, self.threads = planned.rule, planned.threads
        self.wildcards = planned.wildcards
        self.resources = _Resources(planned.resources)


def _value(text: str):
    text = text.strip()
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    return text


def _pairs(text: str) -> dict:
    out = {}
    for part in text.split(", "):
        if "=" in part:
            k, v = part.split("=", 1)
            out[k.strip()] = _value(v)
    return out


def parse_dry_run(text: str) -> list[PlannedJob]:
    """The jobs of ``snakemake -n``'s output: each ``rule <name>:`` block's wildcards, resources and threads."""
    jobs, cur = [], None
    for line in text.splitlines():
        head = JOB_HEADER.match(line.strip()) if not line.startswith(" ") else None
        if head:
            cur = PlannedJob(head.group(1))
            jobs.append(cur)
            continue
        if cur is None or not line.startswith("    "):
            if not line.strip():
                cur = None
            continue
        key, _, value = line.strip().partition(": ")
        if key == "wildcards":
            cur.wildcards = _pairs(value)
        elif key == "resources":
            cur.resources = _pairs(value)
        elif key == "threads":
            cur.threads = int(value)
    return jobs


def sbatch_line(job: PlannedJob, workdir: str = ".") -> str:
    """The plugin's sbatch line for ``job`` (account and partition as the job's resources name them)."""
    from snakemake_executor_plugin_slurm.submit_string import get_submit_command
    from snakemake_executor_plugin_slurm.utils import set_gres_string

    shim = _Job(job)
    wild = "_".join(f"{v}" for v in job.wildcards.values())
    params = {"run_uuid": "<run-uuid>", "slurm_logfile": f".snakemake/slurm_logs/rule_{job.rule}/{wild or 'job'}/%j.log",
              "comment_str": f"rule_{job.rule}" + (f"_wildcards_{wild}" if wild else ""),
              "account": f"-A {shlex.quote(str(job.resources['slurm_account']))}" if job.resources.get("slurm_account") else "",
              "partition": f"-p {shlex.quote(str(job.resources['slurm_partition']))}" if job.resources.get("slurm_partition") else "",
              "workdir": workdir}
    call = get_submit_command(shim, params) + set_gres_string(shim)
    return re.sub(r"\s+", " ", call).strip() + " --wrap '<the job>'"


def launch_line(job: PlannedJob) -> str | None:
    """For a training over several processes: what its job runs inside the allocation (rank 0's job file
    elided), with the allocation's SLURM environment as SLURM sets it."""
    from ..training.distributed import launch_command

    if job.rule != "train":
        return None
    nodes = int(job.resources.get("nodes") or 1)
    gres = str(job.resources.get("gres") or "")
    processes = int(job.resources.get("gpu") or 0) if nodes == 1 else nodes * int(gres.rsplit(":", 1)[-1] or 1)
    if processes <= 1:
        return None
    env = {"SLURM_JOB_NUM_NODES": str(nodes), "SLURM_JOB_ID": "<job-id>"}
    cmd = launch_command(processes, ["python", "-m", "tunejudge.training.job", "<job.json>"], env=env)
    return shlex.join(cmd)


def plan(snakemake_args: list[str], rules: set[str] | None = None, profile: str = "profiles/slurm") -> list[dict]:
    # a cluster job gets its rule's threads: no local core count caps them here
    cmd = [sys.executable, "-m", "snakemake", "-n", "--profile", profile, "--cores", "1024", *snakemake_args]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise TunejudgeError(f"the dry run failed (exit {proc.returncode}):\n{(proc.stdout + proc.stderr)[-3000:]}")
    out = []
    for job in parse_dry_run(proc.stdout + "\n" + proc.stderr):
        if rules and job.rule not in rules:
            continue
        out.append({"rule": job.rule, "wildcards": job.wildcards, "sbatch": sbatch_line(job), "launch": launch_line(job)})
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rules", default="", help="only these rules' jobs (comma-separated)")
    ap.add_argument("--profile", default="profiles/slurm")
    args, rest = ap.parse_known_args(argv)
    try:
        rows = plan(rest, {r for r in args.rules.split(",") if r} or None, args.profile)
    except TunejudgeError as e:
        raise SystemExit(str(e)) from None
    for row in rows:
        what = ", ".join(f"{k}={v}" for k, v in row["wildcards"].items())
        print(f"# {row['rule']}{' (' + what + ')' if what else ''}")
        print(row["sbatch"])
        if row["launch"]:
            print(f"#   inside the allocation: {row['launch']}")


if __name__ == "__main__":
    main()
