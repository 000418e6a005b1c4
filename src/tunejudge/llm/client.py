"""One bounded, retried, budgeted way to call any OpenAI-compatible Chat Completions endpoint.

Every request goes through the real ``openai`` SDK (``AsyncOpenAI``) with the SDK's own retries
off, so this module owns the policy:

- at most ``in_flight`` requests are open at once, fewer while the endpoint answers 429
  (:class:`AdaptiveLimit`: additive increase, multiplicative decrease); backoff sleeps release the slot;
- 429, 5xx, timeouts and dropped connections are retried with exponential backoff and full
  jitter, honouring ``Retry-After`` when the server sends one;
- an answer that fails validation (not JSON, wrong fields, score out of range) is retried up to
  ``malformed_retries`` times, then raised as :class:`MalformedAnswer`;
- other HTTP errors (400, 401, 404, ...) stop the run with one clear message;
- every HTTP attempt spends one unit of the run's request budget.

The API key is read from the environment variable the config names; it is never logged, and
:func:`redact` scrubs it from any server message we pass on.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import ConfigError, TunejudgeError

log = logging.getLogger("tunejudge.judge")

for _noisy in ("httpx", "httpx2", "httpcore", "openai"):  # request lines and debug dumps stay out of the logs
    logging.getLogger(_noisy).setLevel(logging.WARNING)


class JudgeError(TunejudgeError):
    """The judge endpoint cannot serve this run (bad key, unknown model, unreachable, budget)."""


class MalformedAnswer(TunejudgeError):
    """The endpoint answered, but not in the shape asked for."""


class BudgetExhausted(JudgeError):
    pass


@dataclass(frozen=True)
class Endpoint:
    """Where and how to ask. ``api_key`` is excluded from repr so it cannot reach a log."""

    model: str
    base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    timeout_s: float = 60.0
    max_tokens: int = 256
    max_tokens_field: str = "max_tokens"  # or max_completion_tokens (OpenAI's newer name)
    temperature: float = 0.0
    retry_temperature: float = 0.3  # a malformed answer is asked again a little less greedily
    seed: int | None = 0
    # json_schema: OpenAI's response_format (OpenAI, vLLM, Ollama); json_object: {"type": "json_object",
    # "schema": ...}, the dialect of llama-cpp-python's server (a grammar); none: the prompt alone
    structured_output: str = "json_schema"
    logprobs: bool = False
    top_logprobs: int = 20
    # the SDK's HTTP transport: aiohttp (openai[aiohttp], the SDK's choice for concurrency: less client
    # CPU per request than httpx, bench/judge.py) or httpx (the SDK's default)
    http_client: str = "aiohttp"
    # chat: /chat/completions, the prompt as one user turn; completion: /completions, the prompt as is
    # (an endpoint model with the study's Alpaca prompt)
    api: str = "chat"
    stop: tuple[str, ...] = ()
    role: str = "judge"  # who asks, in every error message: the judge, or a model that answers (its name)


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 5
    malformed_retries: int = 2
    initial_s: float = 1.0
    max_s: float = 30.0

    def delay(self, attempt: int, retry_after: float | None, rng: random.Random) -> float:
        """Full-jitter exponential backoff; a server's Retry-After is a floor."""
        cap = min(self.max_s, self.initial_s * (2**attempt))
        d = rng.uniform(0, cap)
        if retry_after is not None:
            d = max(d, min(retry_after, self.max_s))
        return d


class RequestBudget:
    """The requests, and optionally the money, one job may spend.

    ``max_cost`` (USD, with ``prices`` per million tokens): a request is sent only while what was
    spent, plus what the requests in flight may still cost, plus this request's bound stays within
    it. A request's bound is conservative: one token per two bytes of prompt, and every completion
    token it may use (``max_tokens``)."""

    def __init__(self, limit: int | None, max_cost: float | None = None, prices: dict | None = None):
        if max_cost is not None and not (prices and prices.get("input_per_mtok") is not None
                                         and prices.get("output_per_mtok") is not None):
            raise ConfigError("config: judge.max_cost needs judge.prices (input_per_mtok, output_per_mtok)")
        self.limit, self.used = limit, 0
        self.max_cost, self.prices = max_cost, prices or {}
        self.spent = self.reserved = 0.0

    def cost(self, prompt_tokens: float, completion_tokens: float) -> float:
        p = self.prices
        return (prompt_tokens * (p.get("input_per_mtok") or 0) + completion_tokens * (p.get("output_per_mtok") or 0)) / 1e6

    def take(self, prompt: str = "", max_tokens: int = 0) -> float:
        """Count one request; returns the cost bound reserved for it (0 without max_cost)."""
        if self.limit is not None and self.used >= self.limit:
            raise BudgetExhausted(
                f"the judge's request budget ({self.limit} requests per run, judge.max_requests) is spent; "
                "every verdict so far is cached: rerun to go on, or raise judge.max_requests"
            )
        bound = 0.0
        if self.max_cost is not None:
            bound = self.cost(request_bound(prompt, 0), max_tokens)
            if self.spent + self.reserved + bound > self.max_cost:
                raise BudgetExhausted(
                    f"judge.max_cost = {self.max_cost} USD: {self.spent:.4f} spent and {self.reserved:.4f} in "
                    f"flight; the next request could cost up to {bound:.4f}. Every verdict so far is cached: "
                    "rerun with a higher judge.max_cost to ask only the missing ones"
                )
            self.reserved += bound
        self.used += 1
        return bound

    def settle(self, bound: float, usage) -> None:
        """A request ended: release its reservation, charge what the endpoint reported it used."""
        self.reserved = max(0.0, self.reserved - bound)
        if usage is not None:
            self.spent += self.cost(getattr(usage, "prompt_tokens", 0) or 0, getattr(usage, "completion_tokens", 0) or 0)


