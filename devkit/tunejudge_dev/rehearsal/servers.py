"""The outside world of a rehearsal, on 127.0.0.1: the Hub (olah), a file server, a proxy that counts.

Each is a context manager that starts on enter and stops on exit.
"""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from functools import partial
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tunejudge.errors import TunejudgeError

from .standin import olah_config


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout_s: float, proc: subprocess.Popen | None = None, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = log.read_text()[-2000:] if log and log.exists() else ""
            raise TunejudgeError(f"{url}: the server exited with code {proc.returncode} before answering:\n{tail}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            time.sleep(0.2)
    raise TunejudgeError(f"{url}: no answer within {timeout_s:.0f} s")


class LocalHub:
    """olah, a self-hosted Hub mirror, serving the stand-in repositories offline on 127.0.0.1."""

    def __init__(self, olah_cli: str, mirrors: Path, workdir: Path, port: int | None = None):
        self.olah_cli, self.mirrors, self.workdir = olah_cli, Path(mirrors), Path(workdir)
        self.port = port or free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.log = self.workdir / "olah.log"
        self.proc: subprocess.Popen | None = None

    def __enter__(self):
        if not Path(self.olah_cli).exists():
            raise TunejudgeError(f"{self.olah_cli}: olah not found; `make rehearse` installs it into .venv-hub "
                                 "(uv venv + requirements-hub.lock), or name it with --olah")
        self.workdir.mkdir(parents=True, exist_ok=True)
        cfg = self.workdir / "olah.toml"
        cfg.write_text(olah_config(self.mirrors, self.workdir / "olah-repos", self.port))
        env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen([self.olah_cli, "-c", str(cfg)], cwd=self.workdir, stdout=log,
                                         stderr=subprocess.STDOUT, env=env, start_new_session=True)
        wait_http(f"{self.endpoint}/api/models/openai-community/gpt2/revision/main", 60, self.proc, self.log)
        return self

    def __exit__(self, *exc):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


class _Threaded:
    def __init__(self, httpd: ThreadingHTTPServer):
        self.httpd = httpd
        self.httpd.daemon_threads = True
        self.port = httpd.server_address[1]
        self._thread = threading.Thread(target=httpd.serve_forever, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


class FileServer(_Threaded):
    """Static files from ``root`` on 127.0.0.1:``port`` (the Raschka URL's stand-in host)."""

    def __init__(self, root: Path, port: int):
        self.requests: Counter = Counter()
        outer = self

        class Handler(SimpleHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                outer.requests[self.path] += 1
                super().do_GET()

        super().__init__(ThreadingHTTPServer(("127.0.0.1", port), partial(Handler, directory=str(root))))


class CountingProxy(_Threaded):
    """``HTTP(S)_PROXY`` for the rehearsal: every request meant for another host lands here, is
    counted by host and refused (403), so a library that would reach out is caught, not served."""

    def __init__(self):
        self.hosts: Counter = Counter()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _refuse(self):
                target = self.path if self.command != "CONNECT" else f"https://{self.path}"
                outer.hosts[urllib.parse.urlsplit(target).netloc or self.path] += 1
                self.send_response(403, "rehearsal: no network outside 127.0.0.1")
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_POST = do_PUT = do_HEAD = do_CONNECT = do_DELETE = do_PATCH = _refuse

        super().__init__(ThreadingHTTPServer(("127.0.0.1", 0), Handler))
        self.url = f"http://127.0.0.1:{self.port}"

    def env(self) -> dict:
        local = "127.0.0.1,localhost,::1"
        return {"HTTP_PROXY": self.url, "HTTPS_PROXY": self.url, "ALL_PROXY": self.url,
                "http_proxy": self.url, "https_proxy": self.url, "all_proxy": self.url,
                "NO_PROXY": local, "no_proxy": local}
