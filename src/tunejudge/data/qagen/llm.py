"""RAGAS's view of our endpoint: an ``InstructorBaseRagasLLM`` whose calls go through :class:`ChatClient`.

RAGAS hands this kind of LLM each prompt with the pydantic model the answer must fit, so every
call is sent with that model's JSON schema (OpenAI's ``response_format``, or llama.cpp's grammar),
validated here and asked again when malformed; the client bounds it (timeout, ``max_tokens`` in the
field the server reads, retries, budget). For a grammar-constrained local model every string and
list in the schema is capped too, so no answer can run on until ``max_tokens`` cuts its JSON.

Answers are cached by content (prompt, schema, model settings) in the verdict cache: a rerun with
the same config sends no request and gives the same test set.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections import Counter

from ragas.llms.base import InstructorBaseRagasLLM

from ...llm.client import MalformedAnswer, parse_json_object
from ...llm.store import AnswerStore, cache_key

log = logging.getLogger("tunejudge.qagen")


def bound_schema(schema: dict, max_chars: int, max_items: int) -> dict:
    """A copy of a JSON schema with every string capped at ``max_chars`` and every list at ``max_items``."""
    schema = copy.deepcopy(schema)

    def walk(node):
        if isinstance(node, dict):
            if node.get("type") == "string":
                node.setdefault("maxLength", max_chars)
            if node.get("type") == "array":
                node.setdefault("maxItems", max_items)
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(schema)
    return schema


class RagasEndpointLLM(InstructorBaseRagasLLM):
    """``make_client`` gives a fresh ChatClient; one is kept per event loop (RAGAS runs some steps
    in loops of its own, and an async HTTP client must not cross loops)."""

    is_async = True

    def __init__(self, make_client, cache: AnswerStore | None, identity: dict, *,
                 max_chars: int | None = None, max_items: int | None = None):
        self.make_client, self.cache, self.identity = make_client, cache, identity
        self.max_chars, self.max_items = max_chars, max_items
        self._clients: dict[int, object] = {}
        self.stats: Counter = Counter()

    def _client(self):
        loop = asyncio.get_running_loop()
        client = self._clients.get(id(loop))
        if client is None:
            client = self._clients[id(loop)] = self.make_client()
        return client

    def _schema(self, response_model) -> dict:
        schema = response_model.model_json_schema()
        if self.max_chars:
            schema = bound_schema(schema, self.max_chars, self.max_items or 8)
        return schema

    async def agenerate(self, prompt: str, response_model, schema: dict | None = None):
        """RAGAS's call; ``schema`` (ours only) narrows the answer below what ``response_model`` allows."""
        schema = self._schema(response_model) if schema is None else schema
        key = cache_key("ragas", {"llm": self.identity, "prompt": prompt, "schema": schema})
        if self.cache is not None:
            hit = self.cache.get(key)
            if hit is not None:
                self.stats["cached"] += 1
                return response_model.model_validate_json(hit["json"])

        def validate(content):
            data = parse_json_object(content)
            try:
                return response_model.model_validate(data)
            except Exception as e:  # pydantic's ValidationError, kept to its first line
                raise MalformedAnswer(
                    f"answer does not fit {response_model.__name__}: {str(e).splitlines()[0]}") from None

        client = self._client()
        value, _ = await client.complete(prompt, validate, json_schema=schema, strict=False)
        if self.cache is not None:
            # as JSON text: the cache sorts an object's keys, and RAGAS's sampling follows their order
            self.cache.put(key, "ragas", {"json": value.model_dump_json()})
        return value

    def generate(self, prompt: str, response_model):
        """RAGAS calls ``agenerate`` (``is_async``); a synchronous caller gets the same, run to completion."""
        return asyncio.run(self.agenerate(prompt, response_model))

    def request_stats(self) -> Counter:
        total = Counter(self.stats)
        for client in self._clients.values():
            total.update(client.stats)
        return total

    async def aclose(self) -> None:
        """Close the client of the running loop (the others belonged to loops RAGAS already closed)."""
        client = self._clients.pop(id(asyncio.get_running_loop()), None)
        if client is not None:
            self.stats.update(client.stats)
            await client.aclose()
