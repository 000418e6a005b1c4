"""Judge every answer of one model on every metric: cache first, then N requests in flight.

One row per (item, metric), in test-set order then metric order, whatever order answers arrive:
``{"id", "source", "model", "metric", "score" (0-1), "score_5" (0-5), "reason", "weighting"
("logprobs" | "plain"), "dropped_mass", "raw", "judge", "cache_key"}`` (``raw``: the judge's
completion as sent; ``dropped_mass``: the probability the judge put on numbers outside the score
range, left out of the weighted score, :mod:`.scores`; ``attempt_temperature`` where a malformed
answer was asked again less greedily), plus ``"error"`` (and null scores) where the judge could not
give a well-formed verdict. Errors are not cached, so the next run asks again. No score outside its
range is ever cached or returned.

A verdict's cache key holds everything that decides it: the judge (backend, model, decoding settings,
the local weights' sha256), the metric, the deepeval version, the sha256 of the prompt deepeval
renders for the item (``metrics.render_prompts``) and, for logprob-weighted judges, the weighting rule. A verdict obtained on a retry at another
temperature is stored under a key with that temperature; the greedy key then records only that the
greedy answer was malformed, so a rerun finds the retry's verdict and a changed retry setting asks again.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import Counter

from tqdm import tqdm

from ..llm.backends import LLMIdentity
from ..llm.client import JudgeError, MalformedAnswer
from ..llm.store import AnswerStore, cache_key
from .defences import label
from .metrics import (
    GEVAL_RANGE,
    MetricSpec,
    boundary_token,
    deepeval_version,
    render_prompts,
    test_case,
    to_five,
)
from .scores import PLAIN, WEIGHTING_RULE, logprobs_of, score_problem, verdict_weighting

log = logging.getLogger("tunejudge.judge")

EMPTY_REASON = "The model gave an empty answer; scored 0 without asking the judge."


def prompt_flags(judge: LLMIdentity, defences: tuple[str, ...] = ()) -> dict:
    """How the judge's deepeval model shapes GEval's prompt: the local model gets it without the
    example verdict (judge.llm.connector); logprobs send GEval down its raw-response path; the
    defences (judge.defences, :mod:`.defences`) add their notes and boundaries."""
    settings = dict(judge.settings)
    flags = {"example_verdict": judge.backend != "local", "logprobs": bool(settings.get("logprobs"))}
    return {**flags, "defences": tuple(defences)} if defences else flags


def prompt_templates(metrics: list[MetricSpec], judge: LLMIdentity, defences: tuple[str, ...] = ()) -> dict:
    """What the judge was asked, per metric: deepeval's GEval prompt with placeholders for the item's
    texts, and the deepeval version that rendered it (written beside the verdicts)."""
    from .metrics import template_of

    flags = prompt_flags(judge, defences)
    out = {"deepeval": deepeval_version(), **{k: list(v) if k == "defences" else v for k, v in flags.items()},
           "metrics": {}}
    for m in metrics:
        text = template_of(m, **flags)
        out["metrics"][m.name] = {"template": text, "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest()}
    return out


def judge_key(judge: LLMIdentity, metric: MetricSpec, item: dict, prompt: str | None = None,
              attempt_temperature: float | None = None, defences: tuple[str, ...] = ()) -> str:
    """The verdict's cache key (the prompt, rendered with the defences, holds what they change)."""
    if prompt is None:
        prompt = render_prompts(metric, [item], **prompt_flags(judge, defences))[0]
    parts = {
        "judge": judge.key_parts(),
        "metric": metric.definition(),
        "deepeval": deepeval_version(),
        "prompt_sha256": hashlib.sha256(prompt.encode("utf-8")).hexdigest(),
        "instruction": item["instruction"],
        "input": item["input"],
        "expected_output": item["output"],
        "actual_output": item["response"],
    }
    if attempt_temperature is not None:
        parts["attempt_temperature"] = attempt_temperature
    if prompt_flags(judge)["logprobs"]:
        parts["weighting"] = WEIGHTING_RULE  # a verdict weighted by another rule is asked again
    return cache_key("geval", parts)


