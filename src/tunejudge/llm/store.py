"""A content-addressed store of LLM answers (judge verdicts, audit verdicts, RAGAS answers).

It is not a rule output: failed jobs, ``--forceall`` and new models reuse every unchanged answer.
On a cluster, judge, RAGAS and audit jobs on different nodes write one store over a shared
filesystem (NFS, Lustre), where locks are unreliable and SQLite's WAL mode is unsupported. So
there are no locks and no shared file: each answer is one immutable file,
``<root>/<key[:2]>/<key>.json``, written to a temporary name in the same folder and renamed into
place (a rename within a folder is atomic on NFS too). A reader sees a whole answer or none; a job
killed mid-write loses only the answer in flight and leaves one temporary file, which readers
ignore and a later open sweeps once it is an hour old (a live writer on another node is never
that slow). Two jobs that write the same key write the same kind of answer; the last rename wins.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

from ..errors import TunejudgeError

TMP_SUFFIX = ".tmp"
STALE_TMP_S = 3600.0


def cache_key(kind: str, parts: dict) -> str:
    """sha256 over canonical JSON of everything that decides the answer."""
    text = json.dumps({"kind": kind, **parts}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class AnswerStore:
    def __init__(self, path: str | Path, *, sweep_older_than_s: float | None = STALE_TMP_S):
        self.root = Path(path)
        if self.root.is_file():
            raise TunejudgeError(f"{self.root}: a file, not an answer store folder: set judge.cache to a folder "
                                 "(it is created) or move the file away")
        self.root.mkdir(parents=True, exist_ok=True)
        if sweep_older_than_s is not None:
            self.sweep(sweep_older_than_s)

    def _path(self, key: str) -> Path:
        if len(key) < 8 or not all(c in "0123456789abcdef" for c in key):
            raise ValueError(f"not a store key: {key!r}")
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict | None:
        try:
            data = json.loads(self._path(key).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:  # damaged from outside (a disk error): ask again, do not crash
            import logging

            logging.getLogger(__name__).warning("%s: unreadable answer, ignored (%s)", self._path(key), e)
            return None
        return data["value"]

    def get_many(self, keys) -> dict[str, dict]:
        found = {}
        for k in dict.fromkeys(keys):
            v = self.get(k)
            if v is not None:
                found[k] = v
        return found

    def put(self, key: str, kind: str, value: dict) -> None:
        """Write one answer: a temporary file in the key's folder, flushed, renamed into place."""
        final = self._path(key)
        final.parent.mkdir(exist_ok=True)
        tmp = final.with_name(f".{key}.{os.getpid()}.{os.urandom(4).hex()}{TMP_SUFFIX}")
        data = json.dumps({"key": key, "kind": kind, "value": value}, sort_keys=True, ensure_ascii=False)
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, final)
        finally:
            if tmp.exists():
                tmp.unlink()

    def keys(self):
        for sub in sorted(self.root.iterdir()):
            if sub.is_dir():
                for p in sorted(sub.glob("*.json")):
                    if not p.name.startswith("."):
                        yield p.stem

    def __len__(self) -> int:
        return sum(1 for _ in self.keys())

    def temporary_files(self) -> list[Path]:
        return sorted(self.root.glob(f"*/.*{TMP_SUFFIX}"))

    def sweep(self, older_than_s: float) -> int:
        """Remove temporary files left by writers killed mid-write, once older than ``older_than_s``."""
        now, n = time.time(), 0
        for p in self.temporary_files():
            try:
                if now - p.stat().st_mtime >= older_than_s:
                    p.unlink()
                    n += 1
            except FileNotFoundError:
                pass  # its writer finished (renamed it) meanwhile
        return n

    def check(self) -> list[str]:
        """Problems: answers that do not parse, or whose content names another key."""
        bad = []
        for key in self.keys():
            try:
                data = json.loads(self._path(key).read_text(encoding="utf-8"))
                if data.get("key") != key:
                    bad.append(f"{key}: holds key {data.get('key')!r}")
            except (OSError, ValueError) as e:
                bad.append(f"{key}: {e}")
        return bad

    def close(self) -> None:  # nothing held open between calls
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def main(argv=None) -> int:
    """``python -m tunejudge.llm.store check FOLDER``."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m tunejudge.llm.store", description=main.__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    chk = sub.add_parser("check", help="every answer parses and sits under its own key")
    chk.add_argument("folder")
    args = ap.parse_args(argv)
    store = AnswerStore(args.folder, sweep_older_than_s=None)
    bad = store.check()
    print(f"{len(store)} answers, {len(store.temporary_files())} temporary files, {len(bad)} problems")
    for b in bad:
        print(f"  {b}")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
