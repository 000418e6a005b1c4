"""Pairwise judging, MT-Bench style: two answers side by side, asked in both orders.

For each pair of models in ``analysis.pairs``, each test item and each judge metric, the judge sees
the instruction, the input, the reference answer (where the metric's params include it), the
metric's evaluation steps and two answers labelled A and B, and names the better one or a tie, with
a reason (``{"reason", "winner": "A" | "B" | "tie"}``, a JSON schema bounds it). Every comparison is
asked twice, the second time with the answers swapped; a verdict that changes with the order is a
tie, and counted as a position inconsistency. An empty answer loses to a non-empty one (two empty
answers tie) without a request.

Verdicts share the answer store, retries, budget and client of the pointwise judge; the cache key
holds the judge's identity and the sha256 of the rendered prompt (which holds everything else).
The prompt is this project's own (:data:`PROMPT`), written beside the verdicts.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import Counter

from tqdm import tqdm

from ..llm.client import MalformedAnswer, parse_json_object
from ..llm.store import AnswerStore, cache_key
from .defences import guard_prompt, token_for, wrap
from .metrics import MetricSpec, case_input

log = logging.getLogger("tunejudge.judge")

PROMPT = """You are comparing two answers to the same request, on one criterion only: {metric}.

Evaluation steps for {metric}:
{steps}

Request:
{request}
{reference}
[Answer A]
{first}
[End of answer A]

[Answer B]
{second}
[End of answer B]

Judge only by the evaluation steps. Do not let the order of the answers or their length decide.
Reply with a JSON object: "reason" (one or two sentences) and "winner": "A", "B" or "tie".
JSON:"""

EMPTY_REASON = "An empty answer loses to a non-empty one; two empty answers tie (no request)."


def schema(reason_max_chars: int | None = None) -> dict:
    reason: dict = {"type": "string"}
    if reason_max_chars:
        reason["maxLength"] = reason_max_chars
    return {"title": "PairwiseVerdict", "type": "object", "additionalProperties": False,
            "required": ["reason", "winner"],
            "properties": {"reason": reason, "winner": {"type": "string", "enum": ["A", "B", "tie"]}}}


def check_verdict(content) -> dict:
    data = parse_json_object(content)
    winner = str(data.get("winner", "")).strip()
    winner = {"a": "A", "b": "B", "tie": "tie"}.get(winner.lower())
    if winner is None:
        raise MalformedAnswer(f"'winner' must be A, B or tie, got {data.get('winner')!r}")
    reason = data.get("reason")
    if not isinstance(reason, str) or not reason.strip():
        raise MalformedAnswer("'reason' must be a non-empty string")
    return {"reason": reason.strip(), "winner": winner}


def render(metric: MetricSpec, item: dict, first: str, second: str, defences: tuple[str, ...] = ()) -> str:
    """The pairwise prompt; with ``defences`` (:mod:`.defences`) every untrusted text within a boundary
    and the notes around them."""
    steps = "\n".join(f"{i}. {s}" for i, s in enumerate(metric.evaluation_steps, 1))
    texts = [case_input(item), item["output"], first, second]
    token = token_for(metric.name, *texts) if "boundary" in defences else None
    if token:
        texts = [wrap(x, token) for x in texts]
    request, expected, first, second = texts
    reference = (f"\nReference answer:\n{expected}\n" if "expected_output" in metric.params else "")
    prompt = PROMPT.format(metric=metric.name, steps=steps, request=request, reference=reference,
                           first=first, second=second)
    return guard_prompt(prompt, defences, token, before="Request:\n", after="Judge only by the evaluation steps.")


def template(metric: MetricSpec, defences: tuple[str, ...] = ()) -> str:
    """The metric's pairwise prompt with placeholders where the item's texts go."""
    item = {"instruction": "{input}", "input": "", "output": "{expected_output}"}
    return render(metric, item, "{answer_a}", "{answer_b}", defences)


def pair_connector(cfg: dict, *, threads: int, server_log=None):
    """A context-manager factory yielding the judge's client factory (the local server runs inside)."""
    import contextlib

    from ..llm import backends

    @contextlib.contextmanager
    def connect():
        with backends.open_client(cfg, backends.budget(cfg), threads=threads, server_log=server_log) as (make_client, _):
            yield make_client

    return connect


def reason_chars(cfg: dict, pairwise: dict) -> int | None:
    """The bound on a pairwise reason: judge.pairwise.reason_max_chars, else the local judge's."""
    chars = (pairwise or {}).get("reason_max_chars")
    if chars is None and cfg["backend"] == "local":
        chars = cfg["local"]["reason_max_chars"]
    return chars


def pair_key(judge_parts: dict, prompt: str) -> str:
    return cache_key("pairwise", {"judge": judge_parts,
                                  "prompt_sha256": hashlib.sha256(prompt.encode("utf-8")).hexdigest()})


def combine(first: str | None, second: str | None) -> tuple[str, bool]:
    """(verdict for a: 'a' | 'b' | 'tie', consistent) from the winner in order (a, b) and in (b, a)."""
    as_a = {"A": "a", "B": "b", "tie": "tie"}[first]
    swapped = {"A": "b", "B": "a", "tie": "tie"}[second]
    if as_a == swapped:
        return as_a, True
    return "tie", False


