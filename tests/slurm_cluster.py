"""A one-node SLURM cluster on this machine, for the profile test (needs root and Debian's packages:
slurmctld, slurmd, munge, slurm-client; .ci/run installs them).

No accounting database: jobs are followed with squeue, and MinJobAge (300 s is enough for that;
7200 here) keeps finished jobs visible to it and to the test's `scontrol show job` at the end. The node declares one GPU as a generic resource (gres.conf naming /dev/null as its
device), so `sbatch --gpus=1` from the GPU rules is scheduled for real on a machine without a GPU.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

BINARIES = ("slurmctld", "slurmd", "munged", "sbatch", "squeue", "sinfo")
# The config goes where every SLURM command looks by default: srun inside a batch job does not see
# a SLURM_CONF from the submitting shell. A file we did not write is never touched.
CONF_DIR = Path("/etc/slurm")
MARKER = "# written by tunejudge's SLURM test (tests/slurm_cluster.py); removed when it stops\n"


def available() -> str | None:
    """None if a cluster can start here, else why not."""
    missing = [b for b in BINARIES if not shutil.which(b) and not Path(f"/usr/sbin/{b}").exists()]
    if missing:
        return f"SLURM binaries missing: {missing} (apt-get install slurmctld slurmd munge slurm-client)"
    if os.geteuid() != 0:
        return "the one-node SLURM test runs the daemons as root"
    conf = CONF_DIR / "slurm.conf"
    if conf.exists() and not conf.read_text(errors="replace").startswith(MARKER):
        return f"{conf} belongs to a real SLURM installation; the test will not replace it"
    return None


def _exe(name: str) -> str:
    return shutil.which(name) or f"/usr/sbin/{name}"


class OneNodeSlurm:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.host = socket.gethostname().split(".")[0]
        self.conf = CONF_DIR / "slurm.conf"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}
        self._started_munge = False

    def _write_conf(self) -> None:
        for d in ("state", "spool", "jobs"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        cpus = os.cpu_count() or 1
        mem_mb = int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20 * 0.8)
        r = self.root
        CONF_DIR.mkdir(parents=True, exist_ok=True)
        self.conf.write_text(MARKER + f"""\
ClusterName=tunejudge
SlurmctldHost={self.host}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
MinJobAge=7200
GresTypes=gpu
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
StateSaveLocation={r}/state
SlurmdSpoolDir={r}/spool
SlurmctldPidFile={r}/slurmctld.pid
SlurmdPidFile={r}/slurmd.pid
SlurmctldLogFile={r}/slurmctld.log
SlurmdLogFile={r}/slurmd.log
NodeName={self.host} CPUs={cpus} RealMemory={mem_mb} Gres=gpu:1 State=UNKNOWN
PartitionName=main Nodes={self.host} Default=YES MaxTime=INFINITE State=UP
""")
        # a stand-in device file: slurmd wants a character device and counts it as the node's one GPU
        (CONF_DIR / "gres.conf").write_text(MARKER + f"NodeName={self.host} Name=gpu File=/dev/null\n")

    def start(self, timeout: float = 60) -> None:
        self._write_conf()
        if subprocess.run(["pgrep", "-x", "munged"], capture_output=True).returncode != 0:
            key = Path("/etc/munge/munge.key")
            if not key.exists():
                subprocess.run(["mungekey", "--create"], check=True)
            run_dir = Path("/run/munge")
            run_dir.mkdir(parents=True, exist_ok=True)
            shutil.chown(run_dir, "munge", "munge")
            subprocess.run(["runuser", "-u", "munge", "--", _exe("munged")], check=True)
            self._started_munge = True
        subprocess.run([_exe("slurmctld"), "-f", str(self.conf)], check=True, env=self.env)
        subprocess.run([_exe("slurmd"), "-f", str(self.conf)], check=True, env=self.env)
        deadline = time.time() + timeout
        while time.time() < deadline:
            out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, env=self.env)
            if out.returncode == 0 and out.stdout.strip() in ("idle", "mixed", "allocated"):
                return
            time.sleep(0.5)
        tail = self.log_tail()
        self.stop()
        raise RuntimeError(f"SLURM did not come up: {tail}")

    def log_tail(self, n: int = 20) -> str:
        out = []
        for name in ("slurmctld.log", "slurmd.log"):
            p = self.root / name
            if p.exists():
                out.append(f"--- {name}\n" + "\n".join(p.read_text(errors="replace").splitlines()[-n:]))
        return "\n".join(out)

    def stop(self) -> None:
        subprocess.run(["scancel", "--user", "root"], capture_output=True, env=self.env)
        for name in ("slurmd.pid", "slurmctld.pid"):
            p = self.root / name
            if p.exists():
                try:
                    os.kill(int(p.read_text().strip()), signal.SIGTERM)
                except (ProcessLookupError, ValueError):
                    pass
        time.sleep(1)
        if self._started_munge:
            subprocess.run(["pkill", "-x", "munged"], capture_output=True)
        for name in ("slurm.conf", "gres.conf"):
            p = CONF_DIR / name
            if p.exists() and p.read_text(errors="replace").startswith(MARKER):
                p.unlink()
