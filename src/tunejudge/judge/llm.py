"""deepeval's view of our endpoint: a ``DeepEvalBaseLLM`` whose calls go through :class:`ChatClient`.

GEval asks for a raw completion with logprobs when the model offers one (probability-weighted
score), otherwise for a schema-shaped answer. Both paths validate the answer here, so a malformed
one is retried by the client and never reaches deepeval as a score.
"""

from __future__ import annotations

import contextlib

from deepeval.models import DeepEvalBaseLLM

from ..llm import backends
from ..llm.client import ChatClient, MalformedAnswer, parse_json_object  # noqa: F401 (re-exported)
from .metrics import GEVAL_RANGE


def check_score(data: dict) -> dict:
    """GEval's answer: a reason and an integer score within its range."""
    lo, hi = GEVAL_RANGE
    score, reason = data.get("score"), data.get("reason")
    if isinstance(score, bool) or not isinstance(score, (int, float)) or not lo <= score <= hi:
        raise MalformedAnswer(f"'score' must be a number from {lo} to {hi}, got {score!r}")
    if not isinstance(reason, str) or not reason.strip():
        raise MalformedAnswer("'reason' must be a non-empty string")
    return data


def answer_schema(schema_cls, reason_max_chars: int | None) -> dict:
    """The JSON schema sent as response_format: GEval's answer gets its score range and a bounded reason."""
    if schema_cls.__name__ == "ReasonScore":
        reason: dict = {"type": "string"}
        if reason_max_chars:
            reason["maxLength"] = reason_max_chars  # bounds a grammar-constrained local model's output
        lo, hi = GEVAL_RANGE
        return {
            "title": "ReasonScore",
            "type": "object",
            # an enum, not minimum/maximum: llama.cpp's grammar enforces the former only
            "properties": {"reason": reason, "score": {"type": "integer", "enum": list(range(lo, hi + 1))}},
            "required": ["reason", "score"],
            "additionalProperties": False,
        }
    schema = schema_cls.model_json_schema()
    schema.setdefault("additionalProperties", False)
    return schema


class EndpointJudge(DeepEvalBaseLLM):
    def __init__(self, client: ChatClient, label: str, reason_max_chars: int | None = None,
                 example_verdict: bool = True):
        self.client = client
        self.label = label
        self.reason_max_chars = reason_max_chars
        self.example_verdict = example_verdict  # False: GEval's prompt without its example JSON
        super().__init__(label)

    def load_model(self):
        return self

    def get_model_name(self) -> str:
        return self.label

    def generate(self, prompt: str, schema=None):
        raise NotImplementedError("tunejudge judges asynchronously: use GEval.a_measure")

    async def a_generate(self, prompt: str, schema=None):
        if schema is None:
            value, _ = await self.client.complete(prompt, _nonempty)
            return value

        def validate(content):
            data = parse_json_object(content)
            if schema.__name__ == "ReasonScore":
                check_score(data)
            try:
                return schema.model_validate(data)
            except Exception as e:  # pydantic's ValidationError, kept short
                raise MalformedAnswer(f"answer does not fit {schema.__name__}: {str(e).splitlines()[0]}") from None

        value, _ = await self.client.complete(
            prompt, validate, json_schema=answer_schema(schema, self.reason_max_chars)
        )
        return value

    async def a_generate_raw_response(self, prompt: str, top_logprobs: int = 20, **_):
        """GEval's probability-weighted path; an AttributeError sends GEval to its plain path."""
        if not self.client.endpoint.logprobs:
            raise AttributeError("logprobs are off for this judge")
        from deepeval.metrics.g_eval.schema import ReasonScore

        def validate(content):
            return check_score(parse_json_object(content))

        _, resp = await self.client.complete(
            prompt, validate, json_schema=answer_schema(ReasonScore, self.reason_max_chars), logprobs=True
        )
        if not (resp.choices[0].logprobs and resp.choices[0].logprobs.content):
            self.client.stats["no_logprobs"] += 1  # the endpoint ignored the request: GEval keeps the raw score
        return resp, 0.0


def _nonempty(content):
    if not content or not content.strip():
        raise MalformedAnswer("empty answer")
    return content


def _judge_model(cfg: dict, label: str, make_client, local: bool) -> EndpointJudge:
    if not local:
        return EndpointJudge(make_client(), label)
    return EndpointJudge(make_client(), label, reason_max_chars=cfg["local"]["reason_max_chars"], example_verdict=False)


def connector(cfg: dict, budget, *, threads: int = 2, server_log=None):
    """A context-manager factory yielding the deepeval model; the local server starts on entry."""
    judge = backends.identity(cfg)

    @contextlib.contextmanager
    def connect():
        with backends.open_client(cfg, budget, threads=threads, server_log=server_log) as (make_client, local):
            yield _judge_model(cfg, judge.model, make_client, local)

    return connect


@contextlib.contextmanager
def shared_connector(cfg: dict, budget, *, threads: int = 2, server_log=None):
    """Like :func:`connector`, for a job that judges several answer sets (the controls' arms): every entry
    gets a fresh client, and all of them one local server, started at the first entry that has something
    to ask and stopped when this context ends."""
    judge = backends.identity(cfg)
    with contextlib.ExitStack() as stack:
        opened: list = []

        @contextlib.contextmanager
        def connect():
            if not opened:
                opened.append(stack.enter_context(backends.open_client(cfg, budget, threads=threads,
                                                                       server_log=server_log)))
            make_client, local = opened[0]
            yield _judge_model(cfg, judge.model, make_client, local)

        yield connect
