"""Curation of one source: schema check, drops with reasons, dedup, token-length policy, persona filter.

Every dropped record is kept with its reason, so nothing disappears silently. Cross-source
duplicates are handled by the split, which sees every source (curation of one source must not
depend on the others, or editing one dataset would rerun every curation).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field

from .audit import drop_reason
from .dedup import NearDupIndex
from .errors import ConfigError, DataError
from .prompt import format_example

log = logging.getLogger(__name__)

LENGTH_POLICIES = ("drop", "truncate_input")


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


def _truncate_input(rec: dict, enc, max_tokens: int) -> dict | None:
    """Cut the input (at a token boundary) so prompt + answer fit; None if even no input is too long."""
    bare = dict(rec, input="")
    budget = max_tokens - len(enc.encode(format_example(bare), disallowed_special=()))
    # the "### Input:" block itself costs a few tokens
    budget -= len(enc.encode("\n\n### Input:\n"))
    if budget <= 0:
        return None
    ids = enc.encode(rec["input"], disallowed_special=())
    while budget > 0:
        text = enc.decode_bytes(ids[:budget]).decode("utf-8", errors="ignore").rstrip()
        out = dict(rec, input=text)
        if len(enc.encode(format_example(out), disallowed_special=())) <= max_tokens:
            return out
        budget -= 1
    return None


def curate(records: list[dict], cfg: dict, enc, audit: dict | None = None,
           audit_path: str = "the audit file") -> CurationResult:
    """Curate one source's records (already schema-checked) by ``cfg`` (the ``curation`` section).

    ``audit``: the LLM auditor's verdict per record id (``tunejudge.audit``), for audited sources."""
    max_tokens = int(cfg.get("max_tokens", 1024))
    policy = cfg.get("length_policy", "drop")
    if policy not in LENGTH_POLICIES:
        raise ConfigError(f"curation.length_policy: {policy!r} (one of {', '.join(LENGTH_POLICIES)})")
    noisy = set(cfg.get("noisy_personas") or [])
    index = NearDupIndex(threshold=float(cfg.get("near_duplicate_threshold", 0.85)))
    res = CurationResult()
    for rec in records:
        if not rec["instruction"].strip():
            res.drop(rec, "empty_instruction", "the instruction is empty")
            continue
        if not rec["output"].strip():
            res.drop(rec, "empty_output", "the expected output is empty")
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
