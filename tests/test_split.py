import pytest

from tunejudge.errors import SplitError
from tunejudge.records import make_record
from tunejudge.split import allocate, check_no_leak, make_splits

SOURCES = ["a", "b", "c"]


def corpus(n=40, edit=None):
    out = {}
    for s in SOURCES:
        recs = [make_record(f"Question {i} about topic {s}{i}?", f"context {s} {i} " * 3, f"answer {s}{i}", s)
                for i in range(n)]
        if edit == s:
            recs[0] = make_record("A brand new question nobody asked?", "fresh", "new", s)
            recs.append(make_record("Another added item here?", "more", "added", s))
        out[s] = recs
    return out


CFG = {
    "near_duplicate_threshold": 0.85,
    "test": {"size": 9},
    "experiments": {"full": {"size": 30, "val_fraction": 0.2}, "small": {"size": 15, "val_fraction": 0.2}},
}


def ids(recs):
    return {r["id"] for r in recs}


def test_allocate_largest_remainder():
    assert allocate(10, {"a": 1, "b": 1, "c": 1}) == {"a": 4, "b": 3, "c": 3}
    assert allocate(7, {"a": 0.5, "b": 0.25, "c": 0.25}) == {"a": 3, "b": 2, "c": 2}
    assert sum(allocate(1000, {"x": 0.1, "y": 0.3, "z": 0.6}).values()) == 1000


def test_sizes_and_no_overlap():
    res = make_splits(corpus(), CFG, seed=1)
    assert len(res.test) == 9
    full = res.experiments["full"]
    assert len(full["train"]) + len(full["val"]) == 30 and len(full["val"]) == 6
    for parts in res.experiments.values():
        assert not ids(res.test) & ids(parts["train"])
        assert not ids(res.test) & ids(parts["val"])
        assert not ids(parts["train"]) & ids(parts["val"])
    # the smaller experiment's data comes from the same ranks: a subset of the larger one's
    small = res.experiments["small"]
    assert ids(small["train"]) | ids(small["val"]) <= ids(full["train"]) | ids(full["val"])


def test_deterministic_and_seeded():
    a, b = make_splits(corpus(), CFG, seed=1), make_splits(corpus(), CFG, seed=1)
    assert a.test == b.test and a.experiments == b.experiments
    assert ids(make_splits(corpus(), CFG, seed=2).test) != ids(a.test)


def test_editing_one_source_moves_no_other_source():
    before, after = make_splits(corpus(), CFG, seed=1), make_splits(corpus(edit="b"), CFG, seed=1)

    def of(recs, s):
        return ids(r for r in recs if r["source"] == s)

    for s in ("a", "c"):
        assert of(before.test, s) == of(after.test, s)
        for name in CFG["experiments"]:
            for part in ("train", "val"):
                assert of(before.experiments[name][part], s) == of(after.experiments[name][part], s)


def test_cross_source_duplicates_are_dropped_with_reason():
    data = corpus()
    dup = dict(data["a"][5], source="c")
    data["c"].append(dup)
    res = make_splits(data, CFG, seed=1)
    assert [d["record"]["source"] for d in res.dropped] == ["c"]
    assert "across sources" in res.dropped[0]["detail"]


def test_leak_check_fails_loudly():
    test = [make_record("What is the capital of France?", "", "Paris", "a")]
    near = make_record("What is the capital of France ?", "", "Paris.", "b")
    with pytest.raises(SplitError, match="full/train: record .* leaks into the test set: exact duplicate"):
        check_no_leak(test, {"full/train": [near]}, 0.85)
    with pytest.raises(SplitError, match="also in the test set"):
        check_no_leak(test, {"full/val": [test[0]]}, 0.85)
    check_no_leak(test, {"full/train": [make_record("Name a river.", "", "Nile", "a")]}, 0.85)


def test_not_enough_records_is_clear():
    with pytest.raises(SplitError, match="asks .* only"):
        make_splits(corpus(n=5), CFG, seed=1)


def test_size_all_takes_every_remaining_record():
    cfg = dict(CFG, experiments={"full2k": {"size": "all", "val_fraction": 0.1}})
    res = make_splits(corpus(), cfg, seed=1)
    parts = res.experiments["full2k"]
    assert len(parts["train"]) + len(parts["val"]) == 3 * 40 - 9
