"""The judge against a scripted OpenAI-compatible server on 127.0.0.1, through the real openai SDK."""

import hashlib

import pytest
import yaml
from conftest import REPO
from tunejudge_dev.testing.openai_server import Reply, ScriptedOpenAI, prompt_of, verdict_for

from tunejudge.judge.llm import connector
from tunejudge.judge.metrics import load_metrics
from tunejudge.judge.runner import EMPTY_REASON, check_errors, judge_model
from tunejudge.llm import backends
from tunejudge.llm.client import BudgetExhausted, JudgeError, RequestBudget, redact
from tunejudge.llm.store import AnswerStore

KEY_ENV = "TUNEJUDGE_TEST_KEY"
FAKE_KEY = "sk-tunejudge-LEAKCHECK-4f1d2c9b7e"
METRICS = load_metrics(yaml.safe_load((REPO / "config/config.yaml").read_text())["judge"]["metrics"])


def items(n=8, prefix="q"):
    sources = ["sst2", "agnews", "qa_squad", "summarization_cnn", "qa_cnn", "sebastian"]
    return [{"id": f"{prefix}{i:03d}", "source": sources[i % 6], "instruction": f"Question {prefix}{i}?",
             "input": "some input" if i % 2 else "", "output": f"answer {i}", "response": f"response {i}"}
            for i in range(n)]


def judge_cfg(base_url, **over):
    cfg = {
        "backend": "openai",
        "openai": {"model": "scripted-judge", "base_url": base_url, "api_key_env": KEY_ENV, "logprobs": False,
                   "structured_output": "json_schema", "max_tokens_field": "max_tokens"},
        "local": {"gguf": None, "n_ctx": 2048, "startup_timeout_s": 120, "reason_max_chars": 300},
        "in_flight": 4, "timeout_s": 5, "max_tokens": 128, "temperature": 0, "seed": 0,
        "max_retries": 4, "malformed_retries": 2, "backoff_initial_s": 0.01, "backoff_max_s": 0.05,
        "max_requests": None, "max_error_fraction": 0.05,
    }
    for k, v in over.items():
        cfg[k] = v
    return cfg


def run(cfg, its, cache_path, budget=None):
    with AnswerStore(cache_path) as cache:
        return judge_model(its, "full", METRICS, backends.identity(cfg), cache,
                           connector(cfg, RequestBudget(budget)), cfg["in_flight"])


@pytest.fixture(autouse=True)
def key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, FAKE_KEY)


def _bucket(body) -> int:
    return hashlib.sha256(prompt_of(body).encode()).digest()[0] % 6


def flaky(body, seen):
    """By prompt: 429 then 500 then ok; slow past the timeout once; malformed twice; the connection
    dropped once; or fine."""
    b = _bucket(body)
    if b == 0 and seen == 0:
        return Reply("status", 429, retry_after=0.01)
    if b == 0 and seen == 1:
        return Reply("status", 500)
    if b == 1 and seen == 0:
        return Reply(delay_s=2.0)  # the client's timeout is 1 s
    if b == 2 and seen < 2:
        return Reply("malformed", content=["Score: 7/10, looks fine", '{"reason": "ok", "score": 42}'][seen])
    if b == 3 and seen == 0:
        return Reply("status", 503)
    if b == 4 and seen == 0:
        return Reply("drop")
    return Reply()


