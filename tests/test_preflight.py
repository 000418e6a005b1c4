"""Preflight: the checks (key, endpoint, Hub, URLs) and the planned requests, against what is then sent."""

import json

import pytest
from conftest import REPO
from test_judge import FAKE_KEY, KEY_ENV, judge_cfg
from test_qagen import articles, generate, spec
from tunejudge_dev.testing.articles import linked_articles
from tunejudge_dev.testing.openai_server import (
    Reply,
    ScriptedOpenAI,
    linking_extractor,
    response_schema,
    word_embedding,
)

from tunejudge.data.qagen.generate import SYNTHESIZERS
from tunejudge.data.qagen.run import run_generation
from tunejudge.judge.llm import connector
from tunejudge.judge.metrics import load_metrics
from tunejudge.judge.runner import judge_model
from tunejudge.llm.client import JudgeError, RequestBudget
from tunejudge.llm.store import AnswerStore
from tunejudge.models.gpt2.tokenizer import get_tokenizer
from tunejudge.preflight import checks as preflight_checks
from tunejudge.preflight import plan as preflight
from tunejudge.run.config import compose


@pytest.fixture(autouse=True)
def env(monkeypatch, tmp_path):
    monkeypatch.setenv(KEY_ENV, FAKE_KEY)
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "tiktoken"))


def cl100k():
    import tiktoken

    from tunejudge.data.qagen.offline import seed_tiktoken_cache

    seed_tiktoken_cache("unused")  # TIKTOKEN_CACHE_DIR is set
    enc = tiktoken.get_encoding("cl100k_base")
    return lambda text: len(enc.encode(text))


@pytest.mark.parametrize("over", [{}, {"personas": None, "num_personas": 3}, {"node_filter": False, "size": 7}],
                         ids=["given-personas", "derived-personas", "no-node-filter"])
def test_ragas_plan_is_exact_on_articles_that_share_nothing(tmp_path, over):
    """The real RAGAS pipeline against the scripted endpoint, on three articles whose graph has no
    links (only the single-hop synthesizer has material): chat requests sent == the unlinked count."""
    with ScriptedOpenAI() as srv:
        result, _ = generate(srv, tmp_path, spec(**over))
        sent = srv.chat_requests
    assert {r["synthesizer_name"] for r in result.rows} == {"single_hop_specific_query_synthesizer"}
    count = cl100k()
    plan = preflight.ragas_requests([count(a["article"]) for a in articles()], spec(**over))
    assert plan.unlinked == sent <= plan.chat


def empty_matches(body, seen):
    """RAGAS's extractors answered from the text; every persona-theme matching maps no theme."""
    schema = response_schema(body) or {}
    if schema.get("title") == "PersonaThemesMapping":
        names = list(schema["properties"]["mapping"]["properties"])
        return Reply(content=json.dumps({"mapping": {n: [] for n in names}}))
    return linking_extractor(body, seen)


@pytest.mark.parametrize("long", [False, True], ids=["short-articles", "long-articles"])
def test_ragas_plan_is_an_upper_bound_on_articles_that_link(tmp_path, long):
    """Three articles on the same people, RAGAS's extractors answered from the text: the graph links
    them and the multi-hop synthesizers run, so the requests exceed the unlinked count, yet stay
    within the plan; exactly `size` rows, the same ones from run to run (fresh caches). A matcher that
    maps no persona to any theme (RAGAS would visit every linked pair) is stopped at one matching per
    row asked, within the plan too."""
    rows = linked_articles(long)
    count = cl100k()
    gen = spec(size=6)
    plan = preflight.ragas_requests([count(r["article"]) for r in rows], gen)
    runs = []
    for i, script in enumerate((linking_extractor, linking_extractor, empty_matches)):
        with ScriptedOpenAI(script, embed=word_embedding) as srv:
            cfg = {**judge_cfg(srv.base_url), "cache": str(tmp_path / f"answers{i}")}
            result, _ = run_generation(rows, "linked", gen, cfg, seed=123, tokenizer=get_tokenizer())
            runs.append((result, srv.chat_requests))
    (first, sent), (again, sent_again), (starved, sent_starved) = runs
    print(f"{'long' if long else 'short'} linked articles: sent {sent}, planned at most {plan.chat}, "
          f"unlinked count {plan.unlinked}; empty matches: sent {sent_starved}")
    assert {r["synthesizer_name"] for r in first.rows} == set(SYNTHESIZERS)
    assert len(first.rows) == 6 and first.skipped == []
    assert first.rows == again.rows and sent == sent_again
    assert sent <= plan.chat and sent_starved <= plan.chat
    if not long:  # every short article is one node: the links add requests to the unlinked count
        assert sent > plan.unlinked
    assert starved.rows == [] and any("persona-theme matchings" in s["reason"] for s in starved.skipped)


