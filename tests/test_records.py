import pytest

from tunejudge.data.records import make_record, validate_records
from tunejudge.errors import DataError
from tunejudge.io import read_json

GOOD = make_record("Say hi.", "", "Hi!", "sebastian")


@pytest.mark.parametrize(
    "records, match",
    [
        ({"a": 1}, "expected a JSON list"),
        ([GOOD, "text"], "record 1: expected an object"),
        ([{k: v for k, v in GOOD.items() if k != "output"}], "record 0: field 'output': missing"),
        ([dict(GOOD, input=3)], "record 0: field 'input': expected a string, got int"),
        ([dict(GOOD, extra="x")], "record 0: field 'extra': unknown field"),
        ([dict(GOOD, meta=[1])], "record 0: field 'meta': expected an object"),
    ],
)
def test_schema_errors_name_file_record_field(records, match):
    with pytest.raises(DataError, match=match) as e:
        validate_records(records, "data/instructions/x.json")
    assert str(e.value).startswith("data/instructions/x.json: ")


def test_id_is_content_hash():
    a = make_record("Say hi.", "", "Hi!", "sebastian")
    b = make_record("Say hi.", "", "Hi!", "other")
    c = make_record("Say hi.", "", "Hello!", "sebastian")
    assert a["id"] == b["id"] != c["id"] and len(a["id"]) == 16


def test_invalid_json_names_line(tmp_path):
    p = tmp_path / "bad.json"
    p.write_text('[{"instruction": "x",\n  oops}]')
    with pytest.raises(DataError, match=r"bad.json: invalid JSON at line 2"):
        read_json(p)