def test_correct_answers_one_row_per_item_and_metric(tmp_path):
    its = items(10)
    with ScriptedOpenAI() as srv:
        rows, stats = run(judge_cfg(srv.base_url), its, tmp_path / "answers")
        assert srv.chat_requests == 30
        assert all(h == f"Bearer {FAKE_KEY}" for h in srv.auth_headers)  # the key reaches the server
        body = srv.requests[0]
        assert body["max_tokens"] == 128 and body["temperature"] == 0 and body["seed"] == 0
        assert body["response_format"]["type"] == "json_schema"
        assert body["response_format"]["json_schema"]["schema"]["properties"]["score"]["enum"] == list(range(11))
    assert [(r["id"], r["metric"]) for r in rows] == [(i["id"], m.name) for i in its for m in METRICS]
    for r in rows:
        assert "error" not in r
        assert 0 <= r["score"] <= 1 and r["score_5"] == round(r["score"] * 5, 4)
        assert r["judge"] == {"backend": "openai", "model": "scripted-judge"} and len(r["cache_key"]) == 64
    meant = _meant(its)
    assert [(r["score"], r["reason"]) for r in rows] == [(meant[(r["id"], r["metric"])]["score"] / 10,
                                                          meant[(r["id"], r["metric"])]["reason"]) for r in rows]
    assert stats["asked"] == 30 and stats["errors"] == 0


def test_prompts_follow_the_study_metrics(tmp_path):
    its = items(1)
    with ScriptedOpenAI() as srv:
        run(judge_cfg(srv.base_url), its, tmp_path / "answers")
        prompts = [prompt_of(b) for b in srv.requests]
    fact = next(p for p in prompts if "Use 'expected output' as the reference answer." in p)
    assert "answer 0" in fact  # FactualCorrectness sees the expected output
    adherence = next(p for p in prompts if "Do NOT judge factual correctness here" in p)
    assert "answer 0" not in adherence and "response 0" in adherence and "Question q0?" in adherence


@pytest.mark.parametrize("http", ["aiohttp", "httpx"])
def test_429_500_timeouts_and_malformed_answers_are_retried_without_losing_rows(tmp_path, http):
    its = items(24)
    with ScriptedOpenAI(flaky) as srv:
        cfg = judge_cfg(srv.base_url, timeout_s=1.0, in_flight=8, http_client=http)
        rows, stats = run(cfg, its, tmp_path / "answers")
        first = srv.chat_requests
        assert srv.replies["http_429"] > 0 and srv.replies["http_500"] > 0 and srv.replies["http_503"] > 0
        assert srv.replies["malformed"] > 0 and srv.replies["drop"] > 0
        assert stats["http_429"] > 0 and stats["http_5xx"] > 0 and stats["timeout"] > 0 and stats["malformed"] > 0
        # a dropped connection is told apart from a timeout (the aiohttp transport calls both a timeout)
        assert stats["connection_error"] >= srv.replies["drop"]
        # every HTTP attempt is counted (one dropped keep-alive connection may never reach the server)
        assert stats["requests"] >= first > 72
        keys = [(r["id"], r["metric"]) for r in rows]
        assert len(keys) == len(set(keys)) == 72 and not any(r.get("error") for r in rows)
        meant = _meant(its)
        for r in rows:  # each verdict is the one the server meant for its item, not a retry artefact
            assert (r["score"], r["reason"]) == (meant[(r["id"], r["metric"])]["score"] / 10,
                                                 meant[(r["id"], r["metric"])]["reason"])

        # rerun: everything comes from the cache, zero requests
        rows2, stats2 = run(cfg, its, tmp_path / "answers")
        assert srv.chat_requests == first and stats2["asked"] == 0
        assert rows2 == rows


def _meant(its, metrics=METRICS, **flags) -> dict:
    """(item id, metric) -> the verdict the scripted server gives for that item's own GEval prompt."""
    from tunejudge.judge.metrics import render_prompts

    return {(it["id"], m.name): verdict_for(p) for m in metrics
            for it, p in zip(its, render_prompts(m, its, **flags))}


def test_a_verdict_is_the_servers_score_for_that_item_and_metric(tmp_path):
    its = items(3)
    with ScriptedOpenAI() as srv:
        rows, _ = run(judge_cfg(srv.base_url), its, tmp_path / "answers")
        sent = {prompt_of(b) for b in srv.requests}
    meant = _meant(its)
    assert len(sent) == len(meant) == len(rows) == 9  # every prompt asked once, each a different verdict's
    for r in rows:  # a verdict swapped between items or metrics fails here
        v = meant[(r["id"], r["metric"])]
        assert (r["score"], r["reason"]) == (v["score"] / 10, v["reason"]), (r["id"], r["metric"])


