"""Exact and near-duplicate detection of instruction records.

Two records are near duplicates when their instructions *and* their inputs are each at least
``threshold`` similar (Jaccard of word shingles). Comparing the fields separately matters: SQuAD
asks several questions about one context, SST-2 repeats one instruction over different sentences.
Candidates come from MinHash LSH on the more specific field (input, else instruction), so the cost
stays near linear; every candidate is verified with the exact Jaccard. The LSH bands and rows follow
from the threshold (:func:`lsh_params`): a pair exactly at the threshold becomes a candidate with
probability at least :data:`RECALL_TARGET`; a threshold too low for that within
:data:`MAX_HASHES` hash functions compares every pair.
"""

from __future__ import annotations

import hashlib
import math
import re
import unicodedata
from dataclasses import dataclass, field

import numpy as np

_WORD = re.compile(r"\w+", re.UNICODE)
_PRIME = (1 << 31) - 1
RECALL_TARGET = 0.99  # candidate probability of a pair exactly at the threshold (more above it)
MAX_HASHES = 256  # bands x rows; more costs signature time on every record


def lsh_params(threshold: float, target: float = RECALL_TARGET, max_hashes: int = MAX_HASHES) -> tuple[int, int] | None:
    """(bands, rows) with candidate probability ``1 - (1 - t**rows) ** bands >= target`` at
    ``t = threshold``, using the most rows (the fewest false candidates) within ``max_hashes``;
    None when no such pair exists (compare every pair instead)."""
    if not 0 < threshold <= 1:
        raise ValueError(f"near-duplicate threshold {threshold} outside (0, 1]")
    best = None
    for rows in range(1, max_hashes + 1):
        q = threshold**rows
        if q >= 1:
            bands = 1
        else:
            need = math.log(1 - target) / math.log1p(-q) if q > 0 else math.inf
            if need * rows > max_hashes:  # more rows only need more bands
                break
            bands = math.ceil(need)
        if bands * rows <= max_hashes:
            best = (bands, rows)
    return best


def candidate_probability(similarity: float, bands: int, rows: int) -> float:
    return 1 - (1 - similarity**rows) ** bands


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
    bands: int | None = None  # None: from the threshold (lsh_params)
    rows: int | None = None
    seed: int = 0
    _entries: list[_Entry] = field(default_factory=list)
    _buckets: dict = field(default_factory=dict)
    _exact: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.bands is None or self.rows is None:
            params = lsh_params(self.threshold)
            self.exhaustive = params is None
            self.bands, self.rows = params or (1, 1)
        else:
            self.exhaustive = False
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
        return self.band_keys(sh, "in" if entry.input else "ins")

    def band_keys(self, sh: frozenset, tag: str = "in") -> list[tuple]:
        """The LSH bucket keys of a shingle set: two sets are candidates when any key is shared."""
        sig = self._signature(sh)
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
        for j in self._candidates(e):
            other = self._entries[j]
            ji, jn = jaccard(e.instruction, other.instruction), jaccard(e.input, other.input)
            if ji >= self.threshold and jn >= self.threshold:
                return (
                    "near_duplicate",
                    f"near duplicate of record {other.id} (instruction similarity {ji:.2f}, "
                    f"input similarity {jn:.2f}, threshold {self.threshold})",
                )
        return None

    def _candidates(self, e: _Entry):
        """Indexed entries that share an LSH bucket with ``e`` (every entry when exhaustive), in order."""
        if self.exhaustive:
            yield from range(len(self._entries))
            return
        seen = set()
        for key in self._keys(e):
            for j in self._buckets.get(key, ()):
                if j not in seen:
                    seen.add(j)
                    yield j

    def add(self, rec: dict) -> None:
        e = self._entry(rec)
        j = len(self._entries)
        self._entries.append(e)
        self._exact.setdefault(e.exact, e.id)
        if self.exhaustive:
            return
        for key in self._keys(e):
            self._buckets.setdefault(key, []).append(j)

    def check_and_add(self, rec: dict):
        hit = self.check(rec)
        if hit is None:
            self.add(rec)
        return hit
