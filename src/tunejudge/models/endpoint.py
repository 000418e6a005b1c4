"""A compared model behind any OpenAI-compatible endpoint (``models.<m>.endpoint``): a hosted API, ``vllm
serve``, SGLang, llama.cpp's server. It answers every test item through the LLM layer the judge uses -- bounded
concurrency, retries with backoff, the answer store (a rerun sends nothing), a request budget and prices -- and its
answers are judged, compared and reported like any model's.

``prompt: chat`` sends the instruction and input as one user turn (the server applies the model's chat template);
``prompt: completion`` sends the study's Alpaca prompt as is to ``/completions`` (the text a fine-tuned model
sees), stopping at the next ``### `` header. Decoding is greedy (temperature 0, seed 0), at most
``generation.max_new_tokens`` tokens of the endpoint's own tokenizer."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from dataclasses import dataclass, field

from ..data.prompt import format_prompt, user_turn
from ..errors import ConfigError
from ..llm.client import (
    ChatClient,
    Endpoint,
    MalformedAnswer,
    RequestBudget,
    RetryPolicy,
    api_key_from_env,
)
from ..llm.store import cache_key

log = logging.getLogger(__name__)

PROMPTS = ("chat", "completion")
COMPLETION_STOP = ("\n### ",)  # the next Alpaca header: the answer has ended
DEFAULTS = {"base_url": None, "api_key_env": None, "prompt": "chat", "in_flight": 4, "timeout_s": 120.0,
            "max_retries": 5, "max_requests": None, "prices": None}


@dataclass(frozen=True)
class EndpointModel:
    name: str  # the config's model name
    model: str  # the name the endpoint serves it under
    base_url: str | None = None  # None: OpenAI's
    api_key_env: str | None = None  # the environment variable holding the key (None: a server that needs none)
    prompt: str = "chat"
    in_flight: int = 4
    timeout_s: float = 120.0
    max_retries: int = 5
    max_requests: int | None = None
    prices: dict | None = field(default=None, hash=False)

    def where(self) -> str:
        return self.base_url or "https://api.openai.com/v1"

    def label(self) -> str:
        host = self.where().split("://", 1)[-1].split("/", 1)[0]
        return f"{self.model} at {host} ({self.prompt} prompt; answers through its endpoint)"

    def text(self, record: dict) -> str:
        return user_turn(record) if self.prompt == "chat" else format_prompt(record)

    def key(self, record: dict, max_tokens: int) -> str:
        """What decides an answer: where, which model, the prompt's text and the decoding (never the key)."""
        return cache_key("answer", {"base_url": self.where(), "model": self.model, "api": self.prompt,
                                    "prompt": self.text(record), "max_tokens": max_tokens, "temperature": 0.0,
                                    "seed": 0, "stop": list(COMPLETION_STOP) if self.prompt == "completion" else []})


def endpoint_of(config: dict, model: str) -> EndpointModel | None:
    """A model's endpoint (None: it is a model of its own base), its keys checked."""
    spec = config["models"][model]
    ep = spec.get("endpoint")
    if not ep:
        return None
    where = f"config: models.{model}"
    clash = sorted(k for k in spec if k not in ("endpoint",))
    if clash:
        raise ConfigError(f"{where}: an endpoint model answers as it is served; {', '.join(clash)} belong to models "
                          "tunejudge trains or loads (no base, experiment or fine-tuning here)")
    s = {**DEFAULTS, **ep}
    if not s.get("model"):
        raise ConfigError(f"{where}.endpoint.model: the name the endpoint serves the model under")
    if s["prompt"] not in PROMPTS:
        raise ConfigError(f"{where}.endpoint.prompt = {s['prompt']!r}: one of {', '.join(PROMPTS)}")
    return EndpointModel(name=model, **{k: s[k] for k in ("model", "base_url", "api_key_env", "prompt", "in_flight",
                                                          "timeout_s", "max_retries", "max_requests", "prices")})


def endpoints(config: dict) -> dict[str, EndpointModel]:
    return {m: ep for m in config["models"] if (ep := endpoint_of(config, m)) is not None}


def answer_all(spec: EndpointModel, records: list[dict], *, max_tokens: int, store, progress=None) -> tuple[list[str], dict]:
    """Every record's answer (from the store where it has one); returns (answers, stats: requests sent,
    cached, tokens, cost where priced). Stops with a clear error when the endpoint cannot serve."""
    from tqdm import tqdm

    keys = [spec.key(r, max_tokens) for r in records]
    found = store.get_many(keys)
    todo = [(k, r) for k, r in zip(keys, records) if k not in found]
    stats = Counter(cached=len(records) - len(todo))
    if todo:
        key = api_key_from_env(spec.api_key_env, required=False)
        if spec.api_key_env and not key:
            raise ConfigError(f"config: models.{spec.name}.endpoint.api_key_env = {spec.api_key_env!r}, but "
                              f"${spec.api_key_env} is not set; export the key")
        ep = Endpoint(model=spec.model, base_url=spec.base_url, api_key=key, timeout_s=spec.timeout_s,
                      max_tokens=max_tokens, temperature=0.0, seed=0, structured_output="none", api=spec.prompt,
                      stop=COMPLETION_STOP if spec.prompt == "completion" else (), role=f"model {spec.name}")
        budget = RequestBudget(spec.max_requests, None, spec.prices)
        policy = RetryPolicy(max_retries=spec.max_retries, malformed_retries=0)

        def valid(content):
            if content is None:
                raise MalformedAnswer("the endpoint sent no content")
            return content

        async def go(bar):
            client = ChatClient(ep, policy, budget, spec.in_flight)
            try:
                async def one(k, r):
                    text, answer = await client.complete(spec.text(r), valid)
                    store.put(k, "answer", {"text": text, "served_by": answer.served_by})
                    found[k] = {"text": text}
                    bar.update(1)

                await asyncio.gather(*(one(k, r) for k, r in todo))
            finally:
                await client.aclose()
                stats.update({k: v for k, v in client.stats.items() if k != "in_flight_limit"})

        with tqdm(total=len(todo), desc=f"answers {spec.name}", unit="request", file=progress,
                  disable=progress is False) as bar:
            asyncio.run(go(bar))
    out = dict(stats)
    if spec.prices:
        out["cost_usd"] = round((stats["prompt_tokens"] * spec.prices.get("input_per_mtok", 0)
                                 + stats["completion_tokens"] * spec.prices.get("output_per_mtok", 0)) / 1e6, 6)
    return [found[k]["text"] for k in keys], out