class TokenRate:
    """A tokens-per-minute limit (a provider's TPM): a bucket of ``per_minute`` tokens refilled
    continuously; a request waits until its bound fits (a bound larger than the bucket waits for a
    full one), and what it did not use is given back once the endpoint reports its usage."""

    def __init__(self, per_minute: float, clock=time.monotonic, sleep=asyncio.sleep):
        if per_minute <= 0:
            raise ConfigError(f"config: judge.tokens_per_minute = {per_minute}: must be positive")
        self.capacity = float(per_minute)
        self.level = float(per_minute)
        self.clock, self.sleep = clock, sleep
        self.t = clock()

    def _refill(self) -> None:
        now = self.clock()
        self.level = min(self.capacity, self.level + (now - self.t) * self.capacity / 60.0)
        self.t = now

    async def take(self, tokens: float) -> None:
        need = min(tokens, self.capacity)
        while True:
            self._refill()
            if self.level >= need:
                self.level -= tokens  # may go below 0 for an oversized request: later ones wait for it
                return
            await self.sleep((need - self.level) * 60.0 / self.capacity)

    def refund(self, tokens: float) -> None:
        self._refill()
        self.level = min(self.capacity, self.level + max(0.0, tokens))


def request_bound(prompt: str, max_tokens: int) -> float:
    """What a request may use at most, conservatively: one token per two bytes of prompt, and every
    completion token allowed."""
    return len(prompt.encode("utf-8")) / 2 + max_tokens


class AdaptiveLimit:
    """Requests in flight, at most ``ceiling``; under 429s the limit halves (at most once per round
    of requests started at the old limit) and then grows by about one per round of successes
    (additive increase, multiplicative decrease, as TCP does)."""

    def __init__(self, ceiling: int):
        self.ceiling = ceiling
        self.limit = float(ceiling)
        self.active = 0
        self.epoch = 0
        self.trace: list[int] = []  # in-flight count as each request starts
        self._cond: asyncio.Condition | None = None

    async def acquire(self) -> int:
        if self._cond is None:
            self._cond = asyncio.Condition()
        async with self._cond:
            while self.active >= max(1, int(self.limit)):
                await self._cond.wait()
            self.active += 1
            self.trace.append(self.active)
            return self.epoch

    async def release(self, epoch: int, throttled: bool) -> None:
        async with self._cond:
            self.active -= 1
            if throttled:
                if epoch == self.epoch:  # one decrease per congestion event, not one per refused request
                    self.limit = max(1.0, self.limit / 2)
                    self.epoch += 1
            else:
                self.limit = min(float(self.ceiling), self.limit + 1 / max(self.limit, 1.0))
            self._cond.notify_all()


HTTP_CLIENTS = ("aiohttp", "httpx")


def http_client(name: str, timeout_s: float):
    """The SDK's async HTTP client for ``judge.http_client``: ``aiohttp`` (the SDK's aiohttp transport;
    proxies, TLS verification and the SDK's error types as with httpx) or ``httpx`` (None: the SDK's own)."""
    if name not in HTTP_CLIENTS:
        raise ConfigError(f"config: judge.http_client = {name!r}: one of {list(HTTP_CLIENTS)}")
    if name == "httpx":
        return None
    import openai

    try:
        return openai.DefaultAioHttpClient(timeout=timeout_s)
    except RuntimeError as e:  # the SDK without its aiohttp extra
        raise ConfigError(f"config: judge.http_client = aiohttp, but {e}: `pip install 'openai[aiohttp]'`, "
                          "or set judge.http_client: httpx") from None


def api_key_from_env(var: str | None, required: bool) -> str | None:
    if not var:
        if required:
            raise ConfigError("config: judge.openai.api_key_env must name the environment variable holding the key")
        return None
    key = os.environ.get(var)
    if required and not key:
        raise ConfigError(
            f"config: judge.openai.api_key_env = {var!r}, but ${var} is not set; export the key "
            f"(a server that needs none accepts any value: `export {var}=none`)"
        )
    return key


