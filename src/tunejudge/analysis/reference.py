"""Judge-free reference metrics: cheap, deterministic scores beside the LLM judge.

Every answer gets ROUGE-L F1, SQuAD token F1 and SQuAD exact match against the expected output;
classification items (SST-2, AG News) also get exact-label accuracy. Each source has a *kind*
(from its builder) that names its headline metric, so the report can set the judge against the
plain metric that suits each task.
"""

from __future__ import annotations

import re
import string
from collections import Counter

KIND_OF_BUILDER = {
    "sst2": "classification",
    "agnews": "classification",
    "summarization_cnn": "summary",
    "qa_squad": "qa",
    "qa_cnn": "qa",
    "sebastian": "open",
}
HEADLINE = {"classification": "label_accuracy", "summary": "rouge_l", "qa": "token_f1", "open": "rouge_l"}

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD's normalisation: lower case, no punctuation, no articles, single spaces."""
    text = text.lower().translate(_PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, reference: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(reference))


def token_f1(prediction: str, reference: str) -> float:
    pred, ref = normalize_answer(prediction).split(), normalize_answer(reference).split()
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def _lcs(a: list[str], b: list[str]) -> int:
    if len(a) < len(b):
        a, b = b, a
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F1 on lower-cased word tokens (punctuation split off)."""
    tok = re.compile(r"\w+")
    pred, ref = tok.findall(prediction.lower()), tok.findall(reference.lower())
    if not pred or not ref:
        return float(pred == ref)
    lcs = _lcs(pred, ref)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(pred), lcs / len(ref)
    return 2 * precision * recall / (precision + recall)


def label_accuracy(prediction: str, label: str) -> float:
    """1 if the answer's first non-empty line is the label (case, punctuation and spaces aside)."""
    first = next((line for line in prediction.splitlines() if line.strip()), "")
    return float(normalize_answer(first) == normalize_answer(label))


def score_answer(kind: str, prediction: str, reference: str) -> dict:
    scores = {
        "exact_match": exact_match(prediction, reference),
        "token_f1": round(token_f1(prediction, reference), 6),
        "rouge_l": round(rouge_l(prediction, reference), 6),
        "label_accuracy": label_accuracy(prediction, reference) if kind == "classification" else None,
    }
    return {"kind": kind, "headline": HEADLINE[kind], **scores}


def reference_rows(items: list[dict], model: str, kinds: dict[str, str]) -> list[dict]:
    """One row per answer (``responses.answers_of`` items: test record + ``response``), with the checks the
    answer fails (``flags``: it addresses the judge, or loops, :mod:`tunejudge.judge.flags`)."""
    from ..judge.flags import flag_answer

    return [
        {"id": it["id"], "source": it["source"], "model": model,
         **score_answer(kinds.get(it["source"], "open"), it["response"], it["output"]),
         "flags": flag_answer(it["response"], it)}
        for it in items
    ]
