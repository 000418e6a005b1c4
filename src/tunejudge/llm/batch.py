"""OpenAI's Batch API as a judge backend (``judge.openai.batch: true``): half the price of the same
requests asked one by one, answered within 24 hours.

A judge job runs in two passes over the same deepeval code:

1. *collect*: for every verdict to ask, the prompt GEval renders (the one its cache key holds) becomes
   the Chat Completions request the judge would send (exactly the body :class:`ChatClient` sends),
   recorded by :meth:`BatchClient.collect`; nothing is sent;
2. the requests are written as one JSONL batch file, uploaded, and the batch created. Its id is kept
   under ``<cache>/../batches/<sha256 of the batch file>.json`` *before* the job waits, so a job that
   is interrupted (killed, timed out, or out of ``batch_wait_s``) finds the same batch on its next run
   and resumes it instead of paying for a second one; the same requests are the same file, the same key;
3. *replay*: once the batch is done, GEval runs again over each request with the batch's answer in
   place of a live call, so the score (logprob weighting included) is computed exactly as for a live
   answer; an answer that fails validation, or a request the batch could not serve, is asked live.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path

from .client import Answer, ChatClient, JudgeError, MalformedAnswer

log = logging.getLogger("tunejudge.judge")

DONE = ("completed", "expired")  # an expired batch returns what it finished; the rest is asked live
FAILED = ("failed", "cancelled", "cancelling")


def body_key(body: dict) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()


class BatchClient(ChatClient):
    """A :class:`ChatClient` whose first attempt can be answered from a batch.

    :meth:`collect` records a request's body (the budget taken for it), sending nothing. With
    ``answers`` (custom id -> completion body): a request the batch answered is validated as a live answer would be; a missing or malformed answer, and
    every request outside a batch pass (pairwise judging, RAGAS, the auditor), is asked live."""

    def __init__(self, *args, state_dir: Path, poll_s: float, wait_s: float, price_factor: float = 0.5, **kwargs):
        super().__init__(*args, **kwargs)
        self.state_dir, self.poll_s, self.wait_s, self.price_factor = Path(state_dir), poll_s, wait_s, price_factor
        self.answers: dict = {}
        self.collected: dict[str, dict] = {}
        self._bounds: dict[str, float] = {}

    def _body(self, prompt, json_schema, logprobs, strict) -> tuple[str, dict]:
        body = self._request(prompt, json_schema, logprobs, self.endpoint.temperature, strict)
        flat = {k: v for k, v in body.items() if k != "extra_body"} | body.get("extra_body", {})
        return body_key(flat), flat

    def collect(self, prompt, *, json_schema=None, logprobs=False, strict=True) -> str:
        """Record the request :meth:`complete` would send for ``prompt`` (the budget, ``max_requests``
        and ``max_cost``, taken for it before anything is sent); returns its custom id."""
        key, flat = self._body(prompt, json_schema, logprobs, strict)
        if key not in self.collected:
            self._bounds[key] = self.budget.take(prompt, self.endpoint.max_tokens)
            self.stats["batch_requests"] += 1
        self.collected[key] = flat
        return key

    async def complete(self, prompt, validate, *, json_schema=None, logprobs=False, strict=True):
        key, _ = self._body(prompt, json_schema, logprobs, strict)
        answer = self.answers.get(key)
        if answer is None:
            if key in self.collected:
                self.stats["batch_missing"] += 1  # the batch could not serve it
            return await super().complete(prompt, validate, json_schema=json_schema, logprobs=logprobs, strict=strict)
        from openai.types.chat import ChatCompletion

        resp = ChatCompletion.model_validate(answer)
        content = resp.choices[0].message.content if resp.choices else None
        try:
            value = validate(content)
        except MalformedAnswer as e:
            self.stats["batch_malformed"] += 1
            log.info("malformed answer in the batch (%s); asking live", e)
            return await super().complete(prompt, validate, json_schema=json_schema, logprobs=logprobs, strict=strict)
        usage = resp.usage
        self.budget.settle(self._bounds.pop(key, 0.0), usage)
        for k in ("prompt_tokens", "completion_tokens"):
            self.stats[k] += getattr(usage, k, 0) or 0
            self.stats[f"batch_{k}"] += getattr(usage, k, 0) or 0
        used = {"prompt_tokens": getattr(usage, "prompt_tokens", 0) or 0,
                "completion_tokens": getattr(usage, "completion_tokens", 0) or 0, "attempts": 1, "batch": True,
                "price_factor": self.price_factor}
        return value, Answer(resp, content, self.endpoint.temperature, used, getattr(resp, "model", None))


def _batch_file(bodies: dict[str, dict], url: str = "/v1/chat/completions") -> bytes:
    lines = (json.dumps({"custom_id": k, "method": "POST", "url": url, "body": bodies[k]}, sort_keys=True,
                        ensure_ascii=False) for k in sorted(bodies))
    return "".join(line + "\n" for line in lines).encode("utf-8")


def run_batch(bodies: dict[str, dict], endpoint, state_dir: Path, *, label: str, poll_s: float, wait_s: float,
              progress=None, sleep=time.sleep) -> tuple[dict[str, dict], dict, Path]:
    """Submit ``bodies`` (custom id -> Chat Completions body) as one batch, or resume the batch already
    submitted for exactly these requests; wait for it; return (custom id -> completion body for every
    request it answered, what happened, the state file to remove once the answers are kept)."""
    import openai

    from ..io import read_json, write_json
    from .client import redact

    content = _batch_file(bodies)
    digest = hashlib.sha256(content).hexdigest()
    state_path = Path(state_dir) / f"{digest}.json"
    client = openai.OpenAI(api_key=endpoint.api_key or "none", base_url=endpoint.base_url, timeout=endpoint.timeout_s,
                    max_retries=5)
    where = f"{endpoint.base_url or 'https://api.openai.com/v1'}"
    batch = None
    try:
        if state_path.exists():
            state = read_json(state_path)
            batch = client.batches.retrieve(state["batch_id"])
            if batch.status in FAILED:
                log.warning("batch %s (submitted before) is %s: submitting the requests again", batch.id, batch.status)
                batch = None
            else:
                log.info("%s: resuming batch %s (%s, %d requests), submitted before; nothing is sent again",
                         label, batch.id, batch.status, len(bodies))
        if batch is None:
            f = client.files.create(file=(f"tunejudge-{digest[:16]}.jsonl", content), purpose="batch")
            batch = client.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions",
                                          completion_window="24h", metadata={"tunejudge": label[:500]})
            # the id is kept before any wait: an interrupted job resumes this batch, never pays twice
            write_json(state_path, {"batch_id": batch.id, "input_file_id": f.id, "requests": len(bodies),
                                    "label": label, "endpoint": where, "model": endpoint.model})
            log.info("%s: submitted batch %s (%d requests, file %s)", label, batch.id, len(bodies), f.id)
        deadline = time.monotonic() + wait_s
        while batch.status not in DONE + FAILED:
            if time.monotonic() >= deadline:
                raise JudgeError(
                    f"{label}: batch {batch.id} is still {batch.status} after {wait_s:g} s "
                    f"(judge.openai.batch_wait_s); it keeps running at the provider: rerun the rule to resume it "
                    f"(its id is kept in {state_path}; nothing is submitted twice)")
            sleep(poll_s)
            batch = client.batches.retrieve(batch.id)
            counts = batch.request_counts
            if progress is not None and counts is not None:
                progress(counts.completed + counts.failed, counts.total)
        if batch.status in FAILED:
            state_path.unlink(missing_ok=True)  # nothing to resume: the next run submits again
            errors = "; ".join(f"{e.code}: {e.message}" for e in (getattr(batch.errors, "data", None) or [])[:3])
            raise JudgeError(f"{label}: batch {batch.id} {batch.status}" + (f" ({errors})" if errors else "")
                             + "; nothing was scored. Rerun to submit it again")
        answers, failed = {}, 0
        for file_id in (batch.output_file_id, batch.error_file_id):
            if not file_id:
                continue
            for line in client.files.content(file_id).text.splitlines():
                if not line.strip():
                    continue
                rec = json.loads(line)
                resp = rec.get("response") or {}
                if resp.get("status_code") == 200 and rec.get("custom_id") in bodies:
                    answers[rec["custom_id"]] = resp["body"]
                else:
                    failed += 1
    except openai.APIStatusError as e:
        raise JudgeError(f"{label}: the Batch API at {where} refused: HTTP {e.status_code}: "
                         f"{redact(str(e.message), endpoint.api_key)}") from None
    finally:
        client.close()
    info = {"batch_id": batch.id, "batch_status": batch.status, "batch_requests": len(bodies),
            "batch_answers": len(answers), "batch_failed": failed}
    log.info("%s: batch %s %s: %d of %d requests answered", label, batch.id, batch.status, len(answers), len(bodies))
    return answers, info, state_path
