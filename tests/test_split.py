import pytest

from tunejudge.data.records import make_record
from tunejudge.data.split import allocate, check_no_leak, make_splits
from tunejudge.errors import SplitError

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


def _cnn_corpus(n_articles=30):
    """Summaries and two QA records per article, built by the real builders from CNN-shaped rows."""
    from tunejudge.data.builders import qa_cnn, summarization_cnn

    rows = [{"id": f"art{i:03d}", "article": f"Article {i} reports event {i} in town {i} on day {i}. " * 5,
             "highlights": f"Event {i} happened in town {i}."} for i in range(n_articles)]
    summ, _ = summarization_cnn(rows, {"instruction": "Summarize the article."}, "summarization_cnn")
    qa_rows = [{"user_input": f"What happened in town {i} ({k})?", "reference": f"Event {i} (fact {k}).",
                "reference_contexts": [rows[i]["article"][:80]], "article_id": rows[i]["id"]}
               for i in range(n_articles) for k in range(2)]
    qa, _ = qa_cnn(qa_rows, {}, "qa_cnn")
    return {"summarization_cnn": summ, "qa_cnn": qa}


@pytest.mark.parametrize("seed", range(12))
def test_an_article_summary_and_its_questions_stay_on_one_side(seed):
    by_source = _cnn_corpus()
    cfg = {"near_duplicate_threshold": 0.85, "test": {"counts": {"summarization_cnn": 5, "qa_cnn": 7}},
           "experiments": {"full": {"size": "all", "val_fraction": 0.2}}}
    res = make_splits(by_source, cfg, seed=seed)
    side = {}
    for part, recs in [("test", res.test), ("train", res.experiments["full"]["train"]),
                       ("val", res.experiments["full"]["val"])]:
        for r in recs:
            side.setdefault(r["group"][0], set()).add("test" if part == "test" else "rest")
    assert all(len(s) == 1 for s in side.values())
    assert sum(r["source"] == "qa_cnn" for r in res.test) == 7
    assert sum(r["source"] == "summarization_cnn" for r in res.test) == 5
    # an article whose records do not all fit the test quotas keeps the rest out of training
    withheld = [d["record"] for d in res.dropped if d["reason"] == "group_in_test"]
    assert withheld and all(side[r["group"][0]] == {"test"} for r in withheld)
    assert res.manifest()["test"]["withheld_from_training"] == len(withheld)
    placed = len(res.test) + len(res.experiments["full"]["train"]) + len(res.experiments["full"]["val"])
    assert placed + len(withheld) == 90


def test_the_leak_check_fails_on_a_split_that_puts_an_article_apart():
    by_source = _cnn_corpus(3)
    summary = by_source["summarization_cnn"][0]
    q1, q2 = [r for r in by_source["qa_cnn"] if r["group"] == summary["group"]]
    assert len({summary["id"], q1["id"], q2["id"]}) == 3
    with pytest.raises(SplitError, match=r"shares group 'cnn_dailymail:art000' with test record"):
        check_no_leak([q1], {"full/train": [summary, q2]}, 0.85)
    with pytest.raises(SplitError, match="shares group"):
        check_no_leak([summary], {"full/val": [q2]}, 0.85)
    check_no_leak([summary, q1, q2], {"full/train": by_source["qa_cnn"][2:]}, 0.85)


def test_units_join_transitively_and_a_record_without_group_is_its_own():
    from tunejudge.data.split import split_units

    a = make_record("q1", "", "a1", "qa", group=["art:1", "art:2"])
    b = make_record("q2", "", "a2", "qa", group=["art:2"])
    c = make_record("s3", "x", "a3", "sum", group=["art:3", "art:1"])
    d = make_record("alone", "", "a4", "other")
    units = split_units([a, b, c, d])
    assert units[a["id"]] == units[b["id"]] == units[c["id"]] == "art:1"
    assert units[d["id"]] == d["id"]


def test_records_without_groups_split_as_before():
    """Sources without groups keep their places: ranked by their own id."""
    from tunejudge.data.split import rank_key

    res = make_splits(corpus(), CFG, seed=1)
    for s in SOURCES:
        mine = sorted(corpus()[s], key=lambda r: rank_key(1, r["id"]))
        assert ids(r for r in res.test if r["source"] == s) == ids(mine[:3])
