"""Judge scores that cannot leave their range.

GEval's probability-weighted score (G-Eval, Liu et al. 2023) is the expectation of the score over the
judge's distribution at the score token. deepeval's own weighting sums *every* decimal token among
the top logprobs, so a judge that puts mass on "100" or "80" (it thought "out of 100") yields a
weighted score far outside 0-10: a 5.3 on a 0-1 scale reached the report before this module.

Here the expectation is taken over the tokens that are valid scores of the metric's range only,
renormalised over them; the probability on numbers outside the range is reported as
``dropped_mass``. When the score token cannot be found among the answer's logprobs, or none of its
alternatives is a valid score, the verdict keeps the score written in its JSON (``plain``).

Every judge row carries ``weighting`` (``logprobs`` | ``plain``) and ``dropped_mass``. A row whose
score is outside 0-1 (or score_5 outside 0-5) is refused by the writer (:func:`write_judge_rows`) and
by every reader that aggregates (:func:`read_judge_rows`), naming the file, the record and the row.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError
from ..io import read_jsonl, write_jsonl

# The rule in force for logprob-weighted verdicts: part of their cache key, so a verdict weighted by an
# earlier rule (deepeval's, over every decimal token) is asked again rather than reused.
WEIGHTING_RULE = "in-range-renormalised-v1"
MIN_PROB = 0.01  # alternatives below 1% are ignored, as deepeval does
LOGPROBS, PLAIN = "logprobs", "plain"
SCORE_FIELDS = {"score": (0.0, 1.0), "score_5": (0.0, 5.0)}


@dataclass(frozen=True)
class Weighted:
    score: float  # on the metric's own scale (GEval: 0-10)
    weighting: str  # LOGPROBS | PLAIN
    dropped_mass: float  # probability on numbers that are not valid scores of the range
    note: str = ""  # why the plain score was kept


def _valid_score(token: str, lo: int, hi: int) -> int | None:
    """The integer a token spells when it is a score of [lo, hi] written canonically ("7", " 7"), else None."""
    t = token.strip()
    if not t.isascii() or not t.isdigit() or str(int(t)) != t:
        return None
    v = int(t)
    return v if lo <= v <= hi else None


def _is_number(token: str) -> bool:
    t = token.strip()
    try:
        return bool(t) and math.isfinite(float(t))
    except ValueError:
        return False


def _get(obj, name):
    return obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)


def weighted_score(raw_score: int | float, content_logprobs, lo: int, hi: int,
                   min_prob: float = MIN_PROB) -> Weighted:
    """The probability-weighted score over the valid scores at the (last) score token of the answer.

    ``content_logprobs`` is the answer's per-token logprobs (``choices[0].logprobs.content``, objects
    or dicts with ``token``, ``logprob`` and ``top_logprobs``), None when the endpoint gave none."""
    if not content_logprobs:
        return Weighted(float(raw_score), PLAIN, 0.0, "the answer carries no logprobs")
    target = str(int(raw_score)) if float(raw_score).is_integer() else str(raw_score)
    at = next((t for t in reversed(list(content_logprobs)) if (_get(t, "token") or "").strip() == target), None)
    if at is None:
        return Weighted(float(raw_score), PLAIN, 0.0, f"no token {target!r} among the answer's logprobs")
    kept: dict[int, float] = {}
    dropped = 0.0
    for alt in _get(at, "top_logprobs") or []:
        token, logprob = _get(alt, "token") or "", _get(alt, "logprob")
        if logprob is None or not math.isfinite(logprob):
            continue
        p = math.exp(logprob)
        v = _valid_score(token, lo, hi)
        if v is None:
            if _is_number(token):
                dropped += p
            continue
        if p >= min_prob:
            kept[v] = kept.get(v, 0.0) + p
    dropped = round(dropped, 6)
    total = sum(kept.values())
    if total <= 0:
        return Weighted(float(raw_score), PLAIN, dropped, "no alternative at the score token is a valid score")
    score = sum(v * p for v, p in kept.items()) / total
    return Weighted(min(max(score, float(lo)), float(hi)), LOGPROBS, dropped)  # clamp: float rounding only


def logprobs_of(response):
    """The per-token logprobs of a Chat Completions response's first choice (None when it has none)."""
    choices = getattr(response, "choices", None)
    logprobs = choices[0].logprobs if choices else None
    return (logprobs.content or None) if logprobs else None


def verdict_weighting(raw_score: int | float, response, lo: int, hi: int) -> Weighted:
    """The score of one judge answer on its ``lo``-``hi`` scale: weighted by the token distribution of
    ``response`` (the SDK's ChatCompletion), or the JSON's own score when the judge did not ask for
    logprobs (``response`` None) or the endpoint sent none."""
    if response is None:
        return Weighted(float(raw_score), PLAIN, 0.0, "logprobs are off")
    return weighted_score(raw_score, logprobs_of(response), lo, hi)


# ---------------------------------------------------------------- rows
def score_problem(row: dict) -> str | None:
    """Why a judge row's score cannot be stored or aggregated (None: it can)."""
    for field, (lo, hi) in SCORE_FIELDS.items():
        v = row.get(field)
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not lo <= v <= hi:
            return f"field '{field}' = {v!r} is outside its range {lo:g}-{hi:g}"
    return None


def _name(row: dict) -> str:
    return f"item {row.get('id')!r}, model {row.get('model')!r}, metric {row.get('metric')!r}"


def check_rows(rows: list[dict], path) -> None:
    """Stop at the first row whose score is out of range, naming the file, record and row."""
    for i, row in enumerate(rows):
        problem = score_problem(row)
        if problem:
            raise DataError(path, i, problem=f"{_name(row)}: {problem}; a judge score outside its range is never "
                                             "stored or aggregated")


def write_judge_rows(path, rows: list[dict]) -> None:
    """The judge's rows, written only when every score is within its range (nothing is written otherwise)."""
    check_rows(rows, path)
    write_jsonl(path, rows)


def read_judge_rows(path) -> list[dict]:
    """A judge row file, refused (naming the file and record) when any score is outside its range."""
    rows = read_jsonl(path)
    check_rows(rows, Path(path))
    return rows
