"""all_model_responses.json: the test records, each with one "model <name>" key per model."""

from __future__ import annotations

from ..errors import DataError


def merge_responses(test: list[dict], per_model: list[tuple[str, dict]]) -> list[dict]:
    """``per_model``: (path, a respond output). Returns the study-format list.

    Every model must have answered exactly the test set, in its order: a stale responses file
    (an older test set) stops the merge with its path instead of pairing answers with wrong items.
    """
    ids = [r["id"] for r in test]
    rows = [{k: r[k] for k in ("instruction", "input", "output", "id", "source")} for r in test]
    for path, doc in per_model:
        for key in ("model", "responses"):
            if key not in doc:
                raise DataError(path, field=key, problem="missing")
        got = [r.get("id") for r in doc["responses"]]
        if got != ids:
            raise DataError(path, field="responses", problem="does not answer the current test set (rerun respond)")
        for row, r in zip(rows, doc["responses"]):
            row[f"model {doc['model']}"] = r["response"]
    return rows


def test_records(rows: list[dict], path, extra: tuple[str, ...] = ()) -> list[dict]:
    """The test records (id, source, instruction, input, output) of a test split or of
    all_model_responses.json; ``extra``: more string fields each row must have."""
    if not isinstance(rows, list):
        raise DataError(path, problem="expected a JSON list of test records")
    for i, row in enumerate(rows):
        for field in ("id", "source", "instruction", "input", "output", *extra):
            if not isinstance(row.get(field) if isinstance(row, dict) else None, str):
                raise DataError(path, i, field, "missing or not a string")
    return [{k: row[k] for k in ("id", "source", "instruction", "input", "output")} for row in rows]


def answers_of(rows: list[dict], model: str, path) -> list[dict]:
    """One model's answers from all_model_responses.json rows: the test record plus ``response``."""
    key = f"model {model}"
    records = test_records(rows, path, extra=(key,))
    return [rec | {"response": row[key]} for rec, row in zip(records, rows)]


def run_answers(test: list[dict], doc: dict, path) -> list[dict]:
    """One run's answers from its respond output (``results/responses/<run>.json``) and the test split: the
    test record plus ``response``; a stale answer file (an older test set) stops with its path."""
    rows = merge_responses(test, [(path, doc)])
    return answers_of(rows, doc["model"], path)
