"""Judge scores that cannot leave their range: the weighting over valid scores only, live and in a
batch against an endpoint whose logprobs put most of the mass outside 0-10, and the writer and the
analysis refusing an out-of-range row."""

import json
import math

import pytest
from test_judge import KEY_ENV, METRICS, items, judge_cfg
from tunejudge_dev.testing.openai_server import (
    ScriptedOpenAI,
    out_of_range_judge,
    prompt_of,
    verdict_for,
)

from tunejudge.analysis.stats import judge_frame
from tunejudge.errors import DataError
from tunejudge.judge.llm import connector
from tunejudge.judge.runner import judge_model
from tunejudge.judge.scores import (
    LOGPROBS,
    PLAIN,
    read_judge_rows,
    weighted_score,
    write_judge_rows,
)
from tunejudge.llm import backends
from tunejudge.llm.store import AnswerStore


@pytest.fixture(autouse=True)
def key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-scores")


def alt(token, p):
    return {"token": token, "logprob": math.log(p)}


def at_score(token, *alts):
    return [{"token": '{"reason": "r", "score": ', "logprob": 0.0, "top_logprobs": []},
            {"token": token, "logprob": alts[0]["logprob"], "top_logprobs": list(alts)},
            {"token": "}", "logprob": 0.0, "top_logprobs": []}]


def test_only_valid_scores_are_weighed_and_the_rest_is_reported_dropped():
    w = weighted_score(7, at_score("7", alt("100", 0.5), alt("7", 0.3), alt("8", 0.1), alt("80", 0.1)), 0, 10)
    assert w.weighting == LOGPROBS and w.score == pytest.approx((7 * 0.3 + 8 * 0.1) / 0.4)
    assert w.dropped_mass == pytest.approx(0.6)
    # a leading space is the same score; a non-canonical or non-ASCII digit is not a score, nor is a word
    w = weighted_score(3, at_score(" 3", alt(" 3", 0.6), alt("03", 0.2), alt("٣", 0.1), alt("three", 0.1)), 0, 10)
    assert w.weighting == LOGPROBS and w.score == 3.0 and w.dropped_mass == pytest.approx(0.3)  # "03", "٣"
    # below 1%: ignored, as deepeval does
    assert weighted_score(5, at_score("5", alt("5", 0.995), alt("9", 0.005)), 0, 10).score == 5.0


def test_the_plain_score_is_kept_when_the_logprobs_cannot_weigh_it():
    none = weighted_score(6, None, 0, 10)
    assert (none.score, none.weighting, none.dropped_mass) == (6.0, PLAIN, 0.0) and "no logprobs" in none.note
    lost = weighted_score(6, at_score("seven", alt("seven", 1.0)), 0, 10)
    assert lost.weighting == PLAIN and "no token '6'" in lost.note
    only_out = weighted_score(6, at_score("6", alt("60", 0.9), alt("6", 0.005)), 0, 10)
    assert (only_out.score, only_out.weighting, only_out.dropped_mass) == (6.0, PLAIN, 0.9)


def run(cfg, its, cache):
    with AnswerStore(cache) as store:
        return judge_model(its, "full", METRICS, backends.identity(cfg), store,
                           connector(cfg, backends.budget(cfg)), cfg["in_flight"])


def _deepeval_weighting(body, content):
    """What deepeval 4.3's own weighting gives this answer (every decimal token among the top logprobs)."""
    from deepeval.metrics.g_eval.utils import calculate_weighted_summed_score
    from openai.types.chat import ChatCompletion
    from tunejudge_dev.testing.openai_server import completion

    s = json.loads(content)["score"]
    reply = out_of_range_judge(body, 0)
    resp = ChatCompletion.model_validate(completion(body, content, s, reply.alternatives))
    return calculate_weighted_summed_score(s, resp)


@pytest.mark.parametrize("batch", [False, True])
def test_an_endpoint_with_out_of_range_logprobs_stores_only_in_range_scores(tmp_path, batch):
    its = items(8)
    with ScriptedOpenAI(out_of_range_judge) as srv:
        cfg = judge_cfg(srv.base_url, cache=str(tmp_path / "answers"))
        cfg["openai"] = {**cfg["openai"], "logprobs": True, "batch": batch, "batch_poll_s": 0.01, "batch_wait_s": 30}
        rows, stats = run(cfg, its, tmp_path / "answers")
        bodies = [b for b in srv.requests if b.get("logprobs")]
        # the endpoint is hostile for real: deepeval's own weighting leaves the range on most verdicts
        hostile = [b for b in bodies if out_of_range_judge(b, 0).alternatives]
        old = [_deepeval_weighting(b, json.dumps(verdict_for(prompt_of(b)))) for b in hostile]
        assert len(hostile) >= len(bodies) // 2 and sum(v > 10 for v in old) == len(old)
    assert len(rows) == 24 and not any(r.get("error") for r in rows)
    for r in rows:
        assert 0 <= r["score"] <= 1 and 0 <= r["score_5"] <= 5 and r["weighting"] == LOGPROBS
    dropped = [r for r in rows if r["dropped_mass"] > 0]
    assert len(dropped) == len(hostile) and all(r["dropped_mass"] == pytest.approx(0.6) for r in dropped)
    write_judge_rows(tmp_path / "full.jsonl", rows)
    assert read_judge_rows(tmp_path / "full.jsonl") == rows


def test_a_verdict_weighted_by_the_old_rule_is_asked_again_not_reused(tmp_path):
    its = items(2)
    with ScriptedOpenAI() as srv:
        cfg = judge_cfg(srv.base_url)
        cfg["openai"] = {**cfg["openai"], "logprobs": True}
        rows, _ = run(cfg, its, tmp_path / "answers")
        store = AnswerStore(tmp_path / "answers")
        for r in rows:  # what an earlier version stored: a weighted score past the range, keyed as now
            store.put(r["cache_key"], "geval", {"score": 5.3, "reason": "old"})
        again, stats = run(cfg, its, tmp_path / "answers")
        assert stats["asked"] == 6 and [r["score"] for r in again] == [r["score"] for r in rows]


def row(score, **kw):
    return {"id": "q1", "source": "sst2", "model": "full", "metric": "Correctness", "score": score,
            "score_5": None if score is None else round(score * 5, 4), "reason": "r", **kw}


def test_the_writer_refuses_a_score_outside_its_range_and_writes_nothing(tmp_path):
    out = tmp_path / "full.jsonl"
    with pytest.raises(DataError, match=r"full.jsonl: record 1: item 'q1', model 'full', metric 'Correctness': "
                                        r"field 'score' = 5.3 is outside its range 0-1"):
        write_judge_rows(out, [row(0.5), row(5.3)])
    assert not out.exists()
    write_judge_rows(out, [row(0.5), row(None, error="malformed")])  # an error row has no score to check


@pytest.mark.parametrize("field,value", [("score", 5.3), ("score_5", 26.5), ("score", float("nan")), ("score", -0.1)])
def test_the_analysis_refuses_to_aggregate_an_out_of_range_row(tmp_path, field, value):
    bad = row(0.5)
    bad[field] = value
    path = tmp_path / "judge.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in [row(0.2), bad]))
    with pytest.raises(DataError, match=rf"judge.jsonl: record 1: item 'q1', model 'full', .*field '{field}'"):
        read_judge_rows(path)
    with pytest.raises(DataError, match=r"judge rows: record 1"):
        judge_frame([row(0.2), bad])
