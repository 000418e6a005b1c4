"""RAGAS test-set generation through the real ragas pipeline, a scripted OpenAI-compatible server
standing in for the LLM and the embeddings (real openai SDK over HTTP); offline pieces."""

import json

import pytest
from conftest import REPO
from test_judge import FAKE_KEY, KEY_ENV, judge_cfg
from tunejudge_dev.testing.openai_server import Reply, ScriptedOpenAI, response_schema

from tunejudge.data.qagen import offline
from tunejudge.data.qagen.generate import articles_from_rows
from tunejudge.data.qagen.llm import bound_schema
from tunejudge.data.qagen.run import run_generation
from tunejudge.errors import DataError
from tunejudge.llm.client import JudgeError
from tunejudge.models.gpt2.tokenizer import get_tokenizer

PERSONAS = [{"name": "Local News Reader", "role_description": "Wants the key facts of each story."},
            {"name": "Hurried Commuter", "role_description": "Skims headlines between stops."}]


def articles(n=3):
    rows = [json.loads(line) for line in (REPO / "data/samples/cnn_dailymail.jsonl").read_text().splitlines()]
    return rows[:n]


def spec(**over):
    s = {"size": 4, "personas": PERSONAS, "num_personas": 2, "synthesizers": None, "node_filter": True,
         "prompt_examples": True, "prompt_schema": True, "max_tokens": 300, "embeddings_model": "scripted-embed"}
    s.update(over)
    return s


def generate(srv, tmp_path, script_spec=None, **cfg_over):
    cfg = {**judge_cfg(srv.base_url, **cfg_over), "cache": str(tmp_path / "answers")}
    return run_generation(articles(), "sample", script_spec or spec(), cfg, seed=123, tokenizer=get_tokenizer())


@pytest.fixture(autouse=True)
def key(monkeypatch, tmp_path):
    monkeypatch.setenv(KEY_ENV, FAKE_KEY)
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "tiktoken"))


def title(body):
    return (response_schema(body) or {}).get("title", "")


def test_rows_keep_contexts_persona_synthesizer_and_article(tmp_path):
    with ScriptedOpenAI() as srv:
        result, stats = generate(srv, tmp_path)
        assert srv.embedding_requests > 0  # summaries embedded through the same endpoint
        bodies = list(srv.requests)
    ids = {a["id"]: a["article"] for a in articles()}
    assert len(result.rows) == 4 and stats["requests"] == len(bodies)
    for row in result.rows:
        assert row["user_input"] and row["reference"]
        assert row["persona_name"] in {p["name"] for p in PERSONAS}
        assert row["synthesizer_name"] == "single_hop_specific_query_synthesizer"
        assert row["article_id"] in ids
        assert row["reference_contexts"] and all(c.strip()[:200] in ids[row["article_id"]]
                                                 for c in row["reference_contexts"])
    # every call bounded in the field the server reads, with the answer's schema attached
    assert all(b["max_tokens"] == 300 and "max_completion_tokens" not in b for b in bodies)
    assert all(response_schema(b) for b in bodies)
    # the persona-theme matching may only name the configured personas
    mapping = [response_schema(b) for b in bodies if title(b) == "PersonaThemesMapping"]
    assert mapping and all(m["properties"]["mapping"]["required"] == [p["name"] for p in PERSONAS]
                           and m["properties"]["mapping"]["additionalProperties"] is False for m in mapping)


def test_rerun_is_served_from_the_cache_with_the_same_rows(tmp_path):
    with ScriptedOpenAI() as srv:
        first, _ = generate(srv, tmp_path)
        n = srv.chat_requests
        second, stats = generate(srv, tmp_path)
        assert srv.chat_requests == n  # no new chat request
    assert second.rows == first.rows and stats["cached"] > 0


def test_malformed_answers_are_retried_then_skipped_with_a_reason(tmp_path):
    def script(body, seen):
        if title(body) == "GeneratedQueryAnswer":
            return Reply("malformed", content="Sure! Here is a question about the article.")
        return Reply()

    with ScriptedOpenAI(script) as srv:
        result, stats = generate(srv, tmp_path)
    assert result.rows == []
    assert len(result.skipped) == 4 and {s["stage"] for s in result.skipped} == {"sample"}
    assert all("no JSON object" in s["reason"] and s["persona_name"] for s in result.skipped)
    assert stats["malformed"] == 4 * 3  # each asked 1 + malformed_retries (2) times


