"""From the ``judge:`` config to a judge: its identity (for rows and cache keys) and a way to connect.

Two ways to reach a model, one protocol:
- ``openai``: any OpenAI-compatible endpoint (OpenAI, vLLM, Ollama's /v1, llama.cpp's server) by
  ``base_url``, the key read from the environment variable ``api_key_env`` names;
- ``local``: llama-cpp-python's server started on 127.0.0.1 for the job (see ``server``), answers
  constrained by a JSON schema so every answer parses.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError
from .client import ChatClient, Endpoint, RequestBudget, RetryPolicy, TokenRate, api_key_from_env

BACKENDS = ("openai", "local")


@dataclass(frozen=True)
class LLMIdentity:
    """What names the LLM a step asks (judge, auditor, RAGAS) in every row and cache key: backend, model,
    and the settings that change its answers."""

    backend: str
    model: str
    settings: tuple = ()  # (name, value) pairs that change verdicts: temperature, logprobs, ...

    def row(self) -> dict:
        return {"backend": self.backend, "model": self.model}

    def key_parts(self) -> dict:
        return {"backend": self.backend, "model": self.model, "settings": dict(self.settings)}


def _decoding(cfg: dict) -> dict:
    return {"temperature": cfg["temperature"], "max_tokens": cfg["max_tokens"], "seed": cfg["seed"]}


_DIGESTS: dict[tuple, str] = {}


def weights_digest(path: Path) -> str:
    """sha256 of a weights file (its content, not its name or size), once per process and version."""
    from ..io import sha256_file

    st = Path(path).stat()
    key = (str(Path(path).resolve()), st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        _DIGESTS[key] = sha256_file(path)
    return _DIGESTS[key]


def identity(cfg: dict) -> LLMIdentity:
    """Backend, model and every setting that changes a verdict (never the key)."""
    backend = cfg["backend"]
    if backend not in BACKENDS:
        raise ConfigError(f"config: judge.backend = {backend!r}: one of {list(BACKENDS)}")
    if backend == "openai":
        o = cfg["openai"]
        settings = {**_decoding(cfg), "base_url": o.get("base_url"), "logprobs": o["logprobs"],
                    "structured_output": o["structured_output"]}
        return LLMIdentity("openai", o["model"], tuple(sorted(settings.items())))
    from .server import resolve_gguf

    loc = cfg["local"]
    gguf = resolve_gguf(loc.get("gguf"))
    settings = {**_decoding(cfg), "gguf_sha256": weights_digest(gguf), "n_ctx": loc["n_ctx"],
                "reason_max_chars": loc["reason_max_chars"], "prompt": "geval-without-example-verdict"}
    return LLMIdentity("local", gguf.name, tuple(sorted(settings.items())))


def price_factor(cfg: dict) -> float:
    """What a request costs relative to ``judge.prices``: the Batch API's discount where it is on."""
    o = cfg.get("openai") or {}
    return float(o.get("batch_price_factor", 0.5)) if cfg["backend"] == "openai" and o.get("batch") else 1.0


def budget(cfg: dict) -> RequestBudget:
    """A judge job's budget: ``max_requests``, and ``max_cost`` at ``prices`` (times the batch
    discount where the Batch API is on) where set."""
    prices, factor = cfg.get("prices"), price_factor(cfg)
    if prices and factor != 1.0:
        prices = {k: v * factor for k, v in prices.items()}
    return RequestBudget(cfg["max_requests"], cfg.get("max_cost"), prices)


def policy(cfg: dict) -> RetryPolicy:
    return RetryPolicy(max_retries=cfg["max_retries"], malformed_retries=cfg["malformed_retries"],
                       initial_s=cfg["backoff_initial_s"], max_s=cfg["backoff_max_s"])


@contextlib.contextmanager
def open_client(cfg: dict, budget: RequestBudget, *, threads: int = 2, server_log: str | Path | None = None,
                max_tokens: int | None = None, timeout_s: float | None = None, in_flight: int | None = None):
    """The configured endpoint as a bounded :class:`ChatClient` factory: ``yield (make_client, local)``.

    The local backend's server starts on entry and stops on exit; ``make_client()`` gives a new
    client (one per event loop: an ``AsyncOpenAI`` client must not cross loops). ``max_tokens``
    and ``timeout_s`` override the judge's own bounds (RAGAS and the auditor write longer answers).
    """
    common = dict(timeout_s=timeout_s or cfg["timeout_s"], max_tokens=max_tokens or cfg["max_tokens"],
                  temperature=cfg["temperature"], seed=cfg["seed"], http_client=cfg.get("http_client", Endpoint.http_client))
    in_flight = in_flight or cfg["in_flight"]
    if cfg["backend"] == "openai":
        o = cfg["openai"]
        key = api_key_from_env(o.get("api_key_env"), required=True)
        ep = Endpoint(model=o["model"], base_url=o.get("base_url"), api_key=key,
                      max_tokens_field=o["max_tokens_field"], structured_output=o["structured_output"],
                      logprobs=o["logprobs"], **common)
        rate = TokenRate(cfg["tokens_per_minute"]) if cfg.get("tokens_per_minute") else None
        if o.get("batch"):
            from .batch import BatchClient

            opts = dict(state_dir=Path(cfg["cache"]).parent / "batches", poll_s=o.get("batch_poll_s", 30),
                        wait_s=o.get("batch_wait_s", 86400), price_factor=price_factor(cfg))
            yield (lambda: BatchClient(ep, policy(cfg), budget, in_flight, cfg["seed"], rate, **opts)), False
            return
        yield (lambda: ChatClient(ep, policy(cfg), budget, in_flight, cfg["seed"], rate)), False
        return
    from .server import llama_server, resolve_gguf

    loc = cfg["local"]
    log_path = Path(server_log) if server_log else Path("results/logs/judge/llama_server.log")
    with llama_server(resolve_gguf(loc.get("gguf")), n_ctx=loc["n_ctx"], threads=threads,
                      startup_timeout_s=loc["startup_timeout_s"], log_path=log_path) as (url, key, alias):
        # llama-cpp-python's server reads `max_tokens` only, and takes a JSON schema as a grammar
        ep = Endpoint(model=alias, base_url=url, api_key=key, max_tokens_field="max_tokens",
                      structured_output="json_object", logprobs=False, **common)
        yield (lambda: ChatClient(ep, policy(cfg), budget, in_flight, cfg["seed"])), True

