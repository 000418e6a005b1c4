"""Exact and near-duplicate detection of instruction records.

Two records are near duplicates when their instructions *and* their inputs are each at least
``threshold`` similar (Jaccard of word shingles). Comparing the fields separately matters: SQuAD
asks several questions about one context, SST-2 repeats one instruction over different sentences.
Candidates come from MinHash LSH on the more specific field (input, else instruction), so the cost
stays near linear; every candidate is verified with the exact Jaccard.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass, field

import numpy as np

_WORD = re.compile(r"\w+", re.UNICODE)
_PRIME = (1 << 31) - 1


def normalize(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(_WORD.findall(text))


def shingles(text: str, n: int = 3) -> frozenset[str]:
    words = normalize(text).split()
    if len(words) < n:
        return frozenset([" ".join(words)]) if words else frozenset()
    return frozenset(" ".join(words[i : i + n]) for i in range(len(words) - n + 1))


def jaccard(a: frozenset, b: frozenset) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


def _hash32(s: str) -> int:
    return int.from_bytes(hashlib.blake2b(s.encode("utf-8"), digest_size=4).digest(), "little") % _PRIME


@dataclass
class _Entry:
    id: str
    instruction: frozenset
    input: frozenset
    exact: str


@dataclass
class NearDupIndex:
    """Incremental index: ``check`` a record against everything ``add``-ed before it."""

    threshold: float = 0.85
    bands: int = 16
    rows: int = 4
    seed: int = 0
    _entries: list[_Entry] = field(default_factory=list)
    _buckets: dict = field(default_factory=dict)
    _exact: dict = field(default_factory=dict)

    def __post_init__(self):
        rng = np.random.default_rng(self.seed)
        k = self.bands * self.rows
        self._a = rng.integers(1, _PRIME, size=k, dtype=np.int64)
        self._b = rng.integers(0, _PRIME, size=k, dtype=np.int64)

    def _signature(self, sh: frozenset) -> np.ndarray:
        if not sh:
            return np.zeros(self.bands * self.rows, dtype=np.int64)
        h = np.fromiter((_hash32(s) for s in sorted(sh)), dtype=np.int64, count=len(sh))
        return ((self._a[:, None] * h[None, :] + self._b[:, None]) % _PRIME).min(axis=1)

    def _keys(self, entry: _Entry) -> list[tuple]:
        sh = entry.input if entry.input else entry.instruction
        sig = self._signature(sh)
        tag = "in" if entry.input else "ins"
        return [(tag, b, sig[b * self.rows : (b + 1) * self.rows].tobytes()) for b in range(self.bands)]

    @staticmethod
    def _entry(rec: dict) -> _Entry:
        exact = "\x1f".join(normalize(rec[f]) for f in ("instruction", "input", "output"))
        return _Entry(rec["id"], shingles(rec["instruction"]), shingles(rec["input"]), exact)

    def check(self, rec: dict) -> tuple[str, str] | None:
        """(kind, reason) if ``rec`` duplicates an indexed record, else None. Does not add it."""
        e = self._entry(rec)
        if e.exact in self._exact:
            return "exact_duplicate", f"exact duplicate (after normalisation) of record {self._exact[e.exact]}"
        seen = set()
        for key in self._keys(e):
            for j in self._buckets.get(key, ()):
                if j in seen:
                    continue
                seen.add(j)
                other = self._entries[j]
                ji, jn = jaccard(e.instruction, other.instruction), jaccard(e.input, other.input)
                if ji >= self.threshold and jn >= self.threshold:
                    return (
                        "near_duplicate",
                        f"near duplicate of record {other.id} (instruction similarity {ji:.2f}, "
                        f"input similarity {jn:.2f}, threshold {self.threshold})",
                    )
        return None

    def add(self, rec: dict) -> None:
        e = self._entry(rec)
        j = len(self._entries)
        self._entries.append(e)
        self._exact.setdefault(e.exact, e.id)
        for key in self._keys(e):
            self._buckets.setdefault(key, []).append(j)

    def check_and_add(self, rec: dict):
        hit = self.check(rec)
        if hit is None:
            self.add(rec)
        return hit