_KEY_ECHO = re.compile(r"(api[ _-]?key[^:]*:\s*)\S+", re.IGNORECASE)


def redact(text: str, secret: str | None) -> str:
    """Scrub a key, and any key a server echoes back ("Incorrect API key provided: sk-..."), from text."""
    if secret:
        text = text.replace(secret, "[redacted]")
    return _KEY_ECHO.sub(r"\1[redacted]", text)


def parse_json_object(content: str | None) -> dict:
    """The JSON object in an answer (a model may wrap it in prose or a code fence)."""
    if not content:
        raise MalformedAnswer("empty answer")
    start, end = content.find("{"), content.rfind("}")
    if start < 0 or end < start:
        raise MalformedAnswer(f"no JSON object in the answer: {content[:80]!r}")
    try:
        # strict=False: a raw newline inside a string (llama.cpp's grammar lets one through) is fine
        data = json.loads(content[start : end + 1], strict=False)
    except json.JSONDecodeError as e:
        raise MalformedAnswer(f"invalid JSON in the answer ({e.msg}): {content[:80]!r}") from None
    if not isinstance(data, dict):
        raise MalformedAnswer("the answer's JSON is not an object")
    return data


def _retry_after(exc) -> float | None:
    response = getattr(exc, "response", None)
    value = response.headers.get("retry-after") if response is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


@dataclass(frozen=True)
class Answer:
    """What an accepted completion was, returned beside the validated value: the SDK's response,
    its text as sent, the temperature of the attempt that produced it (a malformed answer is asked
    again at ``retry_temperature``: the judge keys and keeps its verdicts by it), the tokens every
    attempt used, and the model id the endpoint reported (OpenAI names the snapshot: gpt-4.1 ->
    gpt-4.1-2025-04-14)."""

    response: object
    raw: str | None
    temperature: float
    usage: dict
    served_by: str | None = None