def test_judge_plan_skips_empty_answers_and_cached_verdicts(tmp_path):
    cfg = compose([REPO / "config/config.yaml"])
    rows = [{"id": f"i{i}", "source": "sst2", "instruction": "Classify.", "input": f"text {i}", "output": "Positive",
             "model a": "Positive" if i % 3 else "", "model b": "Negative"} for i in range(6)]
    judge = {**cfg["judge"], **judge_cfg("http://127.0.0.1:9/v1")}
    assert preflight.judge_requests(rows, ["a", "b"], cfg["judge"]["metrics"], judge, lambda keys: {}) == (4 + 6) * 3
    from tunejudge.judge.runner import judge_key
    from tunejudge.llm.backends import identity

    # one verdict already cached: one request fewer; "Negative" answers of b are shared prompts per item
    key = judge_key(identity(judge), load_metrics(cfg["judge"]["metrics"])[0], {**rows[1], "response": "Positive"})
    assert preflight.judge_requests(rows, ["a", "b"], cfg["judge"]["metrics"], judge,
                                    lambda keys: {key: {}} if key in keys else {}) == 29


def test_controls_plan_is_exact_and_counts_only_uncached_verdicts(tmp_path):
    cfg = compose([REPO / "config/config.yaml"])
    test = [{"id": f"i{i}", "source": ["sst2", "agnews", "lonely"][min(i % 3, 2)] if i < 9 else "sst2",
             "instruction": f"Classify {i}.", "input": f"text {i}", "output": f"label {i}"} for i in range(12)]
    test = [t for t in test if not (t["source"] == "lonely" and t["id"] != "i2")]  # one item: no negative
    judge = {**cfg["judge"], **judge_cfg("http://127.0.0.1:9/v1"), "controls": {"enabled": True, "items_per_source": 2}}
    n_metrics = len(cfg["judge"]["metrics"])
    assert preflight.controls_requests(test, judge, 123, lambda keys: {}) == 2 * (2 + 2) * n_metrics
    plan = preflight.plan_run({**cfg, "judge": judge}, test_items=test,
                              controls_todo=preflight.controls_requests(test, judge, 123, lambda keys: {}))
    assert plan.as_dict(None)["requests"]["judge_controls"] == 2 * 4 * n_metrics
    assert preflight.controls_requests(test, judge, 123, lambda keys: {k: {} for k in keys}) == 0
    assert preflight.controls_requests(test, {**judge, "controls": {"enabled": False}}, 123, lambda keys: {}) == 0


def test_a_judge_panel_is_planned_as_judges_and_controls_per_panel_judge():
    cfg = compose([REPO / "config/config.yaml"])
    n, models, metrics = 24, len(cfg["models"]), len(cfg["judge"]["metrics"])
    plain = preflight.plan_run(cfg).as_dict(None)["requests"]
    judge = {**cfg["judge"], "panel": {"judges": {"mini": {}, "qwen": {}}}}
    plan = preflight.plan_run({**cfg, "judge": judge}).as_dict(None)["requests"]
    assert plan["judge_panel"] == 2 * (n * models * metrics + plain["judge_controls"])
    assert {k: v for k, v in plan.items() if k != "judge_panel"} == plain


def test_endpoint_check_lists_models_without_a_paid_request():
    cfg = compose([REPO / "config/config.yaml", REPO / "config/paper.yaml"])
    with ScriptedOpenAI(api_like=True, api_key=FAKE_KEY) as srv:
        cfg["judge"]["openai"].update(base_url=srv.base_url, api_key_env=KEY_ENV)
        ok = preflight_checks.check_endpoint(cfg)
        assert srv.chat_requests == 0 and srv.embedding_requests == 0
    assert ok.ok and "gpt-4.1" in ok.detail and "text-embedding-3-small" in ok.detail


def test_endpoint_that_answers_401_fails_with_one_line_naming_the_key(monkeypatch):
    cfg = compose([REPO / "config/config.yaml", REPO / "config/paper.yaml"])
    monkeypatch.setenv(KEY_ENV, "sk-wrong")
    with ScriptedOpenAI(api_like=True, api_key=FAKE_KEY) as srv:
        cfg["judge"]["openai"].update(base_url=srv.base_url, api_key_env=KEY_ENV)
        bad = preflight_checks.check_endpoint(cfg)
    assert not bad.ok and "refused the key (401)" in bad.detail and KEY_ENV in bad.detail
    assert "sk-wrong" not in bad.detail and "\n" not in bad.detail