def test_logprobs_give_the_probability_weighted_score(tmp_path):
    its = items(3)
    with ScriptedOpenAI() as srv:
        cfg = judge_cfg(srv.base_url)
        cfg["openai"] = {**cfg["openai"], "logprobs": True}
        rows, _ = run(cfg, its, tmp_path / "answers")
        assert all(b["logprobs"] is True and b["top_logprobs"] == 20 for b in srv.requests)
    meant = _meant(its)
    for r in rows:
        # the scripted token distribution: 70% the score, 30% its neighbour
        s = meant[(r["id"], r["metric"])]["score"]
        assert r["score"] == pytest.approx(round((0.7 * s + 0.3 * (s + 1 if s < 10 else s - 1)) / 10, 6))
        assert r["weighting"] == "logprobs" and r["reason"] == meant[(r["id"], r["metric"])]["reason"]


def test_an_answer_that_stays_malformed_is_an_error_row_never_a_score(tmp_path):
    bad = items(1, "bad")[0]
    its = items(4) + [bad]

    def script(body, seen):
        return Reply("malformed") if "Question bad0?" in prompt_of(body) else Reply()

    with ScriptedOpenAI(script) as srv:
        cfg = judge_cfg(srv.base_url)
        rows, stats = run(cfg, its, tmp_path / "answers")
        errors = [r for r in rows if r.get("error")]
        assert len(errors) == 3 and all(r["id"] == "bad000" and r["score"] is None for r in errors)
        assert all("malformed" in r["error"] for r in errors)
        assert stats["malformed"] == 9  # 1 + 2 retries per metric
        with pytest.raises(JudgeError, match="3 of 15 judgements failed"):
            check_errors(rows, 0.05, "full")
        check_errors(rows, 0.5, "full")
        # errors are not cached: a rerun asks again for exactly those
        before = srv.chat_requests
        run(cfg, its, tmp_path / "answers")
        assert srv.chat_requests - before == 9


def test_empty_answers_score_zero_without_a_request(tmp_path):
    its = items(3)
    its[0]["response"] = "  \n"
    its[2]["response"] = ""  # deepeval refuses an empty output: never rendered nor sent
    with ScriptedOpenAI() as srv:
        rows, _ = run(judge_cfg(srv.base_url), its, tmp_path / "answers")
        assert srv.chat_requests == 3
    assert [r["score"] for r in rows[:3] + rows[6:]] == [0.0] * 6 and rows[0]["reason"] == EMPTY_REASON


def test_request_budget_stops_the_run_and_keeps_what_was_judged(tmp_path):
    its = items(10)
    with ScriptedOpenAI() as srv:
        cfg = judge_cfg(srv.base_url, in_flight=1)
        with pytest.raises(BudgetExhausted, match="judge.max_requests"):
            run(cfg, its, tmp_path / "answers", budget=12)
        assert srv.chat_requests == 12
        with AnswerStore(tmp_path / "answers") as cache:
            assert len(cache) == 12
        rows, stats = run(cfg, its, tmp_path / "answers", budget=100)
        assert stats["cached"] == 12 and stats["asked"] == 18 and srv.chat_requests == 30
        assert len(rows) == 30


def test_refused_key_stops_with_a_message_that_hides_the_key(tmp_path):
    def script(body, seen):
        return Reply("status", 401)

    with ScriptedOpenAI(script) as srv:
        with pytest.raises(JudgeError, match="HTTP 401") as e:
            run(judge_cfg(srv.base_url), items(2), tmp_path / "answers")
        assert srv.chat_requests >= 1
    assert FAKE_KEY not in str(e.value) and "api_key_env" in str(e.value)
    echoed = f"Incorrect API key provided: {FAKE_KEY}. You can find your API key at ..."
    assert FAKE_KEY not in redact(echoed, None) and FAKE_KEY not in redact(f"x {FAKE_KEY} y", FAKE_KEY)


