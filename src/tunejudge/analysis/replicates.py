"""Statistics over seeds and items: do the study's conclusions survive reseeding?

A comparison on one training run per model bootstraps test items only: it says how sure we are about
*this* fine-tuned model on *these* items, not whether another seed of the same recipe would agree. With
several seeds per model (``tunejudge.run.runs``), the Multi-Bootstrap of Sellam et al. (MultiBERTs, ICLR
2022) resamples seeds and items jointly: each resample draws, with replacement, the seeds of each side
(independently: two recipes' seeds are not paired) and the test items (once for both sides: the
comparison stays paired over items), and takes the difference of the two means over the drawn seeds and
items. Its percentile interval covers seed-to-seed variation as well as item sampling.

With few seeds, any bootstrap over seeds is rough: the spread of 3 values is a poor estimate of the
spread of the recipe. ``tests/test_replicates.py`` measures it (two recipes with the same true mean, a
realistic seed effect, 100 items): a nominal 95% interval excludes a true zero in about 11% of
simulations at 3 seeds per side, about 6% at 5, and holds at 10; the items-only interval of one seed per
recipe, in 40-50%. Below :data:`MIN_SEEDS` seeds on a replicated side the report says so.

Pure functions over numpy arrays and pandas frames; every resampling takes an explicit seed.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .stats import bootstrap_ci, group_members, headline_values, unit_labels

MIN_SEEDS = 5  # seeds per replicated side at which the Multi-Bootstrap interval is close to its level
MEASURES = {"total": "judge total (0-15 with three metrics)", "reference": "judge-free headline metric (0-1)"}

SEEDS_COLUMNS = ["measure", "model", "run", "seed", "mean", "lo", "hi", "n", "interval"]
REPLICATES_COLUMNS = ["pair", "a", "b", "measure", "seeds_a", "seeds_b", "n", "gain", "items_lo", "items_hi",
                      "mb_lo", "mb_hi", "per_seed", "verdicts", "seeds_disagree", "few_seeds", "note"]


def multi_bootstrap(a, b=None, n_boot: int = 2000, seed: int = 0, level: float = 0.95,
                    groups=None) -> tuple[float, float]:
    """Percentile interval of mean(a) - mean(b) (or of mean(a) alone), seeds and items resampled jointly.

    ``a``, ``b``: arrays [seeds, items] over the same items in the same order (items drawn once per
    resample for both sides); each side's seeds are drawn independently, with replacement. ``groups``
    (one label per item): the items' groups are drawn, each with all its items (as
    :func:`tunejudge.analysis.stats.bootstrap_ci` does)."""
    a = np.asarray(a, dtype=float)
    if a.ndim != 2 or a.size == 0:
        return (math.nan, math.nan)
    n_items = a.shape[1]
    rng = np.random.default_rng(seed)
    items = _item_weights(rng, n_boot, n_items, groups)

    def side(x):
        k = x.shape[0]
        w = rng.multinomial(k, np.full(k, 1 / k), size=n_boot) / k
        return np.einsum("bs,si,bi->b", w, x, items)

    stats = side(a)
    if b is not None:
        b = np.asarray(b, dtype=float)
        if b.ndim != 2 or b.shape[1] != n_items:
            raise ValueError(f"multi_bootstrap: b has shape {b.shape}, a {a.shape}: the same items on both sides")
        stats = stats - side(b)
    lo, hi = np.percentile(stats, [(1 - level) / 2 * 100, (1 + level) / 2 * 100])
    return (float(lo), float(hi))


def _item_weights(rng, n_boot: int, n_items: int, groups) -> np.ndarray:
    """Each resample's weight on every item: how often it was drawn, over the items drawn; by group when
    ``groups`` is given (a group's items share its count)."""
    if groups is None:
        return rng.multinomial(n_items, np.full(n_items, 1 / n_items), size=n_boot) / n_items
    members = group_members(n_items, groups)
    counts = rng.multinomial(len(members), np.full(len(members), 1 / len(members)), size=n_boot)
    w = np.zeros((n_boot, n_items))
    for g, m in enumerate(members):
        w[:, m] = counts[:, [g]]
    return w / w.sum(axis=1, keepdims=True)


def verdict(lo: float, hi: float) -> str:
    """What an interval of a - b concludes."""
    if lo > 0:
        return "a better"
    if hi < 0:
        return "b better"
    return "no difference"


def per_item(judge: pd.DataFrame | None, reference: pd.DataFrame | None, metrics: list[str]) -> dict[str, pd.DataFrame]:
    """Per measure, a frame indexed by item id with one column per run: the judge total (the sum of the 0-5
    scores over ``metrics``, NaN where one errored) and the judge-free headline metric."""
    from .stats import totals

    out = {}
    if judge is not None and len(judge):
        tot = totals(judge, metrics)  # (id, source) x run, every id crossed with every source
        out["total"] = tot[tot.notna().any(axis=1)].droplevel("source")
    if reference is not None and len(reference):
        ref = reference[["id", "model", "headline", "rouge_l", "token_f1", "label_accuracy"]].copy()
        ref["value"] = headline_values(ref)
        out["reference"] = ref.pivot_table(index="id", columns="model", values="value", aggfunc="first", dropna=False)
    return out


def _matrix(frame: pd.DataFrame, runs: list[str], items) -> np.ndarray:
    return frame.loc[items, runs].to_numpy(dtype=float).T


def _common(frame: pd.DataFrame, runs: list[str]) -> list:
    if any(r not in frame for r in runs):
        return []
    return list(frame[runs].dropna().index)


def seeds_table(values: dict[str, pd.DataFrame], runs_of: dict[str, list[str]], seed_of: dict[str, int | None],
                n_boot: int, seed: int, level: float, groups: dict | None = None) -> pd.DataFrame:
    """Per measure and model: each run's mean with its items-only interval, and, for a model with several
    runs, the pooled mean with its Multi-Bootstrap interval (run ``pooled``), on the items every run of the
    model has."""
    out = []
    for k, (measure, frame) in enumerate(values.items()):
        for j, (model, runs) in enumerate(runs_of.items()):
            items = _common(frame, runs)
            if not items:
                continue
            x = _matrix(frame, runs, items)
            g = unit_labels(items, groups) if groups is not None else None
            for i, run in enumerate(runs):
                lo, hi = bootstrap_ci(x[i], np.mean, n_boot, seed + 7919 * k + 31 * j + i, level, groups=g)
                out.append({"measure": measure, "model": model, "run": run, "seed": seed_of.get(run), "mean": float(x[i].mean()),
                            "lo": lo, "hi": hi, "n": len(items), "interval": "items"})
            if len(runs) > 1:
                lo, hi = multi_bootstrap(x, None, n_boot, seed + 7919 * k + 31 * j, level, groups=g)
                out.append({"measure": measure, "model": model, "run": "pooled", "seed": None, "mean": float(x.mean()),
                            "lo": lo, "hi": hi, "n": len(items), "interval": "multi-bootstrap"})
    return pd.DataFrame(out, columns=SEEDS_COLUMNS)


def _seed_pairs(ra: list[str], rb: list[str]) -> list[tuple[str, str]]:
    """The per-seed comparisons: seed by seed in order where both sides have several, else each run of
    the replicated side against the other's one run."""
    if len(ra) > 1 and len(rb) > 1:
        return list(zip(ra, rb))
    return [(x, y) for x in ra for y in rb]


def replicates_table(values: dict[str, pd.DataFrame], runs_of: dict[str, list[str]], seed_of: dict[str, int | None],
                     pairs: list, n_boot: int, seed: int, level: float, min_seeds: int = MIN_SEEDS,
                     groups: dict | None = None) -> pd.DataFrame:
    """Per pair of the analysis with several seeds on a side, and per measure: the pooled gain a - b, today's
    items-only interval (each model's first seed), the Multi-Bootstrap interval, the gain and verdict of each
    seed, and flags: ``seeds_disagree`` (the gain's sign or its interval's verdict differs between seeds) and
    ``few_seeds`` (a replicated side has fewer than ``min_seeds``)."""
    out = []
    for k, (measure, frame) in enumerate(values.items()):
        for j, (a, b) in enumerate(pairs):
            ra, rb = runs_of.get(a, []), runs_of.get(b, [])
            if not ra or not rb or (len(ra) == 1 and len(rb) == 1):
                continue
            items = _common(frame, ra + rb)
            if not items:
                continue
            xa, xb = _matrix(frame, ra, items), _matrix(frame, rb, items)
            salt = seed + 7919 * k + 31 * j
            g = unit_labels(items, groups) if groups is not None else None
            ilo, ihi = bootstrap_ci(xa[0] - xb[0], np.mean, n_boot, salt, level, groups=g)
            mlo, mhi = multi_bootstrap(xa, xb, n_boot, salt, level, groups=g)
            per, verdicts, signs = [], [], set()
            for i, (x, y) in enumerate(_seed_pairs(ra, rb)):
                d = frame.loc[items, x].to_numpy(dtype=float) - frame.loc[items, y].to_numpy(dtype=float)
                lo, hi = bootstrap_ci(d, np.mean, n_boot, salt + 1 + i, level, groups=g)
                v = verdict(lo, hi)
                verdicts.append(v)
                gain = float(d.mean())
                if round(gain, 6):
                    signs.add(gain > 0)
                name = "/".join(str(seed_of.get(r)) for r, many in ((x, len(ra) > 1), (y, len(rb) > 1)) if many)
                per.append(f"seed {name}: {gain:+.3f} [{lo:+.3f}, {hi:+.3f}] {v}")
            replicated = [m for m, r in ((a, ra), (b, rb)) if len(r) > 1]
            note = "" if len(replicated) == 2 else (
                f"only {replicated[0]} has replicates: {b if replicated[0] == a else a} is one run")
            out.append({"pair": f"{a} vs {b}", "a": a, "b": b, "measure": measure, "seeds_a": len(ra), "seeds_b": len(rb),
                        "n": len(items), "gain": float(xa.mean() - xb.mean()), "items_lo": ilo, "items_hi": ihi,
                        "mb_lo": mlo, "mb_hi": mhi, "per_seed": "; ".join(per), "verdicts": "; ".join(verdicts),
                        "seeds_disagree": len(set(verdicts)) > 1 or len(signs) > 1,
                        "few_seeds": any(len(r) < min_seeds for r in (ra, rb) if len(r) > 1), "note": note})
    return pd.DataFrame(out, columns=REPLICATES_COLUMNS)


# ---------------------------------------------------------------- sweeps
SWEEP_COLUMNS = ["sweep", "point", "run", "seed", "setting", "value", "val_loss", "reference", "total"]


def sweep_rows(runs: dict[str, dict], histories: dict[str, dict], reference: pd.DataFrame,
               judge: pd.DataFrame | None, metrics: list[str]) -> pd.DataFrame:
    """One row per sweep run and swept setting: the point, the seed, the setting's value, the final validation
    loss, the judge-free headline metric's mean and (judged sweeps) the judge total's mean."""
    values = per_item(judge, reference, metrics)
    out = []
    for name, r in runs.items():
        if r["sweep"] is None:
            continue
        means = {m: float(values[m][name].mean()) if m in values and name in values[m] else math.nan
                 for m in ("reference", "total")}
        for setting, value in r["settings"].items():
            out.append({"sweep": r["sweep"], "point": r["point"], "run": name, "seed": r["seed"], "setting": setting,
                        "value": value, "val_loss": histories.get(name, {}).get("final_val_loss"), **means})
    return pd.DataFrame(out, columns=SWEEP_COLUMNS)
