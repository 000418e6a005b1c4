"""The judge through OpenAI's Batch API (judge.openai.batch) at the scripted server's batch endpoints."""

import json

import pytest
from test_judge import KEY_ENV, METRICS, items, judge_cfg
from tunejudge_dev.testing.openai_server import Reply, ScriptedOpenAI

from tunejudge.judge.llm import connector
from tunejudge.judge.runner import judge_model
from tunejudge.llm import backends
from tunejudge.llm.client import BudgetExhausted, JudgeError
from tunejudge.llm.store import AnswerStore


@pytest.fixture(autouse=True)
def key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-batch")


def batch_cfg(base_url, cache, **openai):
    cfg = judge_cfg(base_url, cache=str(cache))
    cfg["openai"] = {**cfg["openai"], "batch": True, "batch_poll_s": 0.01, "batch_wait_s": 30, **openai}
    return cfg


def run(cfg, its):
    with AnswerStore(cfg["cache"]) as cache:
        return judge_model(its, "full", METRICS, backends.identity(cfg), cache,
                           connector(cfg, backends.budget(cfg)), cfg["in_flight"])


def scores(rows):
    return [(r["id"], r["metric"], r["score"], r["reason"]) for r in rows]


@pytest.mark.parametrize("logprobs", [False, True])
def test_a_batch_gives_the_verdicts_live_requests_give(tmp_path, logprobs):
    its = items(6)
    with ScriptedOpenAI() as srv:
        live, _ = run({**judge_cfg(srv.base_url, cache=str(tmp_path / "live")),
                       "openai": {**judge_cfg(srv.base_url)["openai"], "logprobs": logprobs}}, its)
        live_requests = srv.chat_requests
        rows, stats = run(batch_cfg(srv.base_url, tmp_path / "batch" / "answers", logprobs=logprobs), its)
        assert srv.chat_requests == 2 * live_requests  # the batch's lines, answered by the server, none live
        assert len(srv.batches) == 1 and stats["batch_requests"] == len(its) * len(METRICS) == live_requests
        again, stats = run(batch_cfg(srv.base_url, tmp_path / "batch" / "answers", logprobs=logprobs), its)
        assert len(srv.batches) == 1 and stats["asked"] == 0 and scores(again) == scores(live)  # all in the cache
    assert scores(rows) == scores(live)
    assert all(r["usage"]["batch"] and r["usage"]["price_factor"] == 0.5 for r in rows)
    lines = [json.loads(x) for x in srv.files["file-scripted1"]["content"].decode().splitlines()]
    assert {x["url"] for x in lines} == {"/v1/chat/completions"} and all(x["body"]["model"] for x in lines)
    assert not list((tmp_path / "batch" / "batches").glob("*.json"))  # the batch's state is gone once kept


def test_an_interrupted_batch_run_resumes_the_same_batch_and_sends_no_second_one(tmp_path):
    its = items(4)
    cache = tmp_path / "cache" / "answers"
    with ScriptedOpenAI(batch_polls=50) as srv:  # the batch takes its time
        with pytest.raises(JudgeError, match=r"batch batch_scripted1 is still in_progress .*rerun the rule to resume"):
            run(batch_cfg(srv.base_url, cache, batch_wait_s=0.05), its)
        state = list((tmp_path / "cache" / "batches").glob("*.json"))
        assert len(state) == 1 and json.loads(state[0].read_text())["batch_id"] == "batch_scripted1"
        srv.batch_polls = 0  # it finishes
        rows, stats = run(batch_cfg(srv.base_url, cache), its)
        assert stats["batch_id"] == "batch_scripted1" and len(srv.batches) == 1
        assert [f for f in srv.files.values() if f["object"]["purpose"] == "batch"].__len__() == 1
    assert all(r["score"] is not None for r in rows) and len(rows) == len(its) * len(METRICS)
    assert not state[0].exists()


def test_a_malformed_batch_answer_is_asked_again_live(tmp_path):
    its = items(3)

    def script(body, seen):  # the first answer to each prompt (the batch's) is broken
        return Reply("malformed", content="no verdict here") if seen == 0 else Reply()

    with ScriptedOpenAI(script) as srv:
        rows, stats = run(batch_cfg(srv.base_url, tmp_path / "answers"), its)
    assert all(r["score"] is not None for r in rows)
    assert stats["batch_malformed"] == len(rows) and srv.replies["ok"] == len(rows)


def test_max_cost_stops_a_batch_before_it_is_submitted(tmp_path):
    its = items(6)
    with ScriptedOpenAI() as srv:
        cfg = {**batch_cfg(srv.base_url, tmp_path / "answers"), "max_cost": 0.0001,
               "prices": {"input_per_mtok": 2.0, "output_per_mtok": 8.0}}
        with pytest.raises(BudgetExhausted, match="judge.max_cost"):
            run(cfg, its)
        assert srv.files == {} and srv.batches == {}


def test_a_failed_batch_is_a_clear_error_and_the_next_run_submits_again(tmp_path):
    its = items(2)
    with ScriptedOpenAI() as srv:
        cfg = batch_cfg(srv.base_url, tmp_path / "answers")
        srv.fail_batches = True
        with pytest.raises(JudgeError, match="batch batch_scripted1 failed"):
            run(cfg, its)
        srv.fail_batches = False
        rows, stats = run(cfg, its)
        assert stats["batch_id"] == "batch_scripted2" and all(r["score"] is not None for r in rows)