@pytest.mark.parametrize("http", ["aiohttp", "httpx"])
def test_unreachable_endpoint_gives_up_with_a_clear_error(tmp_path, http):
    from tunejudge.llm.server import free_port

    port = free_port()
    cfg = judge_cfg(f"http://127.0.0.1:{port}/v1", max_retries=1, http_client=http)
    # the socket's own words, not the SDK's "Connection error." or the aiohttp transport's "timed out"
    with pytest.raises(JudgeError, match=rf"connection_error on 2 attempts in a row \(.*Connect call failed.*{port}"):
        run(cfg, items(1), tmp_path / "answers")


def test_http_client_without_its_package_is_a_config_error(monkeypatch):
    import openai

    from tunejudge.errors import ConfigError
    from tunejudge.llm.client import http_client

    def missing(**_):
        raise RuntimeError("To use the aiohttp client you must have installed the package with the `aiohttp` extra")

    monkeypatch.setattr(openai, "DefaultAioHttpClient", missing)
    with pytest.raises(ConfigError, match=r"judge.http_client = aiohttp.*openai\[aiohttp\].*http_client: httpx"):
        http_client("aiohttp", 5)
    assert http_client("httpx", 5) is None  # the SDK's own httpx client
    with pytest.raises(ConfigError, match="judge.http_client = 'curl'"):
        http_client("curl", 5)


def test_missing_key_is_a_config_error(tmp_path, monkeypatch):
    from tunejudge.errors import ConfigError

    monkeypatch.delenv(KEY_ENV)
    with ScriptedOpenAI() as srv, pytest.raises(ConfigError, match=KEY_ENV):
        run(judge_cfg(srv.base_url), items(1), tmp_path / "answers")


def test_cache_key_changes_with_what_decides_the_verdict(tmp_path):
    from tunejudge.judge.runner import judge_key

    cfg = judge_cfg("http://x/v1")
    judge = backends.identity(cfg)
    it = items(1)[0]
    k = judge_key(judge, METRICS[0], it)
    assert k == judge_key(backends.identity(judge_cfg("http://x/v1")), METRICS[0], dict(it))
    assert k != judge_key(judge, METRICS[1], it)
    assert k != judge_key(judge, METRICS[0], {**it, "response": "other"})
    assert k != judge_key(judge, METRICS[0], {**it, "output": "other"})
    other = judge_cfg("http://x/v1")
    other["openai"] = {**other["openai"], "model": "gpt-4.1"}
    assert k != judge_key(backends.identity(other), METRICS[0], it)
    assert k == judge_key(judge, METRICS[0], {**it, "id": "renamed"})  # content, not ids


def test_metric_config_errors():
    from tunejudge.errors import ConfigError

    with pytest.raises(ConfigError, match="actual_output"):
        load_metrics([{"name": "X", "params": ["input"], "evaluation_steps": ["a"]}])
    with pytest.raises(ConfigError, match="duplicate"):
        load_metrics([{"name": "X", "params": ["actual_output"], "evaluation_steps": ["a"]}] * 2)


def test_answer_parsing():
    from tunejudge.judge.llm import check_score, parse_json_object
    from tunejudge.llm.client import MalformedAnswer

    assert parse_json_object('Sure: {"reason": "two\nlines", "score": 7} done')["reason"] == "two\nlines"
    for bad in ("", "no json", '{"reason": "x", "score": 7', "[1, 2]"):
        with pytest.raises(MalformedAnswer):
            parse_json_object(bad)
    for data in ({"reason": "x", "score": 11}, {"reason": "", "score": 3}, {"reason": "x", "score": True},
                 {"reason": "x", "score": "7"}):
        with pytest.raises(MalformedAnswer):
            check_score(data)


