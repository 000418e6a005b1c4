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
from ..errors import DataError
from .fit import LENGTH_POLICIES, check_policy, truncate_input  # noqa: F401 (LENGTH_POLICIES re-exported)
from .prompt import format_example
from .fit import TiktokenText

log = logging.getLogger(__name__)


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


def curate(records: list[dict], cfg: dict, enc, audit: dict | None = None,
           audit_path: str = "the audit file", required: tuple[str, ...] = ("instruction", "output"),
           task: str = "this source's") -> CurationResult:
    """Curate one source's records (already schema-checked) by ``cfg`` (the ``curation`` section).

    ``audit``: the LLM auditor's verdict per record id (``tunejudge.data.audit``), for audited sources.
    ``required``: the fields the source's task needs non-empty (``builders.required_fields``)."""
    max_tokens = int(cfg.get("max_tokens", 1024))
    policy = check_policy(cfg.get("length_policy", "drop"), "curation.length_policy")

    def length_of(r: dict) -> int:
        return len(enc.encode(format_example(r), disallowed_special=()))
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
        n = length_of(rec)
        if n > max_tokens:
            if policy == "truncate_input" and rec["input"]:
                cut = truncate_input(rec, TiktokenText(enc), max_tokens, length_of)
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
