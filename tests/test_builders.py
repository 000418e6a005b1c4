import json

import pytest
import yaml
from conftest import REPO

from tunejudge.data.builders import build
from tunejudge.data.load import load_corpus
from tunejudge.data.records import FIELDS, content_id, validate_records
from tunejudge.errors import DataError

CONFIG = yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def build_source(source):
    spec = CONFIG["sources"][source]
    loader = dict(spec["loader"], data_files=str(REPO / spec["loader"]["data_files"]))
    rows = load_corpus(loader, seed=CONFIG["seed"])
    return rows, build(spec["builder"], rows, spec, source)


@pytest.mark.parametrize("source", list(CONFIG["sources"]))
def test_builder_on_its_sample(source):
    rows, (records, skipped) = build_source(source)
    assert len(records) + sum(skipped.values()) == len(rows)
    validate_records(records, source)
    for r in records:
        assert r["source"] == source
        assert r["id"] == content_id(r["instruction"], r["input"], r["output"])
        assert set(FIELDS) <= set(r)


def test_sst2_labels_and_unlabelled_rows():
    _, (records, skipped) = build_source("sst2")
    assert {r["output"] for r in records} == {"Positive", "Negative"}
    assert skipped["unlabelled row"] == 1
    assert all(r["instruction"] == CONFIG["sources"]["sst2"]["instruction"] for r in records)


def test_agnews_label_names():
    _, (records, _) = build_source("agnews")
    assert {r["output"] for r in records} == {"World", "Sports", "Business", "Science/Technology"}
    apple = next(r for r in records if r["input"].startswith("Apple Introduces"))
    assert apple["output"] == "Science/Technology"


def test_squad_question_context_answer():
    _, (records, skipped) = build_source("qa_squad")
    tesla = next(r for r in records if r["instruction"] == "In which village was Tesla born?")
    assert tesla["output"] == "Smiljan" and "Smiljan" in tesla["input"]
    assert skipped["no gold answer"] == 1


def test_qa_cnn_closed_book_keeps_provenance():
    _, (records, _) = build_source("qa_cnn")
    r = next(r for r in records if r["instruction"] == "Where is Cui Hongfang from?")
    assert r["input"] == ""
    assert r["meta"]["persona_name"] == "Local News Reader"
    assert "Heilongjiang" in r["meta"]["reference_contexts"][0]
    assert r["meta"]["synthesizer_name"] and r["meta"]["article_id"]


def test_summarization_and_sebastian():
    _, (cnn, _) = build_source("summarization_cnn")
    assert all(r["instruction"].startswith("Summarize") for r in cnn)
    assert any(len(r["input"]) > 5000 for r in cnn)  # the long article is there for curation
    _, (seb, _) = build_source("sebastian")
    mexico = next(r for r in seb if r["instruction"] == "What is the capital of Mexico?")
    assert mexico["output"] == "The capital of Mexico is Mexico City." and mexico["input"] == ""


def test_limit_is_seeded_and_deterministic():
    spec = CONFIG["sources"]["sst2"]
    loader = dict(spec["loader"], data_files=str(REPO / spec["loader"]["data_files"]))
    a = [r["idx"] for r in load_corpus(loader, limit=5, seed=1)]
    b = [r["idx"] for r in load_corpus(loader, limit=5, seed=1)]
    c = [r["idx"] for r in load_corpus(loader, limit=5, select="first")]
    assert a == b and len(a) == 5 and c == [0, 1, 2, 3, 4]


def test_bad_row_names_file_row_and_field(tmp_path):
    p = tmp_path / "sst2.jsonl"
    p.write_text(json.dumps({"idx": 0, "sentence": "fine", "label": 1}) + "\n"
                 + json.dumps({"idx": 1, "sentence": "odd", "label": 7}) + "\n")
    rows = load_corpus({"path": "json", "data_files": str(p), "split": "train"})
    with pytest.raises(DataError) as e:
        build("sst2", rows, CONFIG["sources"]["sst2"], "sst2", where=str(p))
    msg = str(e.value)
    assert str(p) in msg and "record 1" in msg and "field 'label'" in msg


def test_missing_column_names_it(tmp_path):
    p = tmp_path / "ag.jsonl"
    p.write_text(json.dumps({"body": "x", "label": 0}) + "\n")
    rows = load_corpus({"path": "json", "data_files": str(p), "split": "train"})
    with pytest.raises(DataError, match="record 0: field 'text': missing"):
        build("agnews", rows, CONFIG["sources"]["agnews"], "agnews", where=str(p))


def test_unreadable_corpus_file_is_one_clear_error(tmp_path):
    p = tmp_path / "ag.jsonl"
    p.write_text('{"text": "fine", "label": 1}\n{"text": broken\n')
    with pytest.raises(DataError, match=r"ag.jsonl.*cannot be read by datasets.load_dataset"):
        load_corpus({"path": "json", "data_files": str(p), "split": "train"})