def test_only_the_verdicts_a_change_affects_are_asked_again(tmp_path, monkeypatch):
    """Nothing changed: 0 requests. A deepeval version, a reworded prompt template, another
    temperature: exactly the verdicts each one changes are asked again."""
    from deepeval.metrics.g_eval.g_eval import GEvalTemplate

    from tunejudge.judge import runner

    its = items(6)
    store = tmp_path / "answers"
    with ScriptedOpenAI() as srv:
        cfg = judge_cfg(srv.base_url)
        rows, _ = run(cfg, its, store)
        assert srv.chat_requests == 18 and all(r["raw"].startswith("{") for r in rows)
        run(cfg, its, store)
        assert srv.chat_requests == 18  # nothing changed

        # a deepeval upgrade (same prompt text): every verdict
        monkeypatch.setattr(runner, "deepeval_version", lambda: "99.0.0")
        run(cfg, its, store)
        assert srv.chat_requests == 36
        run(cfg, its, store)
        assert srv.chat_requests == 36

        # deepeval rewords the prompt of one metric only: that metric's verdicts
        original = GEvalTemplate.generate_evaluation_results

        def reworded(*args, **kwargs):
            text = original(*args, **kwargs)
            return text.replace("Test Case:", "The test case:") if "Do NOT judge factual" in text else text

        monkeypatch.setattr(GEvalTemplate, "generate_evaluation_results", staticmethod(reworded))
        _, stats = run(cfg, its, store)
        assert srv.chat_requests == 42 and stats["asked"] == 6
        assert all("The test case:" in prompt_of(b) for b in srv.requests[36:])

        # another temperature: every verdict
        _, stats = run(judge_cfg(srv.base_url, temperature=0.2), its, store)
        assert stats["asked"] == 18 and srv.chat_requests == 60


def test_a_retry_verdict_is_kept_under_its_own_temperature_not_the_greedy_key(tmp_path):
    its = items(3)

    def script(body, seen):
        return Reply("malformed") if seen == 0 and "Question q1?" in prompt_of(body) else Reply()

    with ScriptedOpenAI(script) as srv:
        cfg = judge_cfg(srv.base_url)
        rows, _ = run(cfg, its, tmp_path / "answers")
        retried = [r for r in rows if r.get("attempt_temperature") is not None]
        assert len(retried) == 3 and {r["id"] for r in retried} == {"q001"}
        assert all(r["attempt_temperature"] == 0.3 for r in retried)
        from tunejudge.judge.runner import judge_key

        judge = backends.identity(cfg)
        with AnswerStore(tmp_path / "answers") as cache:
            for r in retried:
                metric = next(m for m in METRICS if m.name == r["metric"])
                greedy = judge_key(judge, metric, {**its[1]})
                assert r["cache_key"] != greedy
                assert cache.get(greedy) == {"retry_temperature": 0.3}  # no score under the greedy key
                assert cache.get(r["cache_key"])["score"] == r["score"]
        before = srv.chat_requests
        rows2, stats = run(cfg, its, tmp_path / "answers")
        assert srv.chat_requests == before and stats["asked"] == 0 and rows2 == rows


def test_local_weights_are_keyed_by_content_not_name_or_size(tmp_path):
    a, b = tmp_path / "a" / "judge.gguf", tmp_path / "b" / "judge.gguf"
    for p, byte in ((a, b"\x01"), (b, b"\x02")):
        p.parent.mkdir()
        p.write_bytes(b"GGUF" + byte * 1000)
    cfg = judge_cfg("http://x/v1", backend="local")
    ka = backends.identity({**cfg, "local": {**cfg["local"], "gguf": str(a)}}).key_parts()
    kb = backends.identity({**cfg, "local": {**cfg["local"], "gguf": str(b)}}).key_parts()
    assert ka["model"] == kb["model"] == "judge.gguf" and ka != kb
    assert ka["settings"]["gguf_sha256"] != kb["settings"]["gguf_sha256"]