def test_missing_key_and_unserved_model():
    cfg = compose([REPO / "config/config.yaml", REPO / "config/paper.yaml"])
    cfg["judge"]["openai"]["api_key_env"] = "TUNEJUDGE_TEST_UNSET_KEY"
    assert not preflight_checks.check_key(cfg).ok and "export TUNEJUDGE_TEST_UNSET_KEY" in preflight_checks.check_key(cfg).detail
    with ScriptedOpenAI(api_like=True, models={"gpt-4o": "gpt-4o-2024-08-06"}) as srv:
        cfg["judge"]["openai"]["base_url"] = srv.base_url
        bad = preflight_checks.check_endpoint(cfg)
    assert not bad.ok and "does not serve ['gpt-4.1'" in bad.detail


def test_cost_is_priced_from_the_config():
    cfg = compose([REPO / "config/config.yaml", REPO / "config/paper.yaml"])
    plan = preflight.plan_run(cfg)
    d = plan.as_dict(cfg["judge"]["prices"])
    assert d["requests"]["judge"] == 100 * 4 * 3 and d["requests"]["audit"] == 300
    expected = (sum(d["input_tokens"].values()) * 2.0 + sum(d["output_tokens"].values()) * 8.0
                + d["embedding_tokens"] * 0.02) / 1e6
    assert d["cost_usd"] == round(expected, 2) and d["cost_usd"] > 0
    assert d["upper_bounds"] == ["audit", "ragas"]
    text = preflight.render([], plan, cfg["judge"]["prices"])
    print(text)
    lines = {line.split()[0]: line for line in text.splitlines()[1:] if line.startswith("  ")}
    assert "<=" in lines["ragas"] and "<=" in lines["audit"] and "<=" not in lines["judge"]
    assert f"${d['cost_usd']:.2f} (audit, ragas counted at their upper bound)" in text
    assert "at most" in text and "if the articles share nothing" in text  # the note: both RAGAS counts


def test_judge_stops_before_the_first_request_when_max_requests_would_be_exceeded(tmp_path):
    cfg = judge_cfg("http://127.0.0.1:9/v1")
    items = [{"id": f"i{i}", "source": "sst2", "instruction": "Classify.", "input": "x", "output": "Positive",
              "response": f"Positive {i}"} for i in range(5)]
    metrics = load_metrics(compose([REPO / "config/config.yaml"])["judge"]["metrics"])
    from tunejudge.llm import backends

    with ScriptedOpenAI() as srv, AnswerStore(tmp_path / "answers") as cache:
        cfg["openai"]["base_url"] = srv.base_url
        connect = connector(cfg, RequestBudget(None))
        with pytest.raises(JudgeError, match="15 verdicts to ask, more than judge.max_requests = 10; nothing was sent"):
            judge_model(items, "m", metrics, backends.identity(cfg), cache, connect, 2, max_requests=10)
        assert srv.chat_requests == 0


def test_preflight_states_the_mde_the_test_set_gives_from_an_assumption_or_a_previous_run(tmp_path):
    """`snakemake preflight` prints the headline comparison's minimum detectable effect: from a stated
    spread when no run exists, from the previous run's analysis (rescaled to the configured test size)
    when one does, and says when the test set is too small for analysis.target_effect."""
    import math

    from snakemake.utils import validate

    from tunejudge.preflight.power import planned_power, render_power
    from tunejudge.run.config import compose

    cfg = compose([REPO / "config/config.yaml", REPO / "config/paper.yaml"], {})
    validate(cfg, str(REPO / "config/schema.yaml"))
    p = planned_power(cfg, previous=tmp_path / "none.csv")
    assert p["test_items"] == 100 and p["target"] == 1.5 and p["spread"].startswith("assumed")
    assert 1.0 < p["mde"] < 2.0 and p["items_needed"] == math.ceil(100 * (p["mde"] / 1.5) ** 2)
    text = "\n".join(render_power(p))
    assert f"minimum detectable effect {p['mde']:.2f}" in text and ("TOO SMALL" in text) == (not p["detectable"])
    prev = tmp_path / "comparisons.csv"
    prev.write_text("scope,measure,comparison,n,groups,mde\nall,judge total (0-15),full vs base,25,20,2.0\n")
    q = planned_power(cfg, previous=prev)
    assert q["mde"] == 1.0 and q["detectable"] and "previous run" in q["spread"]  # 2.0 x sqrt(25 / 100)
