"""A content-addressed SQLite cache of LLM verdicts (judge scores; later the QA auditor's).

It is not a rule output: failed jobs, ``--forceall`` and new models reuse every unchanged verdict,
and each verdict is committed as soon as it arrives, so an interrupted job loses nothing judged.
Several jobs may share one file (WAL mode, a busy timeout).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

from ..errors import TunejudgeError

SCHEMA = """
CREATE TABLE IF NOT EXISTS verdicts (
    key TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    value TEXT NOT NULL
)
"""


def cache_key(kind: str, parts: dict) -> str:
    """sha256 over canonical JSON of everything that decides the verdict."""
    text = json.dumps({"kind": kind, **parts}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class VerdictCache:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(SCHEMA)
        except sqlite3.DatabaseError as e:
            raise TunejudgeError(
                f"{self.path}: cannot open the verdict cache ({e}); move the file away to start a new one"
            ) from None

    def get(self, key: str) -> dict | None:
        row = self._db.execute("SELECT value FROM verdicts WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def get_many(self, keys) -> dict[str, dict]:
        keys = list(dict.fromkeys(keys))
        found = {}
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            marks = ",".join("?" * len(chunk))
            for k, v in self._db.execute(f"SELECT key, value FROM verdicts WHERE key IN ({marks})", chunk):
                found[k] = json.loads(v)
        return found

    def put(self, key: str, kind: str, value: dict) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO verdicts (key, kind, value) VALUES (?, ?, ?)",
            (key, kind, json.dumps(value, sort_keys=True, ensure_ascii=False)),
        )

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM verdicts").fetchone()[0]

    def close(self) -> None:
        self._db.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
