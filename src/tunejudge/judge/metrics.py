"""Judge metrics: config -> deepeval GEval, and the test case each judged answer becomes."""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass

from ..errors import ConfigError

# test-case fields a metric may see, by their deepeval names
PARAMS = ("input", "actual_output", "expected_output")
GEVAL_RANGE = (0, 10)  # GEval's integer score range without a rubric; kept 0-1, reported 0-5


@dataclass(frozen=True)
class MetricSpec:
    name: str
    evaluation_steps: tuple[str, ...]
    params: tuple[str, ...]

    @classmethod
    def from_config(cls, cfg: dict, where: str = "judge.metrics") -> MetricSpec:
        name = cfg.get("name")
        if not isinstance(name, str) or not name:
            raise ConfigError(f"config: {where}: every metric needs a name")
        steps = cfg.get("evaluation_steps") or []
        if not steps or not all(isinstance(s, str) and s.strip() for s in steps):
            raise ConfigError(f"config: {where}.{name}.evaluation_steps: a non-empty list of strings")
        params = tuple(cfg.get("params") or ())
        bad = [p for p in params if p not in PARAMS]
        if bad or "actual_output" not in params:
            raise ConfigError(
                f"config: {where}.{name}.params = {list(params)}: choose from {list(PARAMS)}, "
                "and include actual_output (the answer being judged)"
            )
        return cls(name, tuple(steps), params)

    def definition(self) -> dict:
        return {"name": self.name, "evaluation_steps": list(self.evaluation_steps), "params": list(self.params)}

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.definition(), sort_keys=True).encode()).hexdigest()[:16]

    def geval(self, model, example_verdict: bool = True, defences: tuple[str, ...] = (), token: str | None = None):
        """A fresh deepeval ``GEval`` (it keeps per-call state, so one per judged answer), built as its
        documentation shows; the template is GEval's own, or a subclass of its public ``GEvalTemplate``.

        ``example_verdict=False`` drops the example JSON from GEval's prompt: a 135M model copies
        it verbatim (score 0, "your concise and informative reason here") whatever it judges.
        ``defences`` (:mod:`.defences`) add their notes around the test case; ``token`` is the request's
        boundary token (:func:`boundary_token`).
        """
        from deepeval.metrics import GEval
        from deepeval.test_case import SingleTurnParams

        template = None if example_verdict else _template_without_example()
        if defences:
            template = _guarded_template(template, defences, token)
        extra = {} if template is None else {"evaluation_template": template}
        return GEval(
            name=self.name,
            evaluation_steps=list(self.evaluation_steps),
            evaluation_params=[SingleTurnParams(p) for p in self.params],
            model=model,
            async_mode=True,
            verbose_mode=False,
            **extra,
        )


_NO_EXAMPLE = None


def _template_without_example():
    """GEval's own prompt template, minus its example verdict (the JSON schema still fixes the shape)."""
    global _NO_EXAMPLE
    if _NO_EXAMPLE is None:
        from deepeval.metrics.g_eval import GEvalTemplate

        class GEvalTemplateNoExample(GEvalTemplate):
            @staticmethod
            def generate_evaluation_results(**kwargs):
                text = GEvalTemplate.generate_evaluation_results(**kwargs)
                head, sep, _ = text.partition("**Example JSON:**")
                return head + "JSON:" if sep else text

        _NO_EXAMPLE = GEvalTemplateNoExample
    return _NO_EXAMPLE


def _guarded_template(base, defences: tuple[str, ...], token: str | None):
    """GEval's template (``base``, or deepeval's own) with the defences' notes around the test case."""
    from deepeval.metrics.g_eval import GEvalTemplate

    from .defences import guard_prompt

    base = base or GEvalTemplate

    class Guarded(base):
        @staticmethod
        def generate_evaluation_results(**kwargs):
            return guard_prompt(base.generate_evaluation_results(**kwargs), defences, token,
                                before="Test Case:\n", after="Parameters:\n")

    return Guarded