def _row(item, model, metric, judge, key, verdict=None, error=None, defences: tuple[str, ...] = ()) -> dict:
    row = {"id": item["id"], "source": item["source"], "model": model, "metric": metric.name}
    if verdict is not None:
        row.update(score=verdict["score"], score_5=to_five(verdict["score"]), reason=verdict["reason"],
                   weighting=verdict.get("weighting", PLAIN), dropped_mass=verdict.get("dropped_mass", 0.0))
        if "raw" in verdict:
            row["raw"] = verdict["raw"]  # the completion the verdict was parsed from
        if "attempt_temperature" in verdict:
            row["attempt_temperature"] = verdict["attempt_temperature"]
        if "usage" in verdict:  # in one key order, whether the verdict came from the store or the endpoint
            row["usage"] = dict(sorted(verdict["usage"].items()))
        if verdict.get("served_by"):
            row["served_by"] = verdict["served_by"]  # the model id the endpoint reported
    else:
        row.update(score=None, score_5=None, reason=None, error=error)
    if defences:
        row["defences"] = label(defences)
    row.update(judge=judge.row(), cache_key=key)
    return row


async def _measure(llm, metric: MetricSpec, item: dict, defences: tuple[str, ...] = ()) -> dict:
    """One verdict: the 0-1 score, GEval's reason, how the score was weighted, and the answer it came from.

    GEval is measured through its public surface (``a_measure``, ``score``, ``reason``) with a fresh
    copy of the judge model, which keeps the answer it received. The score is weighted here by the
    judge's token distribution when it asked for logprobs (:func:`.scores.verdict_weighting`); without
    them it must be GEval's own score, which is checked."""
    judge = llm.fresh()
    token = boundary_token(metric, item) if "boundary" in defences else None
    geval = metric.geval(judge, example_verdict=judge.example_verdict, defences=defences, token=token)
    await geval.a_measure(test_case(item, token), _show_indicator=False)
    answer, lo, hi = judge.answer, *GEVAL_RANGE
    w = verdict_weighting(judge.verdict["score"], answer.response if judge.logprobs else None, lo, hi)
    if judge.logprobs and logprobs_of(answer.response) is None:
        judge.client.stats["no_logprobs"] += 1  # the endpoint ignored the request: the JSON's score is kept
    score = (float(w.score) - lo) / (hi - lo)
    if w.weighting == PLAIN and score != geval.score:  # never expected: deepeval's scale changed
        raise JudgeError(f"metric {metric.name}, item {item['id']}: deepeval GEval scored {geval.score} where the "
                         f"judge's answer says {w.score} of {lo}-{hi}; this deepeval version is not supported")
    verdict = {"score": round(score, 6), "reason": geval.reason, "weighting": w.weighting,
               "dropped_mass": w.dropped_mass, "raw": answer.raw, "usage": answer.usage}
    if answer.served_by:
        verdict["served_by"] = answer.served_by
    problem = score_problem(verdict)
    if problem:  # never expected (scores.weighted_score stays in range): refused, never cached
        raise JudgeError(f"metric {metric.name}, item {item['id']}: GEval gave {problem} (its {lo}-{hi} score "
                         f"weighted {w.weighting}); not stored")
    return verdict, answer.temperature


def plan(items: list[dict], model: str, metrics: list[MetricSpec], judge: LLMIdentity,
         cache: AnswerStore, defences: tuple[str, ...] = ()) -> tuple[dict, list]:
    """Rows the cache (or an empty answer) already settles, keyed (item id, metric), and the
    (item, metric, cache key, prompt) left to ask."""
    flags = prompt_flags(judge, defences)
    # an empty answer is never sent (deepeval refuses it): no prompt to render, a key all the same
    asked = [it for it in items if it["response"].strip()]
    prompts = {m.name: dict(zip((it["id"] for it in asked), render_prompts(m, asked, **flags))) for m in metrics}
    # metric-major: consecutive prompts share the template and evaluation steps, which a local
    # server's prompt cache then skips (rows are reordered to item-major when written)
    jobs = [(item, metric, prompts[metric.name].get(item["id"], "")) for metric in metrics for item in items]
    jobs = [(item, metric, judge_key(judge, metric, item, prompt, defences=defences), prompt)
            for item, metric, prompt in jobs]
    hits = cache.get_many(k for _, _, k, _ in jobs)
    retry_keys = {}
    for item, metric, key, prompt in jobs:
        if key in hits and "retry_temperature" in hits[key]:
            retry_keys[key] = judge_key(judge, metric, item, prompt, hits[key]["retry_temperature"], defences)
    retried = cache.get_many(retry_keys.values())
    done, todo = {}, []
    for item, metric, key, prompt in jobs:
        hit, row_key = hits.get(key), key
        if key in retry_keys:
            row_key = retry_keys[key]
            hit = retried.get(row_key)
        if hit is not None and score_problem(hit):  # written by an earlier version: asked again
            log.warning("item %s, metric %s: the stored verdict is unusable (%s); asking again", item["id"],
                        metric.name, score_problem(hit))
            hit = None
        if hit is not None:
            done[(item["id"], metric.name)] = _row(item, model, metric, judge, row_key, hit, defences=defences)
        elif not item["response"].strip():
            done[(item["id"], metric.name)] = _row(item, model, metric, judge, key,
                                                   {"score": 0.0, "reason": EMPTY_REASON}, defences=defences)
        else:
            todo.append((item, metric, key, prompt))
    return done, todo


