"""Judge-free reference metrics."""

import pytest

from tunejudge.analysis.reference import (
    KIND_OF_BUILDER,
    exact_match,
    label_accuracy,
    reference_rows,
    rouge_l,
    score_answer,
    token_f1,
)


def test_exact_match_and_token_f1_use_squad_normalisation():
    assert exact_match("The Eiffel Tower.", "eiffel tower") == 1.0
    assert exact_match("Eiffel", "Eiffel Tower") == 0.0
    # "paris france" vs "paris": precision 1/2, recall 1 -> F1 2/3
    assert token_f1("Paris, France", "Paris") == pytest.approx(2 / 3)
    assert token_f1("nothing shared", "Paris") == 0.0
    assert token_f1("", "") == 1.0 and token_f1("", "Paris") == 0.0


def test_rouge_l_is_the_lcs_f_measure():
    # LCS of "the cat sat on the mat" / "the cat is on the mat" = the cat on the mat (5)
    assert rouge_l("the cat sat on the mat", "the cat is on the mat") == pytest.approx(5 / 6)
    assert rouge_l("a b c", "c b a") == pytest.approx(1 / 3)
    assert rouge_l("Same words.", "same WORDS") == 1.0
    assert rouge_l("", "x") == 0.0


def test_label_accuracy_reads_the_first_line():
    assert label_accuracy("Positive\n### Instruction: more text", "Positive") == 1.0
    assert label_accuracy("\n  science/technology.  ", "Science/Technology") == 1.0
    assert label_accuracy("It is Positive", "Positive") == 0.0
    assert label_accuracy(", 2015", "Science/Technology") == 0.0


def test_each_source_gets_its_headline_metric():
    assert set(KIND_OF_BUILDER) == {"sst2", "agnews", "summarization_cnn", "qa_squad", "qa_cnn", "sebastian"}
    cls = score_answer("classification", "Negative", "Negative")
    assert cls["headline"] == "label_accuracy" and cls["label_accuracy"] == 1.0
    assert score_answer("qa", "x", "y")["label_accuracy"] is None
    assert score_answer("summary", "x", "y")["headline"] == "rouge_l"
    items = [{"id": "a", "source": "sst2", "instruction": "i", "input": "", "output": "Positive", "response": "Positive"},
             {"id": "b", "source": "qa_cnn", "instruction": "i", "input": "", "output": "Paris", "response": "In Paris"}]
    rows = reference_rows(items, "full", {"sst2": "classification", "qa_cnn": "qa"})
    assert [r["kind"] for r in rows] == ["classification", "qa"] and rows[1]["token_f1"] == pytest.approx(2 / 3)
    assert all(r["model"] == "full" for r in rows)
