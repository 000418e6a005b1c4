"""A job that starts a local LLM server (the judge, its controls, RAGAS, the audit, the panel, meta-evaluation)
takes it down with it, however the job ends: SIGTERM (Snakemake on Ctrl-C, SLURM at a time limit), SIGINT,
or SIGKILL, where nothing in the job runs any more and the server must notice its parent is gone."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

# A job with its server busy: a long completion in flight when the job is killed (a server that waits for
# it before it exits -- uvicorn's graceful shutdown on SIGTERM -- outlives its job by that much).
JOB = """
import json, sys, threading, time, urllib.request
from tunejudge.io import run_step
from tunejudge.llm.server import llama_server, packaged_gguf

def main():
    with llama_server(packaged_gguf(), n_ctx=512, threads=1, startup_timeout_s=120, log_path=sys.argv[1]) as (url, key, alias):
        body = {"model": alias, "messages": [{"role": "user", "content": "Write a long story about a harbor."}],
                "max_tokens": 400, "temperature": 0.8}
        req = urllib.request.Request(url + "/chat/completions", data=json.dumps(body).encode(),
                                     headers={"Authorization": "Bearer " + key, "Content-Type": "application/json"})
        threading.Thread(target=lambda: urllib.request.urlopen(req, timeout=300), daemon=True).start()
        time.sleep(1.0)
        print("ready", flush=True)
        time.sleep(600)

run_step(main, sys.argv[2])
"""


def children(pid: int, needle: str) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if ppid == pid and needle in (d / "cmdline").read_bytes().decode(errors="replace"):
                out.append(int(d.name))
        except (OSError, ValueError, IndexError):
            continue
    return out


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_gone(pid: int, timeout_s: float = 8.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.1)
    return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL], ids=["SIGTERM", "SIGINT", "SIGKILL"])
def test_a_killed_job_leaves_no_server_behind(tmp_path, how):
    pytest.importorskip("llama_cpp")
    # SIGINT as a terminal's Ctrl-C delivers it: a suite started in the background (`make test &`) hands its
    # children SIGINT ignored, and a job that ignores it is not what this tests
    job = subprocess.Popen([sys.executable, "-c", JOB, str(tmp_path / "server.log"), str(tmp_path / "job.log")],
                           stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
                           preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert job.stdout.readline().strip() == "ready", (tmp_path / "server.log").read_text()[-2000:]
        servers = children(job.pid, "llama_cpp.server")
        assert len(servers) == 1 and alive(servers[0])
        job.send_signal(how)
        job.wait(timeout=30)
        assert wait_gone(servers[0]), f"the server {servers[0]} outlived its job ({how.name})"
    finally:
        if job.poll() is None:
            job.kill()
    if how != signal.SIGKILL:  # the job unwound: it said why it stopped
        assert job.returncode != 0
        if how == signal.SIGTERM:
            assert "stopped (SIGTERM)" in (tmp_path / "job.log").read_text()