class ChatClient:
    def __init__(self, endpoint: Endpoint, policy: RetryPolicy, budget: RequestBudget, in_flight: int,
                 seed: int = 0, rate: TokenRate | None = None):
        from openai import AsyncOpenAI

        if in_flight < 1:
            raise ConfigError(f"config: judge.in_flight = {in_flight}: at least 1")
        self.endpoint, self.policy, self.budget, self.in_flight = endpoint, policy, budget, in_flight
        self._client = AsyncOpenAI(
            api_key=endpoint.api_key or "none",
            base_url=endpoint.base_url,
            timeout=endpoint.timeout_s,
            max_retries=0,
            http_client=http_client(endpoint.http_client, endpoint.timeout_s),
        )
        self._slots = AdaptiveLimit(in_flight)
        self.rate = rate
        self._rng = random.Random(seed)
        self.stats: Counter = Counter()

    def _request(self, prompt: str, json_schema: dict | None, logprobs: bool, temperature: float,
                 strict: bool = True) -> dict:
        ep = self.endpoint
        kwargs = {
            "model": ep.model,
            **({"prompt": prompt} if ep.api == "completion" else {"messages": [{"role": "user", "content": prompt}]}),
            "temperature": temperature,
            # the legacy /completions takes max_tokens only
            (ep.max_tokens_field if ep.api == "chat" else "max_tokens"): ep.max_tokens,
        }
        if ep.seed is not None:
            kwargs["seed"] = ep.seed
        if ep.stop:
            kwargs["stop"] = list(ep.stop)
        # response_format goes in extra_body: it is plain JSON already, and the SDK's typed transform
        # of a nested schema costs more CPU than the rest of the request (bench/judge.py)
        if json_schema is not None and ep.structured_output == "json_schema":
            kwargs["extra_body"] = {"response_format": {
                "type": "json_schema",
                "json_schema": {"name": json_schema.get("title", "answer"), "schema": json_schema, "strict": strict},
            }}
        elif json_schema is not None and ep.structured_output == "json_object":
            kwargs["extra_body"] = {"response_format": {"type": "json_object", "schema": json_schema}}
        if logprobs:
            kwargs["logprobs"] = True
            kwargs["top_logprobs"] = ep.top_logprobs
        return kwargs

    async def complete(self, prompt: str, validate: Callable, *, json_schema: dict | None = None,
                       logprobs: bool = False, strict: bool = True):
        """Ask until ``validate(content)`` accepts an answer; return (validated value, :class:`Answer`).

        ``strict=False`` sends a JSON schema OpenAI's strict mode would refuse (optional fields,
        defaults: RAGAS's output models); the answer is still validated here."""
        import openai

        transient = malformed = 0
        temperature = self.endpoint.temperature
        used = {"prompt_tokens": 0, "completion_tokens": 0, "attempts": 0}
        while True:
            bound = self.budget.take(prompt, self.endpoint.max_tokens)
            self.stats["requests"] += 1
            used["attempts"] += 1
            tokens = request_bound(prompt, self.endpoint.max_tokens)
            if self.rate is not None:
                await self.rate.take(tokens)
            epoch = await self._slots.acquire()
            resp, throttled, wait = None, False, None
            try:
                create = self._client.completions.create if self.endpoint.api == "completion" \
                    else self._client.chat.completions.create
                resp = await create(**self._request(prompt, json_schema, logprobs, temperature, strict))
            except (openai.RateLimitError, openai.InternalServerError, openai.APITimeoutError,
                    openai.APIConnectionError) as e:
                throttled = isinstance(e, openai.RateLimitError)
                kind = _transient_kind(e)
                self.stats[kind] += 1
                if transient >= self.policy.max_retries:
                    raise JudgeError(
                        f"{self.endpoint.role} endpoint {self._where()}: {kind} on {transient + 1} attempts in a row "
                        f"({redact(_detail(e, kind), self.endpoint.api_key)}); raise its max_retries or check the server"
                    ) from None
                wait = self.policy.delay(transient, _retry_after(e), self._rng)
                transient += 1
                log.debug("%s; retry %d in %.2f s", kind, transient, wait)
            except openai.APIStatusError as e:
                raise JudgeError(
                    f"{self.endpoint.role} endpoint {self._where()} refused the request: HTTP {e.status_code}: "
                    f"{redact(str(e.message), self.endpoint.api_key)}{_hint(e.status_code)}"
                ) from None
            finally:
                await self._slots.release(epoch, throttled)
                usage = getattr(resp, "usage", None)
                self.budget.settle(bound, usage)
                if self.rate is not None and usage is not None:
                    self.rate.refund(tokens - (getattr(usage, "total_tokens", None)
                                               or (usage.prompt_tokens or 0) + (usage.completion_tokens or 0)))
                if usage is not None:
                    for k in ("prompt_tokens", "completion_tokens"):
                        n = getattr(usage, k, 0) or 0
                        used[k] += n
                        self.stats[k] += n
            self.stats["in_flight_limit"] = round(self._slots.limit, 2)
            if wait is not None:  # the backoff sleeps outside the in-flight slot
                await asyncio.sleep(wait)
                continue
            content = None if not resp.choices else (
                resp.choices[0].text if self.endpoint.api == "completion" else resp.choices[0].message.content)
            try:
                value = validate(content)
                return value, Answer(resp, content, temperature, dict(used), getattr(resp, "model", None))
            except MalformedAnswer as e:
                if resp.choices and resp.choices[0].finish_reason == "length":
                    e = MalformedAnswer(f"{e}; the answer was cut at max_tokens = {self.endpoint.max_tokens}")
                self.stats["malformed"] += 1
                malformed += 1
                log.info("malformed judge answer (%s)%s", e,
                         "; asking again" if malformed <= self.policy.malformed_retries else "")
                if malformed > self.policy.malformed_retries:
                    raise MalformedAnswer(f"{e} (after {malformed} answers)") from None
                temperature = max(temperature, self.endpoint.retry_temperature)

    def _where(self) -> str:
        return f"{self.endpoint.base_url or 'https://api.openai.com/v1'} (model {self.endpoint.model})"

    async def aclose(self) -> None:
        await self._client.close()


def _causes(e):
    """``e`` and the exceptions it was raised from, outermost first."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        yield e
        e = e.__cause__ or e.__context__


def _transient_kind(e) -> str:
    import openai

    if isinstance(e, openai.RateLimitError):
        return "http_429"
    if isinstance(e, openai.InternalServerError):
        return "http_5xx"
    # a timeout is a timeout all the way down: the aiohttp transport reports a refused or dropped
    # connection as httpx's ConnectTimeout too, with the socket's own error beneath it
    if isinstance(e, openai.APITimeoutError) and any(isinstance(c, TimeoutError) for c in _causes(e)):
        return "timeout"
    return "connection_error"


def _detail(e, kind: str) -> str:
    """What went wrong, for a message: the SDK's words, or for a failed connection the socket's own
    ("Connect call failed", "Server disconnected") where the SDK only says "Connection error."."""
    if kind == "connection_error":
        said = [c for c in _causes(e) if str(c)]
        if said:
            return str(said[-1])
    return str(e)


def _hint(status: int) -> str:
    return {
        401: " (check the key in the environment variable judge.openai.api_key_env names)",
        403: " (the key may lack access to this model)",
        404: " (check judge.openai.model and judge.openai.base_url; OpenAI-compatible servers end in /v1)",
        400: " (the server may not support a field we send: try judge.openai.structured_output: none "
        "or logprobs: false)",
    }.get(status, "")
