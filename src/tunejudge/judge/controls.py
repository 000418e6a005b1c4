"""Judge controls: answers whose right verdict is known, judged beside the models.

- positive: the test item's own reference answer (a sound judge scores it high);
- negative: the reference answer of another test item of the same source (fluent, on-topic for the
  source, and wrong for this item: a sound judge scores it low).

An empty answer is no control (it costs no request and scores 0 by rule). The judge's validity is
how often it ranks the positive above the negative: the AUC, per metric and source, pooled per
metric, with a bootstrap CI over items; the judge passes when every metric's pooled AUC reaches
``judge.controls.min_auc``, and no adversarial answer (:mod:`.adversarial`) scores above the negative.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np

POSITIVE, NEGATIVE = "control:positive", "control:negative"
ARMS = (POSITIVE, NEGATIVE)


def _rank(seed: int, rid: str) -> str:
    return hashlib.sha256(f"{seed}:controls:{rid}".encode()).hexdigest()


def control_items(items: list[dict], per_source: int | None, seed: int) -> dict[str, list[dict]]:
    """Arm -> judge items (test records with ``response``). Per source, the first ``per_source``
    items in a seeded order (all when None); each negative borrows the reference of the next item
    of that order whose reference differs. Items whose source has no such other item are left out."""
    by_source: dict[str, list[dict]] = {}
    for it in items:
        by_source.setdefault(it["source"], []).append(it)
    out: dict[str, list[dict]] = {POSITIVE: [], NEGATIVE: []}
    for source in sorted(by_source):
        ordered = sorted(by_source[source], key=lambda it: _rank(seed, it["id"]))
        chosen = ordered if per_source is None else ordered[:per_source]
        for i, it in enumerate(chosen):
            other = next((o for o in ordered[i + 1:] + ordered[:i] if o["output"].strip() != it["output"].strip()),
                         None)
            if other is None or not it["output"].strip():
                continue
            base = {k: it[k] for k in ("id", "source", "instruction", "input", "output")}
            out[POSITIVE].append({**base, "response": it["output"]})
            out[NEGATIVE].append({**base, "response": other["output"], "borrowed_from": other["id"]})
    return out


def auc(pos, neg) -> float:
    """P(positive > negative) + P(tie) / 2 over every (positive, negative) pair."""
    pos, neg = np.asarray(pos, dtype=float), np.asarray(neg, dtype=float)
    if not len(pos) or not len(neg):
        return math.nan
    d = pos[:, None] - neg[None, :]
    return float(((d > 0).sum() + 0.5 * (d == 0).sum()) / d.size)


def paired_auc(pairs: np.ndarray) -> float:
    """AUC over rows of (positive score, negative score) of the same items."""
    return auc(pairs[:, 0], pairs[:, 1])


def adversarial_settings(own: tuple[str, ...], measured: list) -> list[tuple[str, ...]]:
    """The defence settings the adversarial controls are judged under: the judge's own first, then each
    one of ``judge.controls.adversarial.defences`` that differs from it."""
    from .defences import check

    out = [check(own)]
    for setting in measured or []:
        s = check(setting)
        if s not in out:
            out.append(s)
    return out
