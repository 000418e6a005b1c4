"""Judge controls: the arms, the AUC, and a judge that passes or fails them over real HTTP."""

import json
import math
import re

import numpy as np
import pandas as pd
import pytest
from test_judge import KEY_ENV, METRICS, judge_cfg
from tunejudge_dev.testing.openai_server import Reply, ScriptedOpenAI, prompt_of

from tunejudge.analysis.report import ReportContext, build_report, headline_mark
from tunejudge.analysis.stats import Settings, judge_frame, judge_validity
from tunejudge.judge.controls import NEGATIVE, POSITIVE, auc, control_items
from tunejudge.judge.llm import connector
from tunejudge.judge.runner import judge_model
from tunejudge.llm import backends
from tunejudge.llm.client import RequestBudget
from tunejudge.llm.store import AnswerStore

SOURCES = ("sst2", "qa_squad", "summarization_cnn")


@pytest.fixture(autouse=True)
def key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, "none")


def _items(n=30):
    words = ["harbor park", "rail yard", "storm water", "covered market", "housing list", "city council",
             "wetland plan", "sports fields", "green space", "mayor vote"]
    return [{"id": f"q{i:03d}", "source": SOURCES[i % 3], "instruction": f"Question q{i:03d}?", "input": "",
             "output": f"The {words[i % 10]} answer {i} about {words[(i * 3) % 10]}"} for i in range(n)]


def test_arms_pair_each_item_with_another_items_reference_of_its_source():
    items = _items(30) + [{"id": "lonely", "source": "agnews", "instruction": "Q?", "input": "", "output": "x"}]
    arms = control_items(items, None, seed=0)
    assert [it["id"] for it in arms[POSITIVE]] == [it["id"] for it in arms[NEGATIVE]]
    assert "lonely" not in {it["id"] for it in arms[POSITIVE]}  # no other item of its source to borrow from
    by_id = {it["id"]: it for it in items}
    for pos, neg in zip(arms[POSITIVE], arms[NEGATIVE]):
        assert pos["response"] == by_id[pos["id"]]["output"]
        other = by_id[neg["borrowed_from"]]
        assert other["source"] == pos["source"] and other["id"] != pos["id"] and neg["response"] == other["output"]
    few = control_items(items, 2, seed=0)
    assert len(few[POSITIVE]) == 6 and control_items(items, 2, seed=0) == few
    assert {it["id"] for it in control_items(items, 2, seed=1)[POSITIVE]} != {it["id"] for it in few[POSITIVE]}


def test_auc_counts_ties_as_half():
    assert auc([3, 3], [1, 1]) == 1.0 and auc([1], [3]) == 0.0 and auc([2, 2], [2, 2]) == 0.5
    assert math.isnan(auc([], [1]))


def _similarity_judge(items):
    """Scores by word overlap of the answer with the item's reference (an oracle: it knows them)."""
    ref = {it["id"]: set(it["output"].lower().split()) for it in items}

    def script(body, seen):
        prompt = prompt_of(body)
        item = re.search(r"Question (q\d+)\?", prompt).group(1)
        answer = prompt.split("Actual Output:", 1)[1].split("\n\n", 1)[0].strip() if "Actual Output:" in prompt else ""
        words = set(answer.lower().split())
        score = round(10 * len(words & ref[item]) / max(1, len(words | ref[item])))
        return Reply(content=json.dumps({"reason": f"overlap {score}", "score": score}))

    return script


def _controls(script, tmp_path, items):
    arms = control_items(items, None, seed=0)
    rows = []
    with ScriptedOpenAI(script) as srv:
        cfg = judge_cfg(srv.base_url)
        for arm, its in arms.items():
            with AnswerStore(tmp_path / "answers") as cache:
                got, _ = judge_model(its, arm, METRICS, backends.identity(cfg), cache,
                                     connector(cfg, RequestBudget(None)), cfg["in_flight"])
            rows += got
    return judge_validity(judge_frame(rows), [m.name for m in METRICS], Settings(pairs=[], n_boot=300), 0.75)


def test_a_judge_that_scores_by_similarity_to_the_reference_passes(tmp_path):
    items = _items(30)
    table, verdict = _controls(_similarity_judge(items), tmp_path, items)
    assert verdict["passes"] and verdict["failing_metrics"] == []
    pooled = table[table.scope == "all"]
    assert len(pooled) == 3 and (pooled.auc >= 0.95).all() and (pooled["items"] == 30).all()
    assert set(table.scope) == {"all", *SOURCES}
    assert (pooled.auc_lo <= pooled.auc).all() and (pooled.auc <= pooled.auc_hi).all()


def test_a_judge_that_scores_at_random_fails_and_the_report_says_so(tmp_path):
    items = _items(30)
    table, verdict = _controls(lambda body, seen: Reply(), tmp_path, items)  # score from the prompt's hash
    assert verdict["passes"] is False and verdict["failing_metrics"]
    pooled = table[table.scope == "all"]
    assert (np.abs(pooled.auc - 0.5) < 0.25).all()
    mark = headline_mark(verdict)
    assert "JUDGE FAILED ITS CONTROLS" in mark
    text = build_report(ReportContext(
        judge_desc={"backend": "openai", "model": "scripted"}, labels={}, config_files=["config/config.yaml"],
        metrics=[m.name for m in METRICS], n_items=30, tables={
            "means": pd.DataFrame(columns=["model", "n"]), "pairs": pd.DataFrame(columns=["pair", "a", "b"]),
            "means_by_source": pd.DataFrame(columns=["source", "model", "n"]), "pairs_by_source": pd.DataFrame(),
            "judge_agreement": pd.DataFrame(columns=["source", "metric", "reference_metric", "spearman", "n"]),
            "length_bias": pd.DataFrame(columns=["model", "metric", "spearman_with_length", "n"]),
            "length_matched": pd.DataFrame(columns=["pair", "matched_items", "win", "tie", "loss"]),
            "judge_validity": table},
        cases=[], plots={"scores": "s.png", "win_tie_loss": "w.png", "sources": "x.png", "loss": "l.png"},
        tie_tolerance=0.0, level=0.9, n_boot=100, verdict=verdict))
    assert text.index("## Judge validity") < text.index("## What was run")
    assert "**The judge FAILS its controls**" in text
    assert text.count("JUDGE FAILED ITS CONTROLS") >= 3
    assert "90% bootstrap CI" in text and "95%" not in text