def plan(a: str, b: str, answers: list[dict], metrics: list[MetricSpec], judge_parts: dict, cache: AnswerStore,
         defences: tuple[str, ...] = ()):
    """(rows settled by rule or cache, keyed (id, metric); the (key, prompt) pairs to ask; per
    (id, metric) the two (key, prompt) it needs)."""
    settled, needs, todo = {}, {}, {}
    for row in answers:
        ra, rb = row[f"model {a}"], row[f"model {b}"]
        for metric in metrics:
            k = (row["id"], metric.name)
            if not ra.strip() or not rb.strip():
                verdict = "tie" if not ra.strip() and not rb.strip() else ("b" if not ra.strip() else "a")
                settled[k] = {"verdict": verdict, "consistent": None, "first": None, "second": None,
                              "reason": EMPTY_REASON}  # by rule: no order asked, nothing to be consistent with
                continue
            asks = []
            for x, y in ((ra, rb), (rb, ra)):
                prompt = render(metric, row, x, y, defences)
                asks.append((pair_key(judge_parts, prompt), prompt))
            needs[k] = asks
    hits = cache.get_many(key for asks in needs.values() for key, _ in asks)
    for asks in needs.values():
        for key, prompt in asks:
            if key not in hits:
                todo[key] = prompt
    return settled, needs, hits, todo


def judge_pair(a: str, b: str, answers: list[dict], metrics: list[MetricSpec], judge, cache: AnswerStore,
               connect, in_flight: int, reason_max_chars: int | None = None, progress_file=None,
               max_requests: int | None = None, defences: tuple[str, ...] = ()) -> tuple[list[dict], dict]:
    """Rows for one model pair: one per (item, metric), in test-set then metric order."""
    from ..llm.client import JudgeError

    parts = judge.key_parts()
    settled, needs, hits, todo = plan(a, b, answers, metrics, parts, cache, defences)
    stats = Counter(items=len(answers), comparisons=len(settled) + len(needs), by_rule=len(settled),
                    cached=sum(1 for asks in needs.values() for k, _ in asks if k in hits), asked=len(todo))
    if max_requests is not None and len(todo) > max_requests:
        raise JudgeError(f"pairwise {a} vs {b}: {len(todo)} verdicts to ask, more than judge.max_requests = "
                         f"{max_requests}; nothing was sent")
    errors: dict = {}
    if todo:
        with connect() as make_client, tqdm(total=len(todo), desc=f"pairwise {a} vs {b}", unit="verdict",
                                            file=progress_file, mininterval=1.0) as bar:
            got, errors, client_stats = asyncio.run(_ask(todo, make_client, cache, in_flight,
                                                         schema(reason_max_chars), bar))
            hits.update(got)
            stats.update(client_stats)
    rows = []
    for row in answers:
        for metric in metrics:
            k = (row["id"], metric.name)
            base = {"id": row["id"], "source": row["source"], "pair": f"{a} vs {b}", "a": a, "b": b,
                    "metric": metric.name, "judge": judge.row()}
            if k in settled:
                rows.append({**base, **settled[k]})
                continue
            (k1, _), (k2, _) = needs[k]
            v1, v2 = hits.get(k1), hits.get(k2)
            if v1 is None or v2 is None:
                rows.append({**base, "verdict": None, "consistent": None, "first": None, "second": None,
                             "error": errors.get(k1) or errors.get(k2), "cache_keys": [k1, k2]})
                continue
            verdict, consistent = combine(v1["winner"], v2["winner"])
            row = {**base, "verdict": verdict, "consistent": consistent, "first": v1["winner"],
                   "second": v2["winner"], "reason": v1["reason"], "reason_swapped": v2["reason"],
                   "cache_keys": [k1, k2]}
            if v1.get("usage") or v2.get("usage"):
                row["usage"] = {t: (v1.get("usage") or {}).get(t, 0) + (v2.get("usage") or {}).get(t, 0)
                                for t in ("prompt_tokens", "completion_tokens")}
            rows.append(row)
    stats["errors"] = sum(1 for r in rows if r.get("error"))
    stats["inconsistent"] = sum(1 for r in rows if r.get("consistent") is False)
    return rows, dict(stats)


async def _ask(todo: dict, make_client, cache: AnswerStore, in_flight: int, schema_: dict, bar):
    client = make_client()
    queue: asyncio.Queue = asyncio.Queue()
    for item in todo.items():
        queue.put_nowait(item)
    got, errors = {}, {}

    async def worker():
        while True:
            try:
                key, prompt = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            try:
                verdict, answer = await client.complete(prompt, check_verdict, json_schema=schema_)
            except MalformedAnswer as e:
                errors[key] = f"malformed pairwise answer: {e}"
            else:
                if answer.usage:
                    verdict["usage"] = answer.usage
                # committed now, so an interrupt loses nothing judged; in a thread, so the other requests'
                # work goes on while the file is flushed to disk (as the pointwise runner does)
                await asyncio.to_thread(cache.put, key, "pairwise", verdict)
                got[key] = verdict
            bar.update(1)

    try:
        await asyncio.gather(*(worker() for _ in range(in_flight)))
    finally:
        await client.aclose()
    return got, errors, dict(client.stats)
