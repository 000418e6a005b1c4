"""Preference sets: (prompt, chosen, rejected) pairs in TRL's format, from verifiable rewards, the judge,
or a file -- and never from a test item.

A row of ``data/preferences/<set>.jsonl``::

    {"prompt": <the study's prompt text>, "chosen": ..., "rejected": ...,        # TRL's preference format
     "id", "source", "instruction", "input", "output", "group"?,                 # the training record it asks
     "part": "train" | "val", "margin": chosen's score - rejected's,
     "chosen_score", "rejected_score", "origin": {"kind", "model", "scorer", "samples", ...}}

- ``verifiable`` (RLVR-style): k sampled answers of a model to each training prompt, each scored by its
  source's judge-free metric (label accuracy, token F1, ROUGE-L); chosen and rejected are the best and the
  worst when their margin exceeds ``min_margin``.
- ``judge``: the same samples scored by the judge pointwise (GEval, summed over its metrics), the same
  rule; or two samples compared pairwise in both orders, a verdict that flips with the order dropped. A
  judge that fails its controls is refused unless the set says ``allow_failing_judge: true``.
- ``file``: rows in TRL's format (``prompt``, ``chosen``, ``rejected``; the prompt taken as an instruction
  the model's own prompt format wraps, unless the row gives ``instruction`` and ``input``).

Only training prompts, ever: every set is checked against the test set as the split is (ids, group keys,
near duplicates) before it is written (:func:`check_no_test_prompt`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from ..errors import DataError
from .prompt import format_prompt
from .split import check_no_leak

KINDS = ("verifiable", "judge", "file")
RECORD_KEYS = ("id", "source", "instruction", "input", "output", "group")


def _row(rec: dict, part: str, chosen: tuple[str, float], rejected: tuple[str, float], origin: dict) -> dict:
    return {"prompt": format_prompt(rec), "chosen": chosen[0], "rejected": rejected[0],
            **{k: rec[k] for k in RECORD_KEYS if k in rec}, "part": part,
            "margin": round(chosen[1] - rejected[1], 6), "chosen_score": round(chosen[1], 6),
            "rejected_score": round(rejected[1], 6), "origin": origin}


def best_and_worst(answers: list[str], scores: list[float]) -> tuple[tuple[str, float], tuple[str, float]]:
    """(best, worst) of scored answers; ties to the earlier sample (a stable, seeded order)."""
    ranked = sorted(range(len(answers)), key=lambda i: (-scores[i], i))
    return (answers[ranked[0]], scores[ranked[0]]), (answers[ranked[-1]], scores[ranked[-1]])


def ranked_pairs(records: list[dict], parts: dict[str, str], samples: dict[str, list[str]],
                 score: Callable[[dict, str, int], float], min_margin: float, origin: dict) -> tuple[list[dict], dict]:
    """Pairs from scored samples: per record, its best and worst samples when the margin exceeds
    ``min_margin`` and the two texts differ. Returns (rows, counts of what was kept and left out)."""
    rows, counts = [], {"prompts": 0, "kept": 0, "below_margin": 0, "identical": 0}
    for rec in records:
        answers = samples.get(rec["id"])
        if not answers:
            continue
        counts["prompts"] += 1
        scores = [score(rec, a, j) for j, a in enumerate(answers)]
        chosen, rejected = best_and_worst(answers, scores)
        if chosen[0].strip() == rejected[0].strip():
            counts["identical"] += 1
        elif chosen[1] - rejected[1] <= min_margin:
            counts["below_margin"] += 1
        else:
            rows.append(_row(rec, parts[rec["id"]], chosen, rejected, origin))
            counts["kept"] += 1
    return rows, counts


def pairwise_pairs(records: list[dict], parts: dict[str, str], samples: dict[str, list[str]],
                   verdicts: dict[str, tuple[str, bool]], origin: dict) -> tuple[list[dict], dict]:
    """Pairs from the judge's pairwise verdicts on the first two samples of each record, in both orders:
    ``verdicts[id] = (winner 'a' | 'b' | 'tie', consistent)``; a tie or a verdict that flipped is dropped."""
    rows, counts = [], {"prompts": 0, "kept": 0, "flipped": 0, "tie": 0, "identical": 0}
    for rec in records:
        answers = samples.get(rec["id"]) or []
        if len(answers) < 2 or rec["id"] not in verdicts:
            continue
        counts["prompts"] += 1
        winner, consistent = verdicts[rec["id"]]
        if answers[0].strip() == answers[1].strip():
            counts["identical"] += 1
        elif not consistent:
            counts["flipped"] += 1
        elif winner == "tie":
            counts["tie"] += 1
        else:
            a, b = (answers[0], 1.0), (answers[1], 0.0)
            chosen, rejected = (a, b) if winner == "a" else ((b[0], 1.0), (a[0], 0.0))
            rows.append(_row(rec, parts[rec["id"]], chosen, rejected, origin))
            counts["kept"] += 1
    return rows, counts


def file_pairs(rows: list[dict], path, val_fraction: float, origin: dict) -> list[dict]:
    """A TRL-format preference file as preference rows; a bad row stops the step naming the file, the row
    and the field. A row without ``instruction`` takes its ``prompt`` as the instruction."""
    out = []
    for i, r in enumerate(rows):
        for field in ("prompt", "chosen", "rejected"):
            if not isinstance(r.get(field), str) or not r[field].strip():
                if not (field == "prompt" and isinstance(r.get("instruction"), str) and r["instruction"].strip()):
                    raise DataError(path, i, field, "a non-empty string (TRL's preference format)")
        rec = {"instruction": r.get("instruction") or r["prompt"], "input": r.get("input") or "",
               "output": r.get("output") or r["chosen"], "source": r.get("source") or "file"}
        rec["id"] = r.get("id") or hashlib.sha256("\0".join((rec["instruction"], rec["input"])).encode()).hexdigest()[:16]
        if r.get("group"):
            rec["group"] = r["group"]
        part = "val" if int(hashlib.sha256(rec["id"].encode()).hexdigest()[:8], 16) / 2**32 < val_fraction else "train"
        margin = r.get("margin")
        out.append(_row(rec, part, (r["chosen"], float(margin) if isinstance(margin, (int, float)) else 1.0),
                        (r["rejected"], 0.0), {**origin, **(r.get("origin") or {})}))
    return out


def check_no_test_prompt(rows: list[dict], test: list[dict], threshold: float, where: str) -> None:
    """No preference row asks a test item, shares its group (a news article), or nearly duplicates it:
    the split's own leak check (:func:`tunejudge.data.split.check_no_leak`)."""
    records = [{"id": r["id"], "source": r.get("source", "file"), "instruction": r["instruction"],
                "input": r.get("input") or "", "output": r.get("output") or "", **({"group": r["group"]} if r.get("group")
                                                                               else {})} for r in rows]
    check_no_leak(test, {f"preference set {where}": records}, threshold)


