"""Curation of one source: schema check, drops with reasons, dedup, token-length policy, persona filter.

Every dropped record is kept with its reason, so nothing disappears silently. Cross-source
duplicates are handled by the split, which sees every source (curation of one source must not
depend on the others, or editing one dataset would rerun every curation).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field

from .dedup import NearDupIndex
from .errors import ConfigError, DataError
from .prompt import format_example

log = logging.getLogger(__name__)

LENGTH_POLICIES = ("drop", "truncate_input")


# The auditor's verdict fields and the curation drop reason each gives when false.
CHECKS = (("grounded", "audit_not_grounded", "the answer states facts the reference context does not"),
          ("standalone", "audit_question_dependent", "the answer needs the question's wording to be understood"))


def drop_reason(verdict: dict) -> tuple[str, str] | None:
    """(reason, detail) for curation's dropped list, or None to keep the item."""
    if verdict.get("skipped"):
        return None  # curation's own filter (noisy persona) decides
    if verdict.get("error"):
        return "audit_unavailable", f"the auditor gave no usable verdict ({verdict['error']})"
    for key, reason, what in CHECKS:
        if not verdict[key]:
            return reason, f"{what}; auditor: {verdict['reason']}"
    return None


@dataclass
class CurationResult:
    kept: list[dict] = field(default_factory=list)
    dropped: list[dict] = field(default_factory=list)
    truncated: int = 0

    def drop(self, rec: dict, reason: str, detail: str) -> None:
        self.dropped.append({"reason": reason, "detail": detail, "record": rec})

    def summary(self) -> dict:
        return {"kept": len(self.kept), "dropped": dict(sorted(Counter(d["reason"] for d in self.dropped).items())),
                "truncated": self.truncated}


def _input_budget(rec: dict, enc, max_tokens: int) -> int:
    """Tokens left for the input once the prompt without it and the answer are counted."""
    bare = dict(rec, input="")
    budget = max_tokens - len(enc.encode(format_example(bare), disallowed_special=()))
    return budget - len(enc.encode("\n\n### Input:\n"))  # the "### Input:" block itself


def _truncate_input(rec: dict, enc, max_tokens: int) -> dict | None:
    """Cut the input (at a token boundary) so prompt + answer fit; None if even no input is too long.

    An extractive record (``meta.answer_start``: the answer's offset in the input) keeps a window of
    the input that holds its answer, rather than the input's start; None when the answer cannot fit."""
    budget = _input_budget(rec, enc, max_tokens)
    if budget <= 0:
        return None
    ids = enc.encode(rec["input"], disallowed_special=())
    start = (rec.get("meta") or {}).get("answer_start")
    while budget > 0:
        if start is None:
            text = enc.decode_bytes(ids[:budget]).decode("utf-8", errors="ignore").rstrip()
        else:
            text = _window(rec["input"], ids, enc, start, len(rec["output"]), budget)
            if text is None:
                return None
        out = dict(rec, input=text)
        if start is not None:
            out["meta"] = dict(rec["meta"], answer_start=text.find(rec["output"]))
        if len(enc.encode(format_example(out), disallowed_special=())) <= max_tokens:
            return out
        budget -= 1
    return None


def _window(text: str, ids: list[int], enc, start: int, length: int, budget: int) -> str | None:
    """``budget`` tokens of ``text`` around the characters [start, start + length), the answer placed
    as near the window's middle as the text's ends allow; None when the answer alone needs more."""
    _, offsets = enc.decode_with_offsets(ids)
    first = max(i for i, o in enumerate(offsets) if o <= start) if offsets else 0
    last = max(i for i, o in enumerate(offsets) if o < start + length) if offsets else 0
    if last - first + 1 > budget:
        return None
    lo = max(0, min(first - (budget - (last - first + 1)) // 2, len(ids) - budget))
    piece = enc.decode_bytes(ids[lo : lo + budget]).decode("utf-8", errors="ignore").strip()
    answer = text[start : start + length]
    return piece if answer in piece else None


def curate(records: list[dict], cfg: dict, enc, audit: dict | None = None,
           audit_path: str = "the audit file", required: tuple[str, ...] = ("instruction", "output"),
           task: str = "this source's") -> CurationResult:
    """Curate one source's records (already schema-checked) by ``cfg`` (the ``curation`` section).

    ``audit``: the LLM auditor's verdict per record id (``tunejudge.audit``), for audited sources.
    ``required``: the fields the source's task needs non-empty (``builders.required_fields``)."""
    max_tokens = int(cfg.get("max_tokens", 1024))
    policy = cfg.get("length_policy", "drop")
    if policy not in LENGTH_POLICIES:
        raise ConfigError(f"curation.length_policy: {policy!r} (one of {', '.join(LENGTH_POLICIES)})")
    noisy = set(cfg.get("noisy_personas") or [])
    index = NearDupIndex(threshold=float(cfg.get("near_duplicate_threshold", 0.85)))
    res = CurationResult()
    for rec in records:
        empty = next((f for f in ("instruction", "output", *required) if not rec[f].strip()), None)
        if empty is not None:
            what = {"instruction": "the instruction", "output": "the expected output", "input": "the input"}[empty]
            res.drop(rec, f"empty_{empty}", f"{what} is empty; the {task} task needs it")
            continue
        start = (rec.get("meta") or {}).get("answer_start")
        if start is not None and rec["input"][start : start + len(rec["output"])] != rec["output"]:
            res.drop(rec, "answer_not_in_input", "extractive QA: the answer is not at meta.answer_start in the input")
            continue
        persona = (rec.get("meta") or {}).get("persona_name")
        if persona and persona in noisy:
            res.drop(rec, "noisy_persona", f"generated for persona {persona!r}, listed in curation.noisy_personas")
            continue
        if audit is not None:
            if rec["id"] not in audit:
                raise DataError(audit_path, problem=f"no verdict for record {rec['id']}: the audit is older "
                                "than the dataset; rerun the audit rule")
            hit = drop_reason(audit[rec["id"]])
            if hit is not None:
                res.drop(rec, *hit)
                continue
        n = len(enc.encode(format_example(rec), disallowed_special=()))
        if n > max_tokens:
            if policy == "truncate_input" and rec["input"]:
                cut = _truncate_input(rec, enc, max_tokens)
                if cut is not None:
                    rec = cut
                    res.truncated += 1
                elif start is not None:
                    res.drop(rec, "answer_truncated", f"{n} tokens; no window of the input that holds the "
                             f"answer fits curation.max_tokens = {max_tokens}")
                    continue
                else:
                    res.drop(rec, "too_long", f"{n} tokens; over {max_tokens} even with the input removed")
                    continue
            else:
                res.drop(rec, "too_long", f"{n} tokens (prompt + answer) > curation.max_tokens = {max_tokens}")
                continue
        hit = index.check_and_add(rec)
        if hit is not None:
            res.drop(rec, *hit)
            continue
        res.kept.append(rec)
    return res