async def _ask_all(todo, model, judge, llm, cache, in_flight, progress, defences=()) -> dict:
    greedy = llm.client.endpoint.temperature  # a verdict from an attempt at another one is a retry's
    queue: asyncio.Queue = asyncio.Queue()
    for job in todo:
        queue.put_nowait(job)
    rows: dict = {}

    async def worker():
        while True:
            try:
                item, metric, key, prompt = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            try:
                verdict, t = await _measure(llm, metric, item, defences)
            except MalformedAnswer as e:
                rows[(item["id"], metric.name)] = _row(item, model, metric, judge, key,
                                                       error=f"malformed judge answer: {e}", defences=defences)
            else:
                if t != greedy:  # a retry's verdict: keyed by its temperature, never as the greedy one
                    verdict["attempt_temperature"] = t
                    retry_key = judge_key(judge, metric, item, prompt, t, defences)
                    await asyncio.to_thread(cache.put, retry_key, "geval", verdict)
                    await asyncio.to_thread(cache.put, key, "geval-retried", {"retry_temperature": t})
                    key = retry_key
                else:
                    # committed now: an interrupt loses nothing judged; in a thread, so the other
                    # requests' work goes on while the file is flushed to disk
                    await asyncio.to_thread(cache.put, key, "geval", verdict)
                rows[(item["id"], metric.name)] = _row(item, model, metric, judge, key, verdict, defences=defences)
            progress.update(1)

    workers = [asyncio.create_task(worker()) for _ in range(in_flight)]
    try:
        await asyncio.gather(*workers)
    except BaseException:
        for w in workers:
            w.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        raise
    finally:
        await llm.client.aclose()  # inside the loop that opened its connections
    return rows


def _by_batch(todo, model, llm, progress_file, defences=()) -> tuple[dict, object]:
    """Collect the request the judge sends for every verdict to ask (its prompt, rendered by GEval for
    the cache key, and the judge's answer format; nothing is sent), submit them as one batch (or resume
    the batch already submitted for them), and give its answers to the client."""
    from ..llm.batch import run_batch

    client = llm.client
    for _, _, _, prompt in todo:
        client.collect(prompt, **llm.verdict_request())
    with tqdm(total=len(client.collected), desc=f"batch {model}", unit="request", file=progress_file,
              mininterval=1.0) as bar:
        def progress(done, total):
            bar.total = total
            bar.n = done
            bar.refresh()

        answers, info, state = run_batch(client.collected, client.endpoint, client.state_dir,
                                         label=f"judge {model}", poll_s=client.poll_s, wait_s=client.wait_s,
                                         progress=progress)
    client.answers = answers
    return {**info, "price_factor": client.price_factor}, state


