"""The LLM audit of generated QA items (the study's curation of its CNN QA subset).

The auditor reads each item's question, reference answer and reference context, and answers two
checks the study made:

(a) ``grounded``: every fact in the answer is stated in the reference context;
(b) ``standalone``: the answer states its facts without needing the question's wording to be
    understood ("Heilongjiang." needs the question; "Cui Hongfang is from Heilongjiang." does not).

An item failing either is dropped by curation with the auditor's reason. Items from personas
listed in ``curation.noisy_personas`` are not sent (curation drops them anyway). Verdicts are
cached by content like judge verdicts; an item the auditor could not judge (malformed answers
after the retries) is recorded as an error, not cached, and dropped as unaudited.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter

from tqdm import tqdm

from ..errors import DataError
from ..llm.client import MalformedAnswer, parse_json_object
from ..llm.store import AnswerStore, cache_key

log = logging.getLogger("tunejudge.audit")

PROMPT = """You are auditing a question-answer pair generated from a news article.

Reference context (from the article):
{context}

Question: {question}
Answer: {answer}

Check two things:
1. grounded: is every fact in the answer stated in the reference context? false if the answer adds \
anything the context does not say.
2. standalone: can the answer be understood without reading the question? false if it only makes \
sense together with the question's wording (for example a bare name, number or "yes").

Reply with a JSON object: {{"reason": "<one short sentence>", "grounded": true or false, \
"standalone": true or false}}"""

def schema(reason_max_chars: int | None) -> dict:
    reason: dict = {"type": "string"}
    if reason_max_chars:
        reason["maxLength"] = reason_max_chars
    return {"title": "QAAudit", "type": "object",
            "properties": {"reason": reason, "grounded": {"type": "boolean"}, "standalone": {"type": "boolean"}},
            "required": ["reason", "grounded", "standalone"], "additionalProperties": False}


def check_verdict(content) -> dict:
    data = parse_json_object(content)
    for f in ("grounded", "standalone"):
        if not isinstance(data.get(f), bool):
            raise MalformedAnswer(f"{f!r} must be true or false, got {data.get(f)!r}")
    reason = data.get("reason")
    if not isinstance(reason, str) or not reason.strip():
        raise MalformedAnswer("'reason' must be a non-empty string")
    return {"reason": reason.strip(), "grounded": data["grounded"], "standalone": data["standalone"]}


def prompt_for(rec: dict, where: str, i: int) -> str:
    contexts = (rec.get("meta") or {}).get("reference_contexts")
    if not contexts or not isinstance(contexts, list) or not all(isinstance(c, str) for c in contexts):
        raise DataError(where, i, "meta.reference_contexts",
                        "the auditor needs the item's reference contexts (a list of strings)")
    return PROMPT.format(context="\n\n".join(c.strip() for c in contexts), question=rec["instruction"].strip(),
                         answer=rec["output"].strip())


def audit_key(auditor: dict, prompt: str) -> str:
    return cache_key("qa_audit", {"auditor": auditor, "prompt": prompt})


def verdict_row(rec: dict, key: str | None, verdict: dict | None = None, *, error: str | None = None,
                skipped: str | None = None) -> dict:
    row = {"id": rec["id"], "persona_name": (rec.get("meta") or {}).get("persona_name", "")}
    if skipped:
        row.update(keep=None, skipped=skipped)
    elif error:
        row.update(keep=False, error=error)
    else:
        row.update(verdict, keep=verdict["grounded"] and verdict["standalone"])
    row["cache_key"] = key
    return row


async def _ask(todo, make_client, cache, in_flight, schema_, bar) -> dict:
    client = make_client()
    queue: asyncio.Queue = asyncio.Queue()
    for job in todo:
        queue.put_nowait(job)
    out: dict = {}

    async def worker():
        while True:
            try:
                rec, prompt, key = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            try:
                verdict, _ = await client.complete(prompt, check_verdict, json_schema=schema_)
            except MalformedAnswer as e:
                out[rec["id"]] = verdict_row(rec, key, error=f"malformed auditor answer: {e}")
            else:
                cache.put(key, "qa_audit", verdict)  # committed now: an interrupt loses nothing audited
                out[rec["id"]] = verdict_row(rec, key, verdict)
            bar.update(1)

    try:
        await asyncio.gather(*(worker() for _ in range(in_flight)))
    finally:
        await client.aclose()
    return out


def audit_records(records: list[dict], where: str, *, auditor: dict, cache: AnswerStore, connect,
                  noisy_personas=(), in_flight: int = 1, reason_max_chars: int | None = None,
                  progress=None) -> tuple[list[dict], dict]:
    """One verdict row per record, in record order; ``connect()`` (a context manager yielding a
    client factory) is entered only if the cache leaves something to ask."""
    noisy = set(noisy_personas)
    rows: dict = {}
    todo = []
    keys = {}
    for i, rec in enumerate(records):
        persona = (rec.get("meta") or {}).get("persona_name")
        if persona and persona in noisy:
            rows[rec["id"]] = verdict_row(rec, None, skipped="noisy_persona")
            continue
        prompt = prompt_for(rec, where, i)
        keys[rec["id"]] = key = audit_key(auditor, prompt)
        todo.append((rec, prompt, key))
    hits = cache.get_many(keys.values())
    asked = []
    for rec, prompt, key in todo:
        if key in hits:
            rows[rec["id"]] = verdict_row(rec, key, hits[key])
        else:
            asked.append((rec, prompt, key))
    log.info("%s: %d items, %d noisy-persona items not sent, %d verdicts cached, %d to ask",
             where, len(records), len(records) - len(todo), len(todo) - len(asked), len(asked))
    if asked:
        with connect() as make_client, tqdm(total=len(asked), desc="audit", unit="item", file=progress,
                                            mininterval=1.0) as bar:
            rows.update(asyncio.run(_ask(asked, make_client, cache, in_flight, schema(reason_max_chars), bar)))
    out = [rows[r["id"]] for r in records]
    stats = Counter("skipped" if r.get("skipped") else "error" if r.get("error") else
                    "kept" if r["keep"] else "dropped" for r in out)
    stats["asked"] = len(asked)
    return out, dict(stats)


def run_audit(records: list[dict], where: str, audit_cfg: dict, llm_cfg: dict, *, noisy_personas=(),
              threads: int = 2, server_log=None, progress=None) -> tuple[list[dict], dict]:
    """The auditor is the judge's backend (``llm_cfg``: the ``judge`` section) with the audit's bounds."""
    import contextlib

    from ..llm import backends
    from ..llm.client import RequestBudget

    cfg = {**llm_cfg, "max_tokens": audit_cfg.get("max_tokens", 300)}
    judge = backends.identity(cfg)
    reason_chars = audit_cfg.get("reason_max_chars")
    if reason_chars is None and judge.backend == "local":
        reason_chars = cfg["local"]["reason_max_chars"]
    auditor = {**judge.key_parts(), "prompt": PROMPT, "reason_max_chars": reason_chars}
    if judge.backend == "local":
        log.info("auditor: %s served locally -- a smoke test, not a real audit", judge.model)

    @contextlib.contextmanager
    def connect():
        with backends.open_client(cfg, RequestBudget(cfg["max_requests"]), threads=threads,
                                  server_log=server_log) as (make_client, _):
            yield make_client

    with AnswerStore(cfg["cache"]) as cache:
        return audit_records(records, where, auditor=auditor, cache=cache, connect=connect,
                             noisy_personas=noisy_personas, in_flight=cfg["in_flight"],
                             reason_max_chars=reason_chars, progress=progress)
