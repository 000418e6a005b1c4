"""File I/O shared by every step: atomic writes, JSON records, Markdown tables, step logging."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .errors import DataError, TunejudgeError

log = logging.getLogger("tunejudge")


def current_umask() -> int:
    """The process's umask, read without changing it where the OS says it (Linux), else set and reset."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` only on success.

    The file gets the permissions ``open()`` would give it (0666 less the umask): ``mkstemp`` makes
    it 0600, which would leave every output readable by its owner only on a shared project folder.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        # after the writer: some (safetensors) write a new file in the temporary's place
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def atomic_folder(path: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``path``; on success give everything in it the permissions
    ``open()`` and ``mkdir()`` would (the umask's) and rename it to ``path``: the folder whole, or nothing.

    Every folder of weights passes here (exports, prepared bases): safetensors, under transformers' and
    peft's ``save_pretrained``, writes its files 0600, which would hide a group's trained models from it
    on a shared cluster.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        umask = current_umask()
        for p in [tmp, *tmp.rglob("*")]:
            if not p.is_symlink():
                os.chmod(p, (0o777 if p.is_dir() else 0o666) & ~umask)
        tmp.rename(path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def sha256_file(path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def write_text_atomic(path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def dumps_json(obj) -> str:
    """Canonical JSON text: stable across runs, readable, unicode kept as is."""
    return json.dumps(obj, indent=2, ensure_ascii=False) + "\n"


def write_json(path, obj) -> None:
    write_text_atomic(path, dumps_json(obj))


def write_jsonl(path, rows) -> None:
    """One compact JSON object per line (stable key order as given), written atomically."""
    write_text_atomic(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def read_json(path):
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(path, problem="file not found") from None
    except UnicodeDecodeError as e:
        raise DataError(path, problem=f"not UTF-8 text ({e.reason} at byte {e.start})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(path, problem=f"invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from None


def read_jsonl(path) -> list[dict]:
    path = Path(path)
    rows = []
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise DataError(path, n, problem=f"invalid JSON on line {n + 1}: {e.msg}") from None
    return rows


def setup_logging(log_file: str | os.PathLike | None = None, level=logging.INFO) -> logging.Logger:
    """Log to the rule's log file (and stderr), one format for every step."""
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S")
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        # truncate, then append: progress bars (progress_stream) write to the same file through
        # another handle, and only O_APPEND keeps two writers from overwriting each other's bytes
        open(log_file, "w").close()
        handlers.append(logging.FileHandler(log_file, mode="a", encoding="utf-8"))
    for h in handlers:
        h.setFormatter(fmt)
        root.addHandler(h)
    root.setLevel(level)
    # peft imports bitsandbytes wherever it is installed; on a CPU it says at import that an optional kernel
    # package is missing -- noise in every model step's log (QLoRA on a CPU runs without it, slower)
    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
    return log


@contextlib.contextmanager
def progress_stream(log_file: str | os.PathLike | None):
    """A text stream for tqdm bars: the rule log under Snakemake, stderr otherwise."""
    if not log_file:
        yield sys.stderr
        return
    with open(log_file, "a", encoding="utf-8", buffering=1) as f:
        yield f


class Stopped(BaseException):
    """The step was told to stop (SIGTERM: Snakemake on Ctrl-C, SLURM at a time limit)."""


def _stop_on_sigterm(signum, frame):
    raise Stopped(signum)


def run_step(main, log_file=None) -> None:
    """Run one pipeline step: a TunejudgeError becomes one clear line and exit code 1. SIGTERM unwinds
    the step as Ctrl-C does, so what it started (a local LLM server) and its temporary files go with it."""
    import signal

    setup_logging(log_file)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    try:
        main()
    except TunejudgeError as e:
        log.error("%s", e)
        sys.exit(1)
    except Stopped:
        log.error("stopped (SIGTERM); what this step wrote so far is kept where it is safe to resume from")
        sys.exit(128 + signal.SIGTERM)


def md_table(header: list[str], rows: list[list]) -> str:
    """A Markdown table whose cells cannot break it (a ``|`` or a line break in a cell)."""
    def cell(x):
        return str(x).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(cell(x) for x in r) + " |" for r in rows]
    return "\n".join(lines)