def boundary_token(metric: MetricSpec, item: dict) -> str:
    """The boundary of one request: a token from the metric and the item's texts (:mod:`.defences`)."""
    from .defences import token_for

    return token_for(metric.name, item["instruction"], item.get("input") or "", item["output"], item["response"])


def render_prompts(metric: MetricSpec, items: list[dict], *, example_verdict: bool = True,
                   logprobs: bool = False, defences: tuple[str, ...] = ()) -> list[str]:
    """The prompt deepeval's GEval sends for each item, rendered by deepeval itself: GEval measures
    each item with a model that keeps the prompt it is asked and answers the lowest score (nothing
    is sent anywhere). What a deepeval upgrade rewords, the cache key sees. ``logprobs`` does not
    change the prompt (the judge asks for them on the same request); it is accepted with the other
    prompt flags (:func:`tunejudge.judge.runner.prompt_flags`)."""
    import asyncio

    from deepeval.models import DeepEvalBaseLLM

    class PromptRecorder(DeepEvalBaseLLM):
        def __init__(self):
            self.prompts: list[str] = []
            super().__init__("prompt-recorder")

        def load_model(self):
            return self

        def get_model_name(self) -> str:
            return "prompt-recorder"

        def generate(self, prompt: str, schema=None):
            raise NotImplementedError("tunejudge judges asynchronously: use GEval.a_measure")

        async def a_generate(self, prompt: str, schema=None):
            self.prompts.append(prompt)
            return schema(score=GEVAL_RANGE[0], reason="recorded") if schema is not None else "recorded"

    async def one(item):
        token = boundary_token(metric, item) if "boundary" in defences else None
        recorder = PromptRecorder()
        await metric.geval(recorder, example_verdict=example_verdict, defences=defences, token=token).a_measure(
            test_case(item, token), _show_indicator=False)
        if len(recorder.prompts) != 1:  # GEval with evaluation steps asks once per test case
            raise RuntimeError(f"deepeval GEval ({metric.name}) asked its model {len(recorder.prompts)} times "
                               "for one verdict; this deepeval version is not supported")
        return recorder.prompts[0]

    async def every():
        return await asyncio.gather(*(one(it) for it in items))

    return asyncio.run(every())


def template_of(metric: MetricSpec, *, example_verdict: bool = True, logprobs: bool = False,
                defences: tuple[str, ...] = ()) -> str:
    """The metric's GEval prompt with placeholders where an item's texts go (and ``{token}`` for a boundary)."""
    item = {"instruction": "{input}", "input": "", "output": "{expected_output}", "response": "{actual_output}"}
    prompt = render_prompts(metric, [item], example_verdict=example_verdict, logprobs=logprobs, defences=defences)[0]
    return prompt.replace(boundary_token(metric, item), "{token}") if "boundary" in defences else prompt


@functools.cache
def deepeval_version() -> str:
    """Installed deepeval's version: part of every verdict's cache key, read once per process (reading
    a package's metadata parses its METADATA file: 1.5 ms, once per verdict before)."""
    import importlib.metadata

    return importlib.metadata.version("deepeval")


def load_metrics(cfgs: list[dict]) -> list[MetricSpec]:
    metrics = [MetricSpec.from_config(c) for c in cfgs]
    names = [m.name for m in metrics]
    if len(set(names)) != len(names):
        raise ConfigError(f"config: judge.metrics: duplicate metric names in {names}")
    if not metrics:
        raise ConfigError("config: judge.metrics: at least one metric")
    return metrics


def case_input(item: dict) -> str:
    """What the judge sees as the user's request: the instruction, then its input if any."""
    if item.get("input"):
        return f"{item['instruction']}\n\n{item['input']}"
    return item["instruction"]


def test_case(item: dict, token: str | None = None):
    """The deepeval test case of a judged answer; with a boundary ``token``, every text wrapped in it."""
    from deepeval.test_case import LLMTestCase

    from .defences import wrap

    texts = [case_input(item), item["response"], item["output"]]
    if token is not None:
        texts = [wrap(x, token) for x in texts]
    return LLMTestCase(input=texts[0], actual_output=texts[1], expected_output=texts[2])


def to_five(score01: float) -> float:
    return round(score01 * 5, 4)
