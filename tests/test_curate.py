from tunejudge.data.curate import curate
from tunejudge.data.prompt import format_example
from tunejudge.data.records import make_record

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


AG_CFG = {"instruction": "Classify the topic of the following news text.",
          "labels": ["World", "Sports", "Business", "Science/Technology"]}


def _curate_source(builder, rows, src_cfg, enc, **cur):
    from tunejudge.data.builders import build, required_fields

    records, skipped = build(builder, rows, src_cfg, builder, where=f"{builder}.json")
    res = curate(records, {"max_tokens": 1024, **cur}, enc, required=required_fields(builder, src_cfg), task=builder)
    return records, skipped, res


def test_hostile_agnews_rows_keep_no_empty_input_and_no_markup(enc):
    rows = [
        {"text": "", "label": 1},
        {"text": "   ", "label": 0},
        {"text": "Oil hits #36;40 a barrel as &lt;b&gt;OPEC&lt;/b&gt; meets\\Traders wary of supply &amp; demand",
         "label": 2},
        {"text": "Unlabelled test row about markets", "label": -1},
        {"text": "Team wins the cup after a late goal in extra time", "label": 1},
        {"text": "Team wins the cup after a late goal in extra time", "label": 1},
    ]
    records, skipped, res = _curate_source("agnews", rows, AG_CFG, enc)
    assert skipped == {"unlabelled row": 1}
    assert [r["input"] for r in res.kept] == [
        "Oil hits $40 a barrel as OPEC meets Traders wary of supply & demand",
        "Team wins the cup after a late goal in extra time"]
    for r in res.kept:
        assert r["input"].strip() and not any(m in r["input"] for m in ("#36;", "&lt;", "&amp;", "<b>", "\\"))
    reasons = sorted(d["reason"] for d in res.dropped)
    assert reasons == ["empty_input", "empty_input", "exact_duplicate"]
    assert all(d["detail"] for d in res.dropped)
    assert "agnews task needs it" in next(d["detail"] for d in res.dropped if d["reason"] == "empty_input")
    raw, _, _ = _curate_source("agnews", rows[2:3], dict(AG_CFG, clean_markup=False), enc)
    assert raw[0]["input"] == rows[2]["text"]


def test_hostile_squad_rows_keep_no_empty_context(enc):
    rows = [
        {"id": "q1", "title": "T", "question": "Who coached?", "context": "",
         "answers": {"text": ["Wade Phillips"], "answer_start": [0]}},
        {"id": "q2", "title": "T", "question": "When?", "context": "It happened in 1998.",
         "answers": {"text": [], "answer_start": []}},
        {"id": "q3", "title": "T", "question": "When?", "context": "It happened in 1998.",
         "answers": {"text": ["1998"], "answer_start": [15]}},
    ]
    _, skipped, res = _curate_source("qa_squad", rows, {}, enc)
    assert skipped == {"no gold answer": 1}
    assert [d["reason"] for d in res.dropped] == ["empty_input"]
    assert [r["meta"]["squad_id"] for r in res.kept] == ["q3"] and res.kept[0]["meta"]["answer_start"] == 15


def test_extractive_answers_survive_truncation_as_substrings_of_the_input(enc):
    """Long contexts with the answer near the end (where a cut from the start would remove it)."""
    import random

    rng = random.Random(7)
    filler = "The committee met again to discuss the schedule of the season and its many fixtures. "
    rows = []
    for i in range(30):
        answer = f"Coach{i} Phillips{i}"
        before = filler * rng.randint(60, 120)
        after = filler * rng.randint(0, 3)
        context = f"{before}Under defensive coordinator {answer}, the team improved. {after}"
        rows.append({"id": f"s{i}", "title": "T", "question": f"Who was defensive coordinator {i}?",
                     "context": context, "answers": {"text": [answer], "answer_start": [context.index(answer)]}})
    rows.append({"id": "tiny-budget", "title": "T", "question": "Which?", "context": "x " * 600 + "The answer",
                 "answers": {"text": ["The answer " * 1], "answer_start": [1200]}})
    _, _, res = _curate_source("qa_squad", rows, {}, enc, max_tokens=256, length_policy="truncate_input")
    assert res.truncated >= 30 and len(res.kept) == 31
    for r in res.kept:
        assert r["output"] in r["input"], r["meta"]["squad_id"]
        assert r["input"][r["meta"]["answer_start"]:].startswith(r["output"])
        assert len(enc.encode(format_example(r))) <= 256
    _, _, tight = _curate_source("qa_squad", rows[:3], {}, enc, max_tokens=40, length_policy="truncate_input")
    assert {d["reason"] for d in tight.dropped} <= {"answer_truncated", "too_long"} and not tight.kept
