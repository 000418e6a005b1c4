"""deepeval's view of our endpoint: a ``DeepEvalBaseLLM`` whose calls go through :class:`ChatClient`.

GEval asks it for a schema-shaped answer (deepeval's documented custom-model path: ``a_generate``
with a pydantic ``schema``). The answer is validated here, so a malformed one is retried by the client
and never reaches deepeval as a score. Each verdict gets its own :meth:`EndpointJudge.fresh` copy
(one client shared), which keeps the :class:`~tunejudge.llm.client.Answer` it received: the runner
reads the raw completion, its temperature, the tokens used and, when the judge asks for logprobs
on the same request, the token distribution it weights the score by (:mod:`.scores`; deepeval's
own weighting sums every number token, so that small step is ours).
"""

from __future__ import annotations

import contextlib

from deepeval.models import DeepEvalBaseLLM

from ..llm import backends
from ..llm.client import Answer, ChatClient, MalformedAnswer, parse_json_object  # noqa: F401 (re-exported)
from .metrics import GEVAL_RANGE

VERDICT_SCHEMA = "ReasonScore"  # the name of GEval's answer model (reason, score)


def check_score(data: dict) -> dict:
    """GEval's answer: a reason and an integer score within its range."""
    lo, hi = GEVAL_RANGE
    score, reason = data.get("score"), data.get("reason")
    if isinstance(score, bool) or not isinstance(score, (int, float)) or not lo <= score <= hi:
        raise MalformedAnswer(f"'score' must be a number from {lo} to {hi}, got {score!r}")
    if not isinstance(reason, str) or not reason.strip():
        raise MalformedAnswer("'reason' must be a non-empty string")
    return data


def verdict_schema(reason_max_chars: int | None) -> dict:
    """The JSON schema sent as response_format for GEval's answer: its score range, a bounded reason."""
    reason: dict = {"type": "string"}
    if reason_max_chars:
        reason["maxLength"] = reason_max_chars  # bounds a grammar-constrained local model's output
    lo, hi = GEVAL_RANGE
    return {
        "title": VERDICT_SCHEMA,
        "type": "object",
        # an enum, not minimum/maximum: llama.cpp's grammar enforces the former only
        "properties": {"reason": reason, "score": {"type": "integer", "enum": list(range(lo, hi + 1))}},
        "required": ["reason", "score"],
        "additionalProperties": False,
    }


def answer_schema(schema_cls, reason_max_chars: int | None) -> dict:
    """The JSON schema sent as response_format for a pydantic answer model deepeval asks for."""
    if schema_cls.__name__ == VERDICT_SCHEMA:
        return verdict_schema(reason_max_chars)
    schema = schema_cls.model_json_schema()
    schema.setdefault("additionalProperties", False)
    return schema


class EndpointJudge(DeepEvalBaseLLM):
    """The judge as deepeval sees it. ``answer`` and ``verdict`` hold the last accepted completion and,
    for GEval's answer, its JSON: use one :meth:`fresh` copy per verdict."""

    def __init__(self, client: ChatClient, label: str, reason_max_chars: int | None = None,
                 example_verdict: bool = True):
        self.client = client
        self.label = label
        self.reason_max_chars = reason_max_chars
        self.example_verdict = example_verdict  # False: GEval's prompt without its example JSON
        self.answer: Answer | None = None
        self.verdict: dict | None = None
        super().__init__(label)

    def fresh(self) -> EndpointJudge:
        """A copy for one verdict: the same client and settings, nothing received yet."""
        return EndpointJudge(self.client, self.label, self.reason_max_chars, self.example_verdict)

    @property
    def logprobs(self) -> bool:
        return bool(self.client.endpoint.logprobs)

    def load_model(self):
        return self

    def get_model_name(self) -> str:
        return self.label

    def generate(self, prompt: str, schema=None):
        raise NotImplementedError("tunejudge judges asynchronously: use GEval.a_measure")

    def verdict_request(self) -> dict:
        """How a verdict is asked (beside its prompt): the batch pass sends exactly this."""
        return {"json_schema": verdict_schema(self.reason_max_chars), "logprobs": self.logprobs}

    async def a_generate(self, prompt: str, schema=None):
        if schema is None:
            value, self.answer = await self.client.complete(prompt, _nonempty)
            return value
        if schema.__name__ == VERDICT_SCHEMA:
            data, self.answer = await self.client.complete(prompt, check_score_json, **self.verdict_request())
            self.verdict = data
            return schema.model_validate(data)

        def validate(content):
            data = parse_json_object(content)
            try:
                return schema.model_validate(data)
            except Exception as e:  # pydantic's ValidationError, kept short
                raise MalformedAnswer(f"answer does not fit {schema.__name__}: {str(e).splitlines()[0]}") from None

        value, self.answer = await self.client.complete(
            prompt, validate, json_schema=answer_schema(schema, self.reason_max_chars))
        return value


def check_score_json(content) -> dict:
    return check_score(parse_json_object(content))


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