def summary(rows: list[dict], counts: dict, origin: dict) -> dict:
    """What the report says of a set: its size, sources, margins and where its preferences came from."""
    by_source: dict[str, int] = {}
    for r in rows:
        by_source[r.get("source", "file")] = by_source.get(r.get("source", "file"), 0) + 1
    margins = sorted(r["margin"] for r in rows)
    return {"pairs": len(rows), "train": sum(r["part"] == "train" for r in rows),
            "val": sum(r["part"] == "val" for r in rows), "by_source": dict(sorted(by_source.items())),
            "margin": {"mean": round(sum(margins) / len(margins), 6) if margins else None,
                       "min": margins[0] if margins else None, "max": margins[-1] if margins else None},
            "counts": counts, "origin": origin}


def choose_prompts(train: list[dict], val: list[dict], sources: list[str] | None, n: int | None,
                   seed: int) -> list[tuple[dict, str]]:
    """The records a set samples answers to, with their part (train or val): of the given sources (all
    when None), at most ``n`` by a seeded hash of their ids (all when None), in that order."""
    from .split import rank_key

    pool = [(r, "train") for r in train] + [(r, "val") for r in val]
    pool = [(r, part) for r, part in pool if sources is None or r["source"] in sources]
    pool.sort(key=lambda x: rank_key(seed, x[0]["id"], "preferences"))
    return pool if n is None else pool[:n]


def build(spec: dict, *, samples: dict | None, file_rows: list[dict] | None, where: str,
          score_verifiable: Callable[[dict, str], float] | None = None,
          judge_scores: dict | None = None, pairwise_verdicts: dict | None = None,
          judge_verdict: dict | None = None) -> tuple[list[dict], dict]:
    """A preference set's rows and counts, from its spec (``preferences.<set>``): its samples ranked by a
    verifiable reward (``score_verifiable(record, answer)``) or by the judge (``judge_scores[(id, j)]``,
    pointwise; ``pairwise_verdicts[id]``, pairwise), or its file's rows. A judge that fails its controls
    (``judge_verdict['passes']`` false) is refused unless ``allow_failing_judge``."""
    kind = spec["from"]
    if kind == "file":
        origin = {"kind": "file", "path": spec["path"]}
        return file_pairs(file_rows or [], spec["path"], spec.get("val_fraction", 0.1), origin), {"rows": len(file_rows or [])}
    records = [it["record"] for it in samples["items"]]
    parts = {it["record"]["id"]: it["part"] for it in samples["items"]}
    answers = {it["record"]["id"]: it["samples"] for it in samples["items"]}
    origin = {"kind": kind, "model": samples["model"], "samples": samples["sampling"]["samples"],
              "temperature": samples["sampling"]["temperature"], "top_p": samples["sampling"]["top_p"]}
    if kind == "verifiable":
        origin["scorer"] = "judge-free metric of each source"
        return ranked_pairs(records, parts, answers, lambda rec, a, j: score_verifiable(rec, a),
                            float(spec.get("min_margin", 0.0)), origin)
    verdict = judge_verdict or {}
    if verdict.get("passes") is not True:
        why = ("its controls are off" if not verdict.get("enabled") else
               f"its controls cannot decide yet: too few control items (about {verdict.get('items_needed')} needed; "
               "judge.controls.items_per_source)" if verdict.get("passes") is None else
               "it fails its controls (" + ", ".join(
                   ([f"AUC below {verdict.get('min_auc')} on {', '.join(verdict.get('failing_metrics') or [])}"]
                    if verdict.get("failing_metrics") else [])
                   + ([f"talked into a score by {', '.join(verdict['adversarial']['fooled_by'])}"]
                      if (verdict.get("adversarial") or {}).get("fooled_by") else [])) + ")")
        if not spec.get("allow_failing_judge"):
            from ..errors import ConfigError

            raise ConfigError(f"{where}: the judge ranks this set's samples, and {why}: its preferences would teach "
                              "a model what a judge that cannot tell right from wrong likes. Set "
                              f"preferences.<set>.allow_failing_judge: true to train on them anyway (the report says so)")
        origin["judge_failed_controls"] = why
    origin["scorer"] = "judge"
    origin["judge_mode"] = spec.get("judge_mode", "pointwise")
    if origin["judge_mode"] == "pairwise":
        return pairwise_pairs(records, parts, answers, pairwise_verdicts or {}, origin)
    return ranked_pairs(records, parts, answers, lambda rec, a, j: judge_scores.get((rec["id"], j), float("nan")),
                        float(spec.get("min_margin", 0.0)), origin)
