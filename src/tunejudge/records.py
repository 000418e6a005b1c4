"""The instruction record: {"instruction", "input", "output", "id", "source"} (+ optional "meta")."""

from __future__ import annotations

import hashlib
import json

from .errors import DataError

FIELDS = ("instruction", "input", "output", "id", "source")
OPTIONAL_FIELDS = ("meta",)


def content_id(instruction: str, input: str, output: str) -> str:
    """Stable content hash: an item keeps its identity (and its split) whatever else changes."""
    payload = json.dumps([instruction, input, output], ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


def make_record(instruction: str, input: str, output: str, source: str, meta: dict | None = None) -> dict:
    rec = {
        "instruction": instruction,
        "input": input,
        "output": output,
        "id": content_id(instruction, input, output),
        "source": source,
    }
    if meta:
        rec["meta"] = meta
    return rec


def validate_records(records, path) -> list[dict]:
    """Schema check of a dataset file's content; the first problem stops with file, record and field."""
    if not isinstance(records, list):
        raise DataError(path, problem=f"expected a JSON list of records, got {type(records).__name__}")
    for i, rec in enumerate(records):
        if not isinstance(rec, dict):
            raise DataError(path, i, problem=f"expected an object, got {type(rec).__name__}")
        for field in FIELDS:
            if field not in rec:
                raise DataError(path, i, field, "missing")
            if not isinstance(rec[field], str):
                raise DataError(path, i, field, f"expected a string, got {type(rec[field]).__name__}")
        extra = set(rec) - set(FIELDS) - set(OPTIONAL_FIELDS)
        if extra:
            raise DataError(path, i, sorted(extra)[0], "unknown field (allowed: " + ", ".join(FIELDS + OPTIONAL_FIELDS) + ")")
        if "meta" in rec and not isinstance(rec["meta"], dict):
            raise DataError(path, i, "meta", f"expected an object, got {type(rec['meta']).__name__}")
    return records
