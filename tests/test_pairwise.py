"""Pairwise judging (MT-Bench style): both orders over real HTTP, position bias, length control."""

import json
import re

import numpy as np
import pandas as pd
import pytest
from test_judge import KEY_ENV, METRICS, judge_cfg
from tunejudge_dev.testing.openai_server import Reply, ScriptedOpenAI, prompt_of

from tunejudge.analysis.stats import Settings, pairwise_table
from tunejudge.judge.pairwise import EMPTY_REASON, combine, judge_pair, template
from tunejudge.llm import backends
from tunejudge.llm.store import AnswerStore


@pytest.fixture(autouse=True)
def key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, "none")


def _answers(n=40, seed=0):
    """Two models of equal quality; model a's answer is the longer one on ~75% of the items."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        short, long_ = f"Answer {i}.", f"Answer {i}, said at length with many more words than needed here."
        a_long = rng.random() < 0.75
        rows.append({"id": f"q{i:03d}", "source": "sst2", "instruction": f"Question q{i:03d}?", "input": "",
                     "output": f"Answer {i}.", "model a": long_ if a_long else short,
                     "model b": short if a_long else long_})
    return rows


def _connect(cfg):
    import contextlib

    from tunejudge.llm.client import RequestBudget

    @contextlib.contextmanager
    def connect():
        with backends.open_client(cfg, RequestBudget(None)) as (make_client, _):
            yield make_client

    return connect


def _run(script, tmp_path, answers, times=1):
    with ScriptedOpenAI(script) as srv:
        cfg = judge_cfg(srv.base_url)
        out = []
        for _ in range(times):
            before = srv.chat_requests
            with AnswerStore(tmp_path / "answers") as cache:
                rows, stats = judge_pair("a", "b", answers, METRICS, backends.identity(cfg), cache, _connect(cfg),
                                         cfg["in_flight"])
            out.append((rows, stats, srv.chat_requests - before))
        return out if times > 1 else out[0]


def _blocks(prompt):
    first = re.search(r"\[Answer A\]\n(.*?)\n\[End of answer A\]", prompt, re.S).group(1)
    second = re.search(r"\[Answer B\]\n(.*?)\n\[End of answer B\]", prompt, re.S).group(1)
    return first, second


def _reply(winner):
    return Reply(content=json.dumps({"reason": f"picked {winner}", "winner": winner}))


def test_combining_both_orders():
    assert combine("A", "B") == ("a", True) and combine("B", "A") == ("b", True)
    assert combine("tie", "tie") == ("tie", True)
    assert combine("A", "A") == ("tie", False) and combine("B", "tie") == ("tie", False)


def test_a_judge_that_always_prefers_the_first_position_is_caught(tmp_path):
    answers = _answers(20)
    rows, stats, sent = _run(lambda body, seen: _reply("A"), tmp_path, answers)
    assert sent == 2 * 20 * 3 and stats["asked"] == 120
    assert all(r["verdict"] == "tie" and r["consistent"] is False for r in rows)
    table = pairwise_table(rows, _lengths(answers), Settings(pairs=[["a", "b"]], n_boot=100))
    pooled = table[table.metric == "all metrics"].iloc[0]
    assert pooled.inconsistency == 1.0 and pooled.tie == 1.0 and pooled.win == 0.0


def _lengths(answers):
    return pd.DataFrame({m: {r["id"]: len(r[f"model {m}"].split()) for r in answers} for m in ("a", "b")})


def test_a_judge_that_prefers_longer_answers_is_length_controlled(tmp_path):
    answers = _answers(80, seed=1)

    def longer(body, seen):
        first, second = _blocks(prompt_of(body))
        return _reply("A" if len(first) > len(second) else "B")

    rows, _, _ = _run(longer, tmp_path, answers)
    assert all(r["consistent"] for r in rows)  # length, unlike position, does not flip with the order
    pooled = pairwise_table(rows, _lengths(answers), Settings(pairs=[["a", "b"]], n_boot=100))
    pooled = pooled[pooled.metric == "all metrics"].iloc[0]
    assert pooled.preference > 0.65 and abs(pooled.lc_preference - 0.5) < 0.1, (pooled.preference, pooled.lc_preference)


def test_verdicts_are_cached_and_empty_answers_settled_without_a_request(tmp_path):
    answers = _answers(6)
    answers[0]["model a"] = ""
    answers[1]["model a"] = answers[1]["model b"] = " "

    def reference(body, seen):  # an oracle: the answer equal to the reference wins
        prompt = prompt_of(body)
        ref = re.search(r"Reference answer:\n(.*)\n", prompt)
        first, second = _blocks(prompt)
        if ref is None:
            return _reply("tie")
        return _reply("A" if first == ref.group(1) else "B" if second == ref.group(1) else "tie")

    (rows, stats, sent), (rows2, stats2, sent2) = _run(reference, tmp_path, answers, times=2)
    assert sent == 2 * 4 * 3 and stats["by_rule"] == 6
    by = {(r["id"], r["metric"]): r for r in rows}
    assert by[("q000", "FactualCorrectness")]["verdict"] == "b" and by[("q000", "FactualCorrectness")]["reason"] == EMPTY_REASON
    assert by[("q001", "FactualCorrectness")]["verdict"] == "tie"
    fact = [r for r in rows if r["metric"] == "FactualCorrectness" and r["id"] not in ("q000", "q001")]
    assert all(r["consistent"] and r["verdict"] in ("a", "b") for r in fact)
    assert sent2 == 0 and stats2["cached"] == 24 and [r["verdict"] for r in rows2] == [r["verdict"] for r in rows]


def test_the_prompt_names_the_metric_steps_and_shows_the_reference_only_where_the_metric_uses_it():
    fact, adherence = METRICS[0], METRICS[1]
    assert "Reference answer:\n{expected_output}" in template(fact)
    assert "Reference answer" not in template(adherence)
    assert all(step in template(adherence) for step in adherence.evaluation_steps)