def test_under_429s_past_4_in_flight_the_client_settles_near_4_and_loses_nothing(tmp_path):
    """A server that refuses whatever is beyond 4 requests in flight: the judge, allowed 16 at once,
    halves and regrows its limit; every verdict arrives once, none is paid twice."""
    its = items(60)
    with ScriptedOpenAI(latency_s=0.05, max_in_flight=4, retry_after_s=0.02) as srv:
        cfg = judge_cfg(srv.base_url, in_flight=16, max_retries=50, backoff_initial_s=0.01, backoff_max_s=0.1)
        rows, stats = run(cfg, its, tmp_path / "answers")
        ok, refused, seen = srv.replies["ok"], srv.replies["http_429"], list(srv.in_flight_seen)
    keys = [(r["id"], r["metric"]) for r in rows]
    assert len(keys) == len(set(keys)) == 180 and not any(r.get("error") for r in rows)
    assert ok == 180  # each verdict answered (and paid) once
    assert refused > 0 and stats["http_429"] == refused and 1 <= stats["in_flight_limit"] <= 8
    late = seen[len(seen) // 2:]
    assert sum(late) / len(late) <= 6  # the offered concurrency came down to about 4


def test_max_cost_stops_before_the_limit_and_a_rerun_asks_only_the_rest(tmp_path):
    its = items(20)
    prices = {"input_per_mtok": 2.0, "output_per_mtok": 8.0}
    with ScriptedOpenAI(api_like=True, api_key=FAKE_KEY) as srv:
        cfg = judge_cfg(srv.base_url, in_flight=2)
        cfg["openai"] = {**cfg["openai"], "model": "gpt-4.1"}
        # about what 30 of the 60 verdicts cost (the server counts tokens as OpenAI reports them)
        one = run(cfg, its[:1], tmp_path / "probe")[0]
        per_verdict = sum(((r["usage"]["prompt_tokens"] * 2 + r["usage"]["completion_tokens"] * 8) / 1e6)
                          for r in one) / len(one)
        limit = 30 * per_verdict
        with AnswerStore(tmp_path / "answers") as cache, pytest.raises(BudgetExhausted, match="judge.max_cost"):
            judge_model(its, "full", METRICS, backends.identity(cfg), cache,
                        connector(cfg, RequestBudget(None, limit, prices)), cfg["in_flight"])
        usage_before = dict(srv.usage)
        spent = (usage_before["prompt_tokens"] * 2 + usage_before["completion_tokens"] * 8) / 1e6
        probe_cost = per_verdict * len(one)
        assert spent - probe_cost <= limit * 1.01  # never past the limit (float slack)
        with AnswerStore(tmp_path / "answers") as cache:
            kept = len(list(cache.keys()))
        assert 5 <= kept < 60
        before = srv.replies["ok"]
        rows, stats = run(cfg, its, tmp_path / "answers")
        assert srv.replies["ok"] - before == 60 - kept and stats["cached"] == kept
        assert all(r["usage"]["prompt_tokens"] > 0 for r in rows)


def test_a_tokens_per_minute_limit_is_respected_on_a_simulated_clock():
    import asyncio

    from tunejudge.llm.client import TokenRate

    now = [0.0]
    log = []

    async def sleep(s):
        now[0] += s

    async def go():
        rate = TokenRate(1000, clock=lambda: now[0], sleep=sleep)
        for _ in range(12):
            await rate.take(400)
            log.append((now[0], 400))
        rate.refund(300)  # the last one used 100 of its 400

    asyncio.run(go())
    # any 60 s window holds at most the bucket plus what refilled in it: 1000 + 1000
    for t0, _ in log:
        assert sum(n for t, n in log if t0 <= t < t0 + 60) <= 2000
    assert log[-1][0] >= (12 * 400 - 1000) / 1000 * 60 - 1e-6  # it waited as long as the rate demands
