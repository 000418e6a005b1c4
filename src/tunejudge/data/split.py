"""Splits: one global held-out test set, then train and val per experiment.

The split places whole groups (``records.groups_of``): records that share a group key (a CNN/DailyMail
article's summary and the questions generated from it, in whichever source) are one unit, ranked by
a seeded hash of its smallest key; a record without a group is its own unit, ranked by its content
``id``. Never by position in a file: editing one source moves none of another source's records
between splits. The test set takes whole units in rank order while every source they hold is under
its quota; a quota still open then takes part of the next unit, whose other members are withheld
from training (dropped, reason ``group_in_test``), so test counts stay exact. Each experiment's pool takes the following records of each source, so a smaller experiment's
data is a subset of a larger one's (same seed and mix). ``check_no_leak`` then fails on any group
key, id or near duplicate shared between the test set and a train or val set.
"""

from __future__ import annotations

import hashlib
import logging
import math
from dataclasses import dataclass, field

from .dedup import NearDupIndex
from ..errors import ConfigError, SplitError
from .records import groups_of

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
    withheld: int = 0  # records kept out of train/val because their group is in the test set

    def manifest(self) -> dict:
        def count(recs):
            out = {}
            for r in recs:
                out[r["source"]] = out.get(r["source"], 0) + 1
            return dict(sorted(out.items()))

        return {
            "test": {"n": len(self.test), "by_source": count(self.test), "withheld_from_training": self.withheld,
                     "shared_groups": sum(1 for g, n in _group_sizes(self.test).items() if n > 1)},
            "experiments": {
                name: {part: {"n": len(recs), "by_source": count(recs)} for part, recs in parts.items()}
                for name, parts in self.experiments.items()
            },
            "dropped_across_sources": len(self.dropped) - self.withheld,
        }


def _group_sizes(recs: list[dict]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in recs:
        for g in groups_of(r):
            out[g] = out.get(g, 0) + 1
    return out


def split_units(records: list[dict]) -> dict[str, str]:
    """Record id -> the key of its unit: records linked by any shared group key (transitively) form
    one unit, named by its smallest key. A record without a group is a unit of its own id."""
    parent: dict[str, str] = {}

    def find(k: str) -> str:
        parent.setdefault(k, k)
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    for r in records:
        keys = groups_of(r)
        for k in keys[1:]:
            a, b = find(keys[0]), find(k)
            if a != b:
                parent[max(a, b)] = min(a, b)
        find(keys[0])
    return {r["id"]: find(groups_of(r)[0]) for r in records}


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
    """Fail loudly if any train/val record shares an id or a group key (the same news article) with,
    or nearly duplicates, a test record."""
    test_ids = {r["id"] for r in test}
    test_groups = {g: r for r in test for g in groups_of(r)}
    index = NearDupIndex(threshold=threshold)
    for r in test:
        index.add(r)
    for name, recs in others.items():
        for r in recs:
            if r["id"] in test_ids:
                raise SplitError(f"{name}: record {r['id']} ({r['source']}) is also in the test set")
            shared = next((g for g in groups_of(r) if g in test_groups), None)
            if shared is not None:
                t = test_groups[shared]
                raise SplitError(f"{name}: record {r['id']} ({r['source']}) shares group {shared!r} with test "
                                 f"record {t['id']} ({t['source']}): the same source material on both sides")
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
    unit = split_units([r for recs in pool.values() for r in recs])
    order = {key: rank_key(seed, key) for key in set(unit.values())}
    ranked = {s: sorted(recs, key=lambda r: (order[unit[r["id"]]], rank_key(seed, r["id"])))
              for s, recs in pool.items()}

    res = SplitResult(dropped=dropped)
    test_counts = _counts(cfg["test"], sources, "split.test")
    for s in sources:
        if test_counts[s] > len(ranked[s]):
            raise SplitError(f"split.test asks {test_counts[s]} {s} records; only {len(ranked[s])} remain after curation")
    members: dict[str, list[dict]] = {}
    for s in sources:
        for r in ranked[s]:
            members.setdefault(unit[r["id"]], []).append(r)
    taken = dict.fromkeys(sources, 0)
    in_test: set[str] = set()
    # whole units first, in rank order, while every source they hold has room
    for key in sorted(members, key=lambda k: order[k]):
        if taken == test_counts:
            break
        need: dict[str, int] = {}
        for r in members[key]:
            need[r["source"]] = need.get(r["source"], 0) + 1
        if all(taken[s] + n <= test_counts[s] for s, n in need.items()):
            res.test += members[key]
            in_test.add(key)
            for s, n in need.items():
                taken[s] += n
    # a quota still open (every remaining unit also holds records of a full source): split the next
    # units; their members that do not fit the test set are withheld from training, not leaked to it
    withheld = []
    for key in sorted(members, key=lambda k: order[k]):
        if taken == test_counts:
            break
        if key in in_test or not any(taken[r["source"]] < test_counts[r["source"]] for r in members[key]):
            continue
        in_test.add(key)
        for r in members[key]:
            if taken[r["source"]] < test_counts[r["source"]]:
                res.test.append(r)
                taken[r["source"]] += 1
            else:
                withheld.append(r)
    for r in withheld:
        res.dropped.append({"reason": "group_in_test", "record": r,
                            "detail": f"shares group {unit[r['id']]!r} with a test record; its source's test "
                                      "quota is full, so it is kept out of training instead"})
    res.withheld = len(withheld)
    out_of_pool = {r["id"] for r in res.test} | {r["id"] for r in withheld}
    rest = {s: [r for r in ranked[s] if r["id"] not in out_of_pool] for s in sources}

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
