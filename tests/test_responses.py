import pytest

from tunejudge.analysis.responses import merge_responses
from tunejudge.data.records import make_record
from tunejudge.errors import DataError

TEST = [make_record("Capital of Mexico?", "", "Mexico City.", "sebastian"), make_record("Sentiment.", "great", "Positive", "sst2")]


def doc(model, answers, ids=None):
    ids = ids or [r["id"] for r in TEST]
    return {"model": model, "responses": [{"id": i, "response": a} for i, a in zip(ids, answers)]}


def test_study_format_one_key_per_model():
    rows = merge_responses(TEST, [("b.json", doc("base", ["### Answer:", "x"])), ("f.json", doc("full", ["Mexico City", "Positive"]))])
    assert rows[0] == {"instruction": "Capital of Mexico?", "input": "", "output": "Mexico City.", "id": TEST[0]["id"],
                       "source": "sebastian", "model base": "### Answer:", "model full": "Mexico City"}


def test_stale_responses_are_refused():
    with pytest.raises(DataError, match="old.json: field 'responses': does not answer the current test set"):
        merge_responses(TEST, [("old.json", doc("full", ["a", "b"], ids=["x", "y"]))])
    with pytest.raises(DataError, match="bad.json: field 'responses': missing"):
        merge_responses(TEST, [("bad.json", {"model": "m"})])
