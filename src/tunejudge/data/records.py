"""The instruction record: {"instruction", "input", "output", "id", "source"} (+ optional "meta", "group").

``group``: the keys of what the record must stay with across the split, e.g. the CNN/DailyMail
article a summary and the questions generated from it all come from (``cnn_dailymail:<article id>``).
Records sharing any key land on the same side of the test split. Without it a record is its own
group.
"""

from __future__ import annotations

import hashlib
import json

from ..errors import DataError

FIELDS = ("instruction", "input", "output", "id", "source")
OPTIONAL_FIELDS = ("meta", "group")


def content_id(instruction: str, input: str, output: str) -> str:
    """Stable content hash: an item keeps its identity (and its split) whatever else changes."""
    payload = json.dumps([instruction, input, output], ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


def make_record(instruction: str, input: str, output: str, source: str, meta: dict | None = None,
                group: list[str] | None = None) -> dict:
    rec = {
        "instruction": instruction,
        "input": input,
        "output": output,
        "id": content_id(instruction, input, output),
        "source": source,
    }
    if meta:
        rec["meta"] = meta
    if group:
        rec["group"] = list(group)
    return rec


def groups_of(rec: dict) -> list[str]:
    """The split-group keys of a record: its ``group``, else its own id."""
    return list(rec.get("group") or [rec["id"]])


def article_group(corpus: str, article_id: str, text: str = "") -> str:
    """The group key of a news article: by its corpus id, else by a hash of its normalised text."""
    if article_id:
        return f"{corpus}:{article_id}"
    digest = hashlib.sha256(" ".join(text.split()).encode("utf-8")).hexdigest()[:16]
    return f"{corpus}:text-{digest}"


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
        if "group" in rec and not (isinstance(rec["group"], list) and rec["group"]
                                   and all(isinstance(g, str) and g for g in rec["group"])):
            raise DataError(path, i, "group", "expected a non-empty list of non-empty strings (split-group keys)")
    return records
