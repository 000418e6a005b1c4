"""From config to a RAGAS test set: the judge's backend as RAGAS's LLM, embeddings, offline fixes."""

from __future__ import annotations

import logging
from pathlib import Path

from ...llm import backends
from ...llm.client import RequestBudget, api_key_from_env
from ...llm.store import AnswerStore
from . import offline
from .generate import GenerationResult, articles_from_rows, generate_testset
from .llm import RagasEndpointLLM

log = logging.getLogger("tunejudge.qagen")

MAX_ITEMS = 8  # local backend: lists in an answer's JSON schema (themes, entities) capped too


def openai_embeddings(cfg: dict, spec: dict):
    """RAGAS's OpenAI embeddings provider at the judge's endpoint (same key, same base_url)."""
    from openai import OpenAI
    from ragas.embeddings.openai_provider import OpenAIEmbeddings

    o = cfg["openai"]
    client = OpenAI(api_key=api_key_from_env(o.get("api_key_env"), required=True), base_url=o.get("base_url"),
                    timeout=cfg["timeout_s"], max_retries=cfg["max_retries"])
    return OpenAIEmbeddings(client=client, model=spec.get("embeddings_model", "text-embedding-3-small"))


def run_generation(rows, where: str, spec: dict, llm_cfg: dict, *, seed: int, tokenizer,
                   threads: int = 2, server_log=None, progress=None) -> tuple[GenerationResult, dict]:
    """``spec``: a source's ``generate`` section; ``llm_cfg``: the ``judge`` section; ``tokenizer``: the
    tiktoken encoding RAGAS measures and cuts chunks with (the GPT-2 encoding, offline)."""
    articles = articles_from_rows(rows, where)
    # httpx, whatever judge.http_client says: RAGAS runs steps in event loops of its own that close
    # before their client can, and an aiohttp session left open logs an error when it is collected
    cfg = {**llm_cfg, "max_tokens": spec.get("max_tokens", 1024), "http_client": "httpx"}
    judge = backends.identity(cfg)
    local = judge.backend == "local"
    offline.seed_tiktoken_cache(Path(cfg["cache"]).parent / "tiktoken")
    offline.use_tokenizer(tokenizer)
    max_chars = spec.get("max_chars") if local else None
    identity = {**judge.key_parts(), "max_chars": max_chars, "max_items": MAX_ITEMS if max_chars else None}
    if local:
        log.info("RAGAS's LLM: %s served locally -- a smoke test: expect few usable rows", judge.model)
    with AnswerStore(cfg["cache"]) as cache, backends.open_client(
            cfg, RequestBudget(cfg["max_requests"]), threads=threads, server_log=server_log) as (make_client, _):
        embeddings = offline.local_embeddings() if local else openai_embeddings(cfg, spec)
        llm = RagasEndpointLLM(make_client, cache, identity, max_chars=max_chars,
                               max_items=MAX_ITEMS if max_chars else None)
        result = generate_testset(
            articles, llm=llm, embeddings=embeddings, size=spec["size"], seed=seed,
            personas=spec.get("personas"), num_personas=spec.get("num_personas", 3),
            synthesizers=spec.get("synthesizers"), node_filter=spec.get("node_filter", True),
            prompt_examples=spec.get("prompt_examples", True), prompt_schema=spec.get("prompt_schema", True),
            progress=progress)
    return result, dict(llm.request_stats())
