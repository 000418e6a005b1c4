from tunejudge.curate import curate
from tunejudge.prompt import format_example
from tunejudge.records import make_record

CFG = {"max_tokens": 128, "length_policy": "drop", "near_duplicate_threshold": 0.85,
       "noisy_personas": ["Hurried Commuter"]}


def reasons(res):
    return [(d["reason"], d["record"]["instruction"]) for d in res.dropped]


def test_drops_with_reasons(enc):
    long_text = "word " * 400
    recs = [
        make_record("Name a prime.", "", "7", "s"),
        make_record("Name a prime.", "", "7", "s"),                     # exact duplicate
        make_record("Name a  PRIME!", "", "7", "s"),                    # same after normalisation
        make_record("Empty answer", "", "  ", "s"),
        make_record("", "x", "y", "s"),
        make_record("Summarize.", long_text, "short", "s"),
        make_record("Whee wa Cui from?", "", "Heilongjiang.", "q", {"persona_name": "Hurried Commuter"}),
        make_record("Where is Cui from?", "", "Heilongjiang.", "q", {"persona_name": "Local Reader"}),
    ]
    res = curate(recs, CFG, enc)
    assert [r["instruction"] for r in res.kept] == ["Name a prime.", "Where is Cui from?"]
    got = dict((b, a) for a, b in reasons(res))
    assert got["Empty answer"] == "empty_output"
    assert got[""] == "empty_instruction"
    assert got["Summarize."] == "too_long"
    assert got["Whee wa Cui from?"] == "noisy_persona"
    assert sum(1 for a, _ in reasons(res) if a == "exact_duplicate") == 2
    assert all(d["detail"] for d in res.dropped)
    assert len(res.kept) + len(res.dropped) == len(recs)


def test_near_duplicate_needs_both_fields_similar(enc):
    ctx = "The Normans were the people who in the 10th and 11th centuries gave their name to Normandy, a region in France."
    recs = [
        make_record("In what country is Normandy located?", ctx, "France", "squad"),
        make_record("Who gave their name to Normandy?", ctx, "The Normans", "squad"),  # same context: kept
        make_record("In what country is Normandy located?", ctx + " indeed", "France.", "squad"),  # near dup
        make_record("Classify the sentiment.", "a gorgeous, witty, seductive movie", "Positive", "sst2"),
        make_record("Classify the sentiment.", "a dull, simple-minded tale", "Negative", "sst2"),  # kept
    ]
    res = curate(recs, dict(CFG, max_tokens=1024), enc)
    assert len(res.kept) == 4
    assert [d["reason"] for d in res.dropped] == ["near_duplicate"]
    assert "near duplicate of record" in res.dropped[0]["detail"]


def test_truncate_input_fits_and_keeps_id(enc):
    rec = make_record("Summarize the article.", "Zürich news. " * 300, "A summary.", "cnn")
    res = curate([rec], dict(CFG, length_policy="truncate_input"), enc)
    assert res.truncated == 1 and not res.dropped
    kept = res.kept[0]
    assert kept["id"] == rec["id"]
    assert len(enc.encode(format_example(kept))) <= CFG["max_tokens"]
    assert kept["input"] and rec["input"].startswith(kept["input"])


def test_truncate_cannot_save_a_long_answer(enc):
    rec = make_record("Summarize.", "text", "answer " * 300, "cnn")
    res = curate([rec], dict(CFG, length_policy="truncate_input"), enc)
    assert [d["reason"] for d in res.dropped] == ["too_long"]