def test_without_examples_and_schema_text_the_prompts_are_slimmer(tmp_path):
    with ScriptedOpenAI() as srv:
        generate(srv, tmp_path, spec(prompt_examples=False, prompt_schema=False))
        prompts = [b["messages"][0]["content"] for b in srv.requests]
    assert not any("--------EXAMPLES" in p or "JSON Schema" in p for p in prompts)
    assert all(response_schema(b) for b in srv.requests)  # the schema still goes with every request


def test_unreachable_endpoint_stops_the_run(tmp_path):
    with pytest.raises(JudgeError, match="attempts in a row"):
        generate(ScriptedOpenAI(), tmp_path, max_retries=0, timeout_s=1)  # never started: no answer


def test_article_rows_are_checked():
    with pytest.raises(DataError, match=r"articles\.jsonl: record 1: field 'id'"):
        articles_from_rows([{"article": "a", "id": "x"}, {"article": "b"}], "articles.jsonl")


def test_offline_tokenizers(tmp_path, monkeypatch):
    import tiktoken
    from ragas.tokenizers import DEFAULT_TOKENIZER

    monkeypatch.delenv("TIKTOKEN_CACHE_DIR")
    where = offline.seed_tiktoken_cache(tmp_path / "tk")
    assert where == tmp_path / "tk" and len(list(where.iterdir())) == 1
    assert tiktoken.get_encoding("cl100k_base").encode("hello world") == [15339, 1917]
    offline.use_tokenizer(get_tokenizer())
    assert DEFAULT_TOKENIZER.encode("hello world") == [31373, 995]  # GPT-2's ids, not o200k's


def test_packaged_minilm_embeds_offline():
    emb = offline.local_embeddings()
    v = emb.embed_text("The Rhine rose to its highest level in nine years.")
    assert len(v) == 384 and abs(sum(x * x for x in v) - 1) < 1e-3


def test_bound_schema_caps_strings_and_lists():
    s = bound_schema({"type": "object", "properties": {"a": {"type": "string"},
                                                       "b": {"type": "array", "items": {"type": "string"}}}}, 50, 4)
    assert s["properties"]["a"]["maxLength"] == 50 and s["properties"]["b"]["maxItems"] == 4
    assert s["properties"]["b"]["items"]["maxLength"] == 50


def test_the_local_server_applies_max_tokens_and_ignores_max_completion_tokens(tmp_path):
    """llama-cpp-python's server reads `max_tokens` only. langchain-openai would have sent the bound as
    `max_completion_tokens`, which it ignores; our client sends the field the server reads."""
    import asyncio

    import yaml

    from tunejudge.llm import backends
    from tunejudge.llm.client import RequestBudget

    cfg = yaml.safe_load((REPO / "config/config.yaml").read_text())["judge"]
    prompt = "Count from 1 to 60, one number per line."
    with backends.open_client(cfg, RequestBudget(10), threads=2, server_log=tmp_path / "server.log",
                              max_tokens=8) as (make_client, local):
        client = make_client()

        async def ask():
            try:
                bounded = await client.complete(prompt, lambda c: c)
                ignored = await client._client.chat.completions.create(
                    model=client.endpoint.model, messages=[{"role": "user", "content": prompt}],
                    max_completion_tokens=8, temperature=0)
                return bounded[1].response, ignored
            finally:
                await client.aclose()

        bounded, ignored = asyncio.run(ask())
    assert local
    assert bounded.usage.completion_tokens <= 8 and bounded.choices[0].finish_reason == "length"
    assert ignored.usage.completion_tokens > 8  # the other field does not bound this server


def test_personas_derived_from_the_articles_when_none_are_given(tmp_path):
    with ScriptedOpenAI() as srv:
        result, _ = generate(srv, tmp_path, spec(personas=None, num_personas=2))
        asked = {title(b) for b in srv.requests}
    assert "Persona" in asked  # RAGAS's persona prompt, through the same endpoint
    assert result.rows and all(r["persona_name"].startswith("scripted") for r in result.rows)


def test_ragas_usage_tracking_is_off():
    from ragas._analytics import do_not_track

    assert do_not_track()  # tunejudge.data.qagen sets RAGAS_DO_NOT_TRACK before ragas is imported