def judge_model(items: list[dict], model: str, metrics: list[MetricSpec], judge: LLMIdentity,
                cache: AnswerStore, connect, in_flight: int, progress_file=None,
                max_requests: int | None = None, defences: tuple[str, ...] = ()) -> tuple[list[dict], dict]:
    """Rows for one model's answers. ``connect`` is a context manager yielding the deepeval model;
    it is entered only if the cache leaves something to ask (no server start on a warm cache).
    More verdicts to ask than ``max_requests`` stops before the first request. ``defences``: the
    judge's prompt defences (:mod:`.defences`), recorded in every row when any. Returns (rows, stats)."""
    done, todo = plan(items, model, metrics, judge, cache, defences)
    stats = {"items": len(items), "judgements": len(done) + len(todo), "cached": len(done), "asked": len(todo)}
    log.info("%s: %d judgements, %d from the cache or empty answers, %d to ask (%d in flight)",
             model, stats["judgements"], len(done), len(todo), in_flight)
    if max_requests is not None and len(todo) > max_requests:
        raise JudgeError(f"judge {model}: {len(todo)} verdicts to ask, more than judge.max_requests = {max_requests}; "
                         "nothing was sent. Raise judge.max_requests (see `snakemake preflight`) or judge fewer items")
    if todo:
        with connect() as llm, tqdm(total=len(todo), desc=f"judge {model}", unit="verdict",
                                    file=progress_file, mininterval=1.0) as bar:
            batch_state = None
            try:
                if hasattr(llm.client, "collected"):  # judge.openai.batch: one batch, then the usual pass replays it
                    batch_info, batch_state = _by_batch(todo, model, llm, progress_file, defences)
                    stats.update(batch_info)
                done.update(asyncio.run(_ask_all(todo, model, judge, llm, cache, in_flight, bar, defences)))
            finally:
                stats.update(llm.client.stats)
            if batch_state is not None:
                batch_state.unlink(missing_ok=True)  # every answer is in the cache now
    rows = [done[(it["id"], m.name)] for it in items for m in metrics]
    stats["errors"] = sum(1 for r in rows if r.get("error"))
    return rows, stats


def check_errors(rows: list[dict], max_error_fraction: float, model: str) -> None:
    errors = [r for r in rows if r.get("error")]
    if rows and len(errors) / len(rows) > max_error_fraction:
        raise JudgeError(
            f"{model}: {len(errors)} of {len(rows)} judgements failed (more than judge.max_error_fraction = "
            f"{max_error_fraction}); first: item {errors[0]['id']}, metric {errors[0]['metric']}: "
            f"{errors[0]['error']}. The good verdicts are cached; fix the judge and rerun."
        )
    for r in errors:
        log.warning("item %s, metric %s: %s (written as an error row, no score)", r["id"], r["metric"], r["error"])


def run_controls(test: list[dict], *, controls: dict, seed: int, metrics, judge, cache, connect, in_flight: int,
                 max_requests: int | None, defences: tuple[str, ...] = (), progress=None):
    """The judge on its controls: (the positive and negative arms' rows, the adversarial arms' rows, stats).

    The positive and negative arms are judged with the judge's own defences; the adversarial arms
    (``controls.adversarial``) with them and with each setting of ``adversarial.defences`` beside them,
    each time with the negative arm they are compared with. Every adversarial row names its setting
    (``defences``: ``none``, ``boundary``, ...)."""
    from .adversarial import adversarial_items
    from .controls import NEGATIVE, adversarial_settings, control_items

    arms = control_items(test, controls.get("items_per_source"), seed)
    adv = controls.get("adversarial") or {}
    total: Counter = Counter()

    def judge_arm(arm, items, setting):
        got, stats = judge_model(items, arm, metrics, judge, cache, connect, in_flight, progress,
                                 max_requests=max_requests, defences=setting)
        log.info("%s (defences: %s): %d items, requests: %s", arm, label(setting), len(items),
                 {k: v for k, v in stats.items() if k != "items"})
        total.update({k: v for k, v in stats.items() if isinstance(v, int) and k != "in_flight_limit"})
        return got

    rows = [r for arm, items in arms.items() for r in judge_arm(arm, items, defences)]
    adversarial_rows = []
    if adv.get("enabled"):
        for setting in adversarial_settings(defences, adv.get("defences")):
            arm_rows = [r for r in rows if r["model"] == NEGATIVE] if setting == defences else \
                judge_arm(NEGATIVE, arms[NEGATIVE], setting)
            for arm, items in adversarial_items(arms[NEGATIVE], adv.get("kinds") or []).items():
                arm_rows += judge_arm(arm, items, setting)
            adversarial_rows += [{**r, "defences": label(setting)} for r in arm_rows]
    return rows, adversarial_rows, dict(total)
