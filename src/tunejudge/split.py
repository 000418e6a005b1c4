"""Splits: one global held-out test set, then train and val per experiment.

Every record's place is decided by a seeded hash of its content ``id``, never by its position in a
file: editing one source moves none of another source's records between splits. Within a source,
records are ranked by that hash; the test set takes the first ranks, each experiment's pool the
following ones, so a smaller experiment's data is a subset of a larger one's (same seed and mix).
"""

from __future__ import annotations

import hashlib
import logging
import math
from dataclasses import dataclass, field

from .dedup import NearDupIndex
from .errors import ConfigError, SplitError

log = logging.getLogger(__name__)


def rank_key(seed: int, rid: str, salt: str = "") -> str:
    return hashlib.sha256(f"{seed}:{salt}:{rid}".encode()).hexdigest()


def allocate(total: int, weights: dict[str, float]) -> dict[str, int]:
    """Split ``total`` over sources by weight, largest remainder, ties broken by config order."""
    if total < 0:
        raise ConfigError(f"split size {total} is negative")
    wsum = sum(weights.values())
    if wsum <= 0:
        raise ConfigError("mix weights must have a positive sum")
    exact = {s: total * w / wsum for s, w in weights.items()}
    counts = {s: math.floor(x) for s, x in exact.items()}
    order = sorted(weights, key=lambda s: (-(exact[s] - counts[s]), list(weights).index(s)))
    for s in order[: total - sum(counts.values())]:
        counts[s] += 1
    return counts


@dataclass
class SplitResult:
    test: list[dict] = field(default_factory=list)
    experiments: dict[str, dict[str, list[dict]]] = field(default_factory=dict)
    dropped: list[dict] = field(default_factory=list)

    def manifest(self) -> dict:
        def count(recs):
            out = {}
            for r in recs:
                out[r["source"]] = out.get(r["source"], 0) + 1
            return dict(sorted(out.items()))

        return {
            "test": {"n": len(self.test), "by_source": count(self.test)},
            "experiments": {
                name: {part: {"n": len(recs), "by_source": count(recs)} for part, recs in parts.items()}
                for name, parts in self.experiments.items()
            },
            "dropped_across_sources": len(self.dropped),
        }


def dedup_across_sources(by_source: dict[str, list[dict]], threshold: float) -> tuple[dict, list[dict]]:
    """Drop records that duplicate a record of an earlier source (config order)."""
    index = NearDupIndex(threshold=threshold)
    kept, dropped = {}, []
    for source, recs in by_source.items():
        kept[source] = []
        for rec in recs:
            hit = index.check_and_add(rec)
            if hit is None:
                kept[source].append(rec)
            else:
                dropped.append({"reason": hit[0], "detail": hit[1] + " (across sources)", "record": rec})
    return kept, dropped


def check_no_leak(test: list[dict], others: dict[str, list[dict]], threshold: float) -> None:
    """Fail loudly if any train/val record shares an id with, or nearly duplicates, a test record."""
    test_ids = {r["id"] for r in test}
    index = NearDupIndex(threshold=threshold)
    for r in test:
        index.add(r)
    for name, recs in others.items():
        for r in recs:
            if r["id"] in test_ids:
                raise SplitError(f"{name}: record {r['id']} ({r['source']}) is also in the test set")
            hit = index.check(r)
            if hit is not None:
                raise SplitError(f"{name}: record {r['id']} ({r['source']}) leaks into the test set: {hit[1]}")


def _counts(spec: dict, sources: list[str], what: str) -> dict[str, int]:
    """Per-source counts from {size, mix} (weights) or {counts} (explicit)."""
    if "counts" in spec:
        unknown = set(spec["counts"]) - set(sources)
        if unknown:
            raise ConfigError(f"{what}.counts: unknown source {sorted(unknown)[0]!r}")
        return {s: int(spec["counts"].get(s, 0)) for s in sources}
    mix = spec.get("mix") or {s: 1.0 for s in sources}
    unknown = set(mix) - set(sources)
    if unknown:
        raise ConfigError(f"{what}.mix: unknown source {sorted(unknown)[0]!r}")
    return allocate(int(spec["size"]), {s: float(mix.get(s, 0.0)) for s in sources})


def make_splits(by_source: dict[str, list[dict]], cfg: dict, seed: int) -> SplitResult:
    """``cfg``: {test: {size, mix} | {counts}, experiments: {name: {size|'all', mix, val_fraction}},
    near_duplicate_threshold}."""
    threshold = float(cfg.get("near_duplicate_threshold", 0.85))
    sources = list(by_source)
    pool, dropped = dedup_across_sources(by_source, threshold)
    ranked = {s: sorted(recs, key=lambda r: rank_key(seed, r["id"])) for s, recs in pool.items()}

    res = SplitResult(dropped=dropped)
    test_counts = _counts(cfg["test"], sources, "split.test")
    rest = {}
    for s in sources:
        k = test_counts[s]
        if k > len(ranked[s]):
            raise SplitError(f"split.test asks {k} {s} records; only {len(ranked[s])} remain after curation")
        res.test += ranked[s][:k]
        rest[s] = ranked[s][k:]

    for name, spec in cfg["experiments"].items():
        what = f"split.experiments.{name}"
        if spec.get("size") == "all":
            take = {s: len(rest[s]) for s in sources if (spec.get("mix") or {s: 1}).get(s, 0) > 0}
        else:
            take = _counts(spec, sources, what)
        val_fraction = float(spec.get("val_fraction", 0.1))
        # the validation share is allocated over the whole experiment, so small sources still add up
        n_val = allocate(round(sum(take.values()) * val_fraction), {s: k for s, k in take.items() if k}) if any(take.values()) else {}
        train, val = [], []
        for s, k in take.items():
            if k > len(rest[s]):
                raise SplitError(f"{what} asks {k} {s} records; only {len(rest[s])} remain outside the test set")
            chosen = sorted(rest[s][:k], key=lambda r: rank_key(seed, r["id"], salt="val"))
            v = n_val.get(s, 0)
            val += chosen[:v]
            train += chosen[v:]
        res.experiments[name] = {"train": _ordered(train, seed, sources), "val": _ordered(val, seed, sources)}
    res.test = _ordered(res.test, seed, sources)
    for name, parts in res.experiments.items():
        check_no_leak(res.test, {f"{name}/{p}": recs for p, recs in parts.items()}, threshold)
    return res


def _ordered(recs: list[dict], seed: int, sources: list[str]) -> list[dict]:
    pos = {s: i for i, s in enumerate(sources)}
    return sorted(recs, key=lambda r: (pos[r["source"]], rank_key(seed, r["id"])))
