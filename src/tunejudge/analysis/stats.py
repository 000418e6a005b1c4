"""The study's statistics, with uncertainty: means, win/tie/loss, gains, ratios, judge checks.

Pure functions over plain lists and pandas frames; every resampling takes an explicit seed, so
the same inputs give the same numbers (and the same bytes in the tables).

Conventions: a model's per-item *total* is the sum of its 0-5 judge scores over the metrics
(0-15 with the study's three). Every table is computed on one item set: the items every model has
a score for on every metric (:func:`common_items`); an item with an error row (or no row) for any
model is left out of all of them, and listed with the reason. Totals are compared after rounding to
:data:`DECIMALS` places, so float noise in probability-weighted scores is a tie, not a win.
Confidence intervals are percentile bootstraps over test items (paired: both models' answers to an
item are resampled together); a resample whose statistic is undefined (a ratio over a zero mean)
is never dropped: the interval is then reported as undefined, or infinite where the statistic is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from itertools import combinations

import numpy as np
import pandas as pd

from ..judge.scores import LOGPROBS, check_rows
from ..run.config import PRIMARY_JUDGE

DECIMALS = 6  # totals are compared at this precision: scores carry no more (logprob weights, float sums)


# ---------------------------------------------------------------- statistics
def bootstrap_ci(values, stat=np.mean, n_boot: int = 2000, seed: int = 0, level: float = 0.95,
                 groups=None) -> tuple:
    """Percentile bootstrap CI of ``stat`` over the rows of ``values`` (1-D, or 2-D rows = items).

    ``groups`` (one label per row): resample the groups, not the rows -- every row of a drawn group
    comes along (items that share a CNN article or a SQuAD passage move together, and so do the
    metrics of one item); None: every row is its own group. The groups are drawn in the sorted order
    of their labels, so the same rows in any order give the same interval.

    Every resample counts: when ``stat`` is undefined (NaN) on any of them the CI is (NaN, NaN);
    infinite values (a ratio over a zero mean) stay in and can make a bound infinite."""
    values = np.asarray(values, dtype=float)
    n = len(values)
    if n == 0:
        return (math.nan, math.nan)
    members = group_members(n, groups)
    if len(members) == 1:
        v = float(stat(values))
        return (v, v)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(members), size=(n_boot, len(members)))
    if all(len(m) == 1 for m in members):
        flat = np.array([m[0] for m in members])
        stats = np.array([stat(values[flat[d]]) for d in draws], dtype=float)
    else:
        stats = np.array([stat(values[np.concatenate([members[g] for g in d])]) for d in draws], dtype=float)
    if np.isnan(stats).any():
        return (math.nan, math.nan)
    big = np.finfo(float).max / 4  # infinities through the interpolation: inf - inf would be NaN
    wide = expanded_level(level, len(members))
    bounds = np.percentile(np.clip(stats, -big, big), [(1 - wide) / 2 * 100, (1 + wide) / 2 * 100])
    lo, hi = (math.copysign(math.inf, v) if abs(v) >= big else float(v) for v in bounds)
    return (lo, hi)


def expanded_level(level: float, n: int) -> float:
    """The percentile level that makes a bootstrap interval over ``n`` resampling units cover as a
    ``level`` interval should: Hesterberg's expanded percentile interval ("What teachers should know
    about the bootstrap", The American Statistician, 2015) widens the percentiles to the Student t
    quantile and the n / (n - 1) variance correction, which the plain percentile interval lacks at
    small n (at 30 groups it covers about 92% for 95%)."""
    from scipy.stats import norm, t

    if n < 2:
        return level
    return float(2 * norm.cdf(math.sqrt(n / (n - 1)) * t.ppf((1 + level) / 2, n - 1)) - 1)


def group_members(n: int, groups) -> list[np.ndarray]:
    """The row positions of each group, groups in the sorted order of their labels."""
    if groups is None:
        return [np.array([i]) for i in range(n)]
    labels = np.asarray([str(g) for g in groups])
    if len(labels) != n:
        raise ValueError(f"bootstrap: {n} rows and {len(labels)} group labels")
    order = np.argsort(labels, kind="stable")
    keys, starts = np.unique(labels[order], return_index=True)
    return [order[a:b] for a, b in zip(starts, [*starts[1:], n])]


def n_groups(ids, groups: dict | None) -> int:
    """How many resampling units the items ``ids`` make (the split's groups; an item alone is one)."""
    return len({(groups or {}).get(i, i) for i in ids})


def outcomes(a, b, tol: float = 0.0, decimals: int = DECIMALS) -> np.ndarray:
    """Per item: +1 if a beats b by more than ``tol``, -1 if b beats a, 0 a tie; the difference is
    rounded to ``decimals`` places first."""
    d = np.round(np.asarray(a, dtype=float) - np.asarray(b, dtype=float), decimals)
    return np.where(d > tol, 1, np.where(d < -tol, -1, 0))


def win_tie_loss(a, b, tol: float = 0.0) -> dict:
    o = outcomes(a, b, tol)
    n = len(o)
    if n == 0:
        return {"win": math.nan, "tie": math.nan, "loss": math.nan, "n": 0}
    return {"win": float((o == 1).mean()), "tie": float((o == 0).mean()), "loss": float((o == -1).mean()), "n": n}


def sign_test(a, b, tol: float = 0.0) -> float:
    """Two-sided exact sign test on the non-tied pairs (ties dropped). Kept for comparison only: integer
    0-5 scores tie in bulk, and the report tests with :func:`paired_permutation_p`."""
    o = outcomes(a, b, tol)
    wins, losses = int((o == 1).sum()), int((o == -1).sum())
    n = wins + losses
    if n == 0:
        return 1.0
    k = min(wins, losses)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return float(min(1.0, 2 * tail))


EXACT_UP_TO = 2**14  # sign patterns enumerated exactly up to this many; past it, a seeded Monte Carlo


def paired_permutation_p(d, groups=None, n_perm: int = 10_000, seed: int = 0) -> float:
    """Two-sided p-value of "the mean paired difference is 0" by sign flipping: under the null every
    difference is as likely positive as negative, so the signs are flipped -- per resampling unit
    (``groups``: the items of one article flip together; None: per item) -- and the observed mean
    compared with the means of every flip (exact up to 2^14 patterns, else ``n_perm`` seeded draws,
    counting the observed one). Ties (zero differences) stay in: they count, they do not vanish as in
    the sign test. With every item its own unit it is scipy's ``permutation_test`` on the pairs
    (``permutation_type="samples"``), which the tests check."""
    d = np.asarray(d, dtype=float)
    if len(d) == 0:
        return math.nan
    members = group_members(len(d), groups)
    sums = np.array([d[m].sum() for m in members])  # each unit's summed difference flips as one
    observed = abs(sums.sum())
    if not np.any(sums):
        return 1.0
    g = len(sums)
    if 2**g <= EXACT_UP_TO:
        signs = 1 - 2 * ((np.arange(2**g)[:, None] >> np.arange(g)) & 1)
        flipped = np.abs(signs @ sums)
        return float(np.mean(flipped >= observed - 1e-9 * max(observed, 1)))
    rng = np.random.default_rng(seed)
    signs = rng.choice(np.array([-1.0, 1.0]), size=(n_perm, g))
    flipped = np.abs(signs @ sums)
    return float((1 + np.sum(flipped >= observed - 1e-9 * max(observed, 1))) / (n_perm + 1))


ALPHA, POWER = 0.05, 0.8  # the minimum detectable effect's test level and power


def power_of(d, groups=None, alpha: float = ALPHA, power: float = POWER) -> dict:
    """How precisely the items measured a mean paired difference ``d``, and what they could detect:
    ``se``, the cluster-robust standard error of the mean (each unit's summed deviation, as the
    sandwich estimator does; every item its own unit without ``groups``); ``deff``, the design effect
    (that variance over the one independent items would give); ``mde``, the minimum detectable effect,
    (t(1 - alpha / 2) + t(power)) x se with the units less one as degrees of freedom (Card et al., EMNLP
    2020: most NLP comparisons are underpowered; Miller, 2024, for the clusters). NaN where the items
    show no spread (an MDE of 0 would claim a precision they do not have)."""
    d = np.asarray(d, dtype=float)
    n = len(d)
    members = group_members(n, groups) if n else []
    g = len(members)
    if n < 2 or g < 2:
        return {"se": math.nan, "deff": math.nan, "mde": math.nan, "units": g}
    mean = d.mean()
    resid = np.array([d[m].sum() - len(m) * mean for m in members])
    var = g / (g - 1) * float((resid**2).sum()) / n**2
    iid = float(d.var(ddof=1)) / n
    se = math.sqrt(var)
    if se == 0:
        return {"se": 0.0, "deff": math.nan, "mde": math.nan, "units": g}
    mde = mde_factor(g, alpha, power) * se
    return {"se": se, "deff": var / iid if iid > 0 else math.nan, "mde": float(mde), "units": g}


def mde_factor(units: int, alpha: float = ALPHA, power: float = POWER) -> float:
    """The minimum detectable effect in standard errors: t(1 - alpha / 2) + t(power), with the resampling
    units less one as degrees of freedom (the normal quantiles below two units)."""
    from scipy.stats import norm, t

    if units > 1:
        return float(t.ppf(1 - alpha / 2, units - 1) + t.ppf(power, units - 1))
    return float(norm.ppf(1 - alpha / 2) + norm.ppf(power))


def needed(mde: float, count: int, target: float | None) -> int | float:
    """The items (or groups) a comparison needs to detect ``target``: the MDE falls as one over the
    square root of their number, the design effect staying as it is."""
    if target is None or not target > 0 or math.isnan(mde):
        return math.nan
    return int(math.ceil(count * (mde / target) ** 2))


def share_ci(hits, groups=None, level: float = 0.95) -> tuple:
    """Wilson's interval for a share (a win rate: the share of items where ``hits`` is 1), which holds at
    small n where a percentile bootstrap collapses (0 of 4 wins: [0, 0] by the bootstrap, [0, 49%] by
    Wilson; Bowyer et al., ICML 2025). Items that share a group are not independent draws: the interval
    is taken over the effective number of items, n over the design effect (:func:`power_of`), or over
    the groups alone where the items show no spread to measure it by. statsmodels'
    ``proportion_confint(method="wilson")``."""
    from statsmodels.stats.proportion import proportion_confint

    x = np.asarray(hits, dtype=float)
    n = len(x)
    if n == 0:
        return (math.nan, math.nan)
    members = group_members(n, groups)
    deff = power_of(x, groups)["deff"] if len(members) < n else 1.0
    if len(members) < n and not deff > 0:
        deff = n / len(members)  # no spread to measure the correlation by: as if each group were one draw
    n_eff = n / max(deff, 1.0)
    lo, hi = proportion_confint(x.mean() * n_eff, n_eff, alpha=1 - level, method="wilson")
    return (float(lo) if lo > 1e-12 else 0.0, float(min(hi, 1.0)))


def mcnemar_exact_p(a, b) -> float:
    """Exact McNemar test of two models' binary outcomes on the same items (a judge-free label
    accuracy): the binomial test of the discordant pairs (scipy's ``binomtest``, as statsmodels'
    ``mcnemar(exact=True)``)."""
    from scipy.stats import binomtest

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    only_a, only_b = int(((a == 1) & (b == 0)).sum()), int(((a == 0) & (b == 1)).sum())
    if only_a + only_b == 0:
        return 1.0
    return float(binomtest(only_a, only_a + only_b, 0.5).pvalue)


def adjust(p_values, method: str) -> np.ndarray:
    """Holm-adjusted p-values (``holm``: family-wise error) or Benjamini-Hochberg q-values (``fdr_bh``)
    over one family of comparisons, by statsmodels' ``multipletests``; NaN p-values stay NaN and are
    not counted in the family."""
    from statsmodels.stats.multitest import multipletests

    p = np.asarray(p_values, dtype=float)
    out = np.full(len(p), math.nan)
    ok = ~np.isnan(p)
    if ok.any():
        out[ok] = multipletests(p[ok], method=method)[1]
    return out


def spearman(x, y) -> float:
    """Spearman rank correlation of ``x`` and ``y`` paired by position (scipy's, average ranks for
    ties); NaN below 3 pairs or when either side is constant. Both sides are taken as plain arrays: a
    pandas Series' index never decides which values pair up."""
    from scipy.stats import spearmanr

    x, y = np.asarray(x, dtype=float).ravel(), np.asarray(y, dtype=float).ravel()
    if len(x) != len(y):
        raise ValueError(f"spearman: {len(x)} values against {len(y)}")
    if len(x) < 3 or np.unique(x).size < 2 or np.unique(y).size < 2:
        return math.nan
    return float(spearmanr(x, y).statistic)


# ---------------------------------------------------------------- data
def judge_frame(rows: list[dict]) -> pd.DataFrame:
    """Judge rows -> one row per (model, id, metric) with score_5 (NaN for error rows). A score outside
    its range is refused (``DataError`` naming the row), never aggregated."""
    check_rows(rows, "judge rows")
    df = pd.DataFrame(rows, columns=["id", "source", "model", "metric", "score_5", "reason"])
    df["score_5"] = pd.to_numeric(df["score_5"], errors="coerce")
    return df


def common_items(judge: pd.DataFrame, metrics: list[str], models: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the judge rows of the items every model has a score for on every metric; one row per item
    left out: id, source, and why -- which model and metric had an error row or no row)."""
    scored = judge.dropna(subset=["score_5"])
    have = scored.groupby(["id", "source"])[["model", "metric"]].apply(
        lambda part: set(zip(part["model"], part["metric"])))
    items = judge[["id", "source"]].drop_duplicates().sort_values(["id", "source"], kind="mergesort")
    need = {(m, k) for m in models for k in metrics}
    keep, left = [], []
    errors = {(r.id, r.model, r.metric): r.reason for r in judge[judge["score_5"].isna()].itertuples()}
    for it in items.itertuples(index=False):
        got = have.get((it.id, it.source), set())
        missing = sorted(need - got)
        if not missing:
            keep.append(it.id)
            continue
        why = []
        for model, metric in missing:
            reason = errors.get((it.id, model, metric))
            why.append(f"{model}/{metric}: " + (f"error ({str(reason)[:120]})" if (it.id, model, metric) in errors
                                                 else "no judge row"))
        left.append({"id": it.id, "source": it.source, "why": "; ".join(why)})
    return (judge[judge["id"].isin(set(keep))].reset_index(drop=True),
            pd.DataFrame(left, columns=["id", "source", "why"]))


def totals(judge: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """Per-item totals: index (id, source), one column per model; NaN where any metric errored."""
    wide = judge.pivot_table(index=["id", "source", "model"], columns="metric", values="score_5", aggfunc="first",
                             dropna=False)
    wide = wide.reindex(columns=metrics)
    total = wide.sum(axis=1, min_count=len(metrics))
    return total.unstack("model")


@dataclass
class Settings:
    pairs: list
    tie_tolerance: float = 0.0
    n_boot: int = 2000
    seed: int = 0
    level: float = 0.95
    groups: dict | None = None  # item id -> its unit in the split (tunejudge.data.split.split_units)


def _ci(values, stat, s: Settings, salt: int = 0, ids=None):
    """The bootstrap CI of ``stat`` over ``values``, resampling the split's units of the items ``ids``
    (one id per row; None: each row alone)."""
    return bootstrap_ci(values, stat, s.n_boot, s.seed + salt, s.level, groups=_groups_of(ids, s))


def _groups_of(ids, s: Settings) -> list | None:
    return unit_labels(ids, s.groups)


def unit_labels(ids, groups: dict | None) -> list | None:
    """Each item's resampling unit (its split group; an item without one is its own), None without ids."""
    return None if ids is None else [(groups or {}).get(i, i) for i in ids]


def _ids(index) -> list:
    """The item ids of a (id, source) or id index."""
    return list(index.get_level_values("id")) if isinstance(index, pd.MultiIndex) else list(index)


def means_table(judge: pd.DataFrame, metrics: list[str], models: list[str], s: Settings) -> pd.DataFrame:
    """The study's table: mean 0-5 per metric and the 0-15 total, each with its CI."""
    tot = totals(judge, metrics)
    by_item = judge.dropna(subset=["score_5"]).sort_values(["id", "metric"], kind="mergesort")
    out = []
    for m in models:
        row = {"model": m}
        for metric in metrics + ["total"]:
            if metric == "total":
                col = tot[m].dropna() if m in tot else pd.Series(dtype=float)
                v, ids = col.to_numpy(), _ids(col.index)
            else:
                part = by_item[(by_item.model == m) & (by_item.metric == metric)]
                v, ids = part["score_5"].to_numpy(), list(part["id"])
            lo, hi = _ci(v, np.mean, s, ids=ids)
            row[metric] = float(v.mean()) if len(v) else math.nan
            row[f"{metric}_lo"], row[f"{metric}_hi"] = lo, hi
        row["n"] = int(tot[m].notna().sum()) if m in tot else 0
        row["groups"] = n_groups(_ids(tot[m].dropna().index), s.groups) if m in tot else 0
        out.append(row)
    return pd.DataFrame(out)


def _ratio_of_means(x) -> float:
    """Mean of a over mean of b: infinite when only b's mean is 0, undefined (NaN) when both are."""
    num, den = x[:, 0].mean(), x[:, 1].mean()
    if den == 0:
        return math.nan if num == 0 else math.copysign(math.inf, num)
    return num / den


def pair_table(tot: pd.DataFrame, s: Settings) -> pd.DataFrame:
    """Win / tie / loss with CIs; gain (a - b) mean, max, min with a CI on the mean and a paired permutation
    test's p (signs flipped per resampling unit, ties kept)."""
    out = []
    for k, (a, b) in enumerate(s.pairs):
        if a not in tot or b not in tot:
            continue
        frame = tot[[a, b]].dropna()
        both, ids = frame.to_numpy(), _ids(frame.index)
        wtl = win_tie_loss(both[:, 0], both[:, 1], s.tie_tolerance)
        row = {"pair": f"{a} vs {b}", "a": a, "b": b, "n": wtl["n"], "groups": n_groups(ids, s.groups)}
        o = outcomes(both[:, 0], both[:, 1], s.tie_tolerance) if len(both) else np.array([])
        for key, sign in (("win", 1), ("tie", 0), ("loss", -1)):
            row[key] = wtl[key]
            row[f"{key}_lo"], row[f"{key}_hi"] = share_ci(o == sign, _groups_of(ids, s), s.level)
        diff = both[:, 0] - both[:, 1] if len(both) else np.array([])
        row["p"] = paired_permutation_p(diff, _groups_of(ids, s), seed=s.seed + k)
        pw = power_of(diff, _groups_of(ids, s))
        row.update(se=pw["se"], deff=pw["deff"], mde=pw["mde"])
        row["gain"] = float(diff.mean()) if len(diff) else math.nan
        row["gain_lo"], row["gain_hi"] = _ci(diff, np.mean, s, k, ids=ids)
        row["gain_max"] = float(diff.max()) if len(diff) else math.nan
        row["gain_min"] = float(diff.min()) if len(diff) else math.nan
        row["ratio"] = float(_ratio_of_means(both)) if len(both) else math.nan
        row["ratio_lo"], row["ratio_hi"] = _ci(both, _ratio_of_means, s, k, ids=ids)
        out.append(row)
    return pd.DataFrame(out)


def per_source(judge: pd.DataFrame, metrics: list[str], models: list[str], s: Settings) -> tuple:
    """(means per source, pairs per source) with the source as the first column."""
    means, pairs = [], []
    for src, part in judge.groupby("source", sort=True):
        m = means_table(part, metrics, models, s)
        m.insert(0, "source", src)
        means.append(m)
        p = pair_table(totals(part, metrics), s)
        if len(p):
            p.insert(0, "source", src)
            pairs.append(p)
    return (pd.concat(means, ignore_index=True) if means else pd.DataFrame(),
            pd.concat(pairs, ignore_index=True) if pairs else pd.DataFrame())


def cases(judge: pd.DataFrame, tot: pd.DataFrame, answers: dict, s: Settings, k: int = 1) -> list[dict]:
    """Per pair, the ``k`` items with the largest gap each way: texts, both answers, scores, reasons."""
    out = []
    for a, b in s.pairs:
        if a not in tot or b not in tot:
            continue
        diff = (tot[a] - tot[b]).dropna().sort_values(kind="mergesort")
        picks = [("favours " + a, i) for i in diff.index[::-1][:k] if diff[i] > 0]
        picks += [("favours " + b, i) for i in diff.index[:k] if diff[i] < 0]
        for direction, (item_id, source) in picks:
            item = answers[item_id]
            detail = {}
            for model in (a, b):
                part = judge[(judge.id == item_id) & (judge.model == model)]
                detail[model] = {
                    "answer": item[f"model {model}"], "total": float(tot.loc[(item_id, source), model]),
                    "metrics": {r.metric: {"score_5": r.score_5, "reason": r.reason} for r in part.itertuples()},
                }
            out.append({"pair": f"{a} vs {b}", "direction": direction, "id": item_id, "source": source,
                        "gap": float(diff[(item_id, source)]), "instruction": item["instruction"],
                        "input": item["input"], "expected": item["output"], "models": detail})
    return out


REFERENCE_COLUMNS = ["source", "metric", "model", "mean", "mean_lo", "mean_hi", "vs", "diff", "diff_lo", "diff_hi", "n",
                     "groups", "p", "test", "mde"]


COMPARISON_COLUMNS = ["scope", "measure", "comparison", "a", "b", "estimate", "lo", "hi", "n", "groups", "test", "p",
                      "p_holm", "q_bh", "mde", "target", "items_needed", "groups_needed", "reading"]


def comparisons(pairs: pd.DataFrame, pairs_src: pd.DataFrame, reference: pd.DataFrame, n_metrics: int,
                target: dict, alpha: float = ALPHA) -> pd.DataFrame:
    """The report's family of comparisons, read as one: every pair on the judge's total (over all items,
    and per source) and on each source's judge-free metric. Beside each raw p: Holm's adjusted p
    (family-wise error) and Benjamini-Hochberg's q, over the whole family; the minimum detectable effect
    and the items (and groups) needed to detect ``target``. A *finding* survives Holm at ``alpha``;
    anything else reads "no difference larger than X could be detected with n = ...", never "no
    difference"."""
    rows = []
    judge_target = target.get("judge", 0.5) * n_metrics
    for scope_rows, scoped in ((pairs, False), (pairs_src, True)):
        for r in (scope_rows.to_dict("records") if len(scope_rows) else []):
            rows.append({"scope": r["source"] if scoped else "all", "measure": f"judge total (0-{5 * n_metrics})",
                         "comparison": r["pair"], "a": r["a"], "b": r["b"], "estimate": r["gain"], "lo": r["gain_lo"],
                         "hi": r["gain_hi"], "n": r["n"], "groups": r["groups"], "test": "permutation", "p": r["p"],
                         "mde": r["mde"], "target": judge_target})
    diffs = reference[reference["vs"].astype(str) != ""] if len(reference) else reference
    for r in (diffs.to_dict("records") if len(diffs) else []):
        rows.append({"scope": r["source"], "measure": r["metric"], "comparison": f"{r['model']} vs {r['vs']}",
                     "a": r["model"], "b": r["vs"], "estimate": r["diff"], "lo": r["diff_lo"], "hi": r["diff_hi"],
                     "n": r["n"], "groups": r["groups"], "test": r["test"], "p": r["p"], "mde": r["mde"],
                     "target": target.get(r["metric"])})
    table = pd.DataFrame(rows, columns=[c for c in COMPARISON_COLUMNS if c not in ("p_holm", "q_bh", "items_needed",
                                                                                  "groups_needed", "reading")])
    table["p_holm"] = adjust(table["p"].to_numpy(dtype=float), "holm") if len(table) else []
    table["q_bh"] = adjust(table["p"].to_numpy(dtype=float), "fdr_bh") if len(table) else []
    table["items_needed"] = [needed(m, n, t) for m, n, t in zip(table["mde"], table["n"], table["target"])]
    table["groups_needed"] = [needed(m, g, t) for m, g, t in zip(table["mde"], table["groups"], table["target"])]
    table["reading"] = [reading(r, alpha) for r in table.to_dict("records")]
    return table[COMPARISON_COLUMNS]


def reading(r: dict, alpha: float = ALPHA) -> str:
    """What one comparison of the family says, in words."""
    if r["p_holm"] is None or (isinstance(r["p_holm"], float) and math.isnan(r["p_holm"])):
        return "undefined"
    if r["p_holm"] < alpha:
        return f"finding: {r['a'] if r['estimate'] > 0 else r['b']} better"
    if isinstance(r["mde"], float) and math.isnan(r["mde"]):
        return f"no difference could be measured (the {r['n']} items show no spread)"
    return f"no difference larger than {r['mde']:.2f} could be detected with n = {r['n']} ({r['groups']} groups)"


def headline_values(reference: pd.DataFrame) -> list[float]:
    """Each judge-free row's headline metric (the one its source is judged by), NaN where it has none."""
    return [float(r[r["headline"]]) if r[r["headline"]] is not None else math.nan for _, r in reference.iterrows()]


def reference_table(reference: pd.DataFrame, models: list[str], s: Settings) -> pd.DataFrame:
    """The judge-free view of what fine-tuning did: per source, its headline metric (label accuracy,
    SQuAD token F1, ROUGE-L) for every model with a CI; and for each pair (a, b) of the analysis, a's
    mean minus b's on the same items with a paired bootstrap CI (the row of model a, ``vs`` = b)."""
    cols = ["id", "source", "model", "headline", "rouge_l", "token_f1", "label_accuracy"]
    if reference.empty:
        return pd.DataFrame(columns=REFERENCE_COLUMNS)
    ref = reference.reindex(columns=cols).copy()
    ref["value"] = headline_values(ref)
    out = []
    for k, ((src, metric), part) in enumerate(ref.groupby(["source", "headline"], sort=True)):
        wide = part.pivot_table(index="id", columns="model", values="value", aggfunc="first")
        for m in models:
            col = wide[m].dropna() if m in wide else pd.Series(dtype=float)
            v = col.to_numpy()
            lo, hi = _ci(v, np.mean, s, k, ids=list(col.index))
            out.append({"source": src, "metric": metric, "model": m, "mean": float(v.mean()) if len(v) else math.nan,
                        "mean_lo": lo, "mean_hi": hi, "vs": "", "diff": math.nan, "diff_lo": math.nan,
                        "diff_hi": math.nan, "n": len(v), "groups": n_groups(col.index, s.groups), "p": math.nan,
                        "test": "", "mde": math.nan})
        for j, (a, b) in enumerate(s.pairs):
            if a not in wide or b not in wide:
                continue
            frame = wide[[a, b]].dropna()
            both = frame.to_numpy()
            d = both[:, 0] - both[:, 1] if len(both) else np.array([])
            lo, hi = _ci(d, np.mean, s, 1000 * (k + 1) + j, ids=list(frame.index))
            binary = len(both) and set(np.unique(both)) <= {0.0, 1.0} and n_groups(frame.index, s.groups) == len(d)
            p, test = (mcnemar_exact_p(both[:, 0], both[:, 1]), "exact McNemar") if binary else \
                (paired_permutation_p(d, _groups_of(list(frame.index), s), seed=s.seed + j), "permutation")
            out.append({"source": src, "metric": metric, "model": a, "mean": math.nan, "mean_lo": math.nan,
                        "mean_hi": math.nan, "vs": b, "diff": float(d.mean()) if len(d) else math.nan,
                        "diff_lo": lo, "diff_hi": hi, "n": len(d), "groups": n_groups(frame.index, s.groups),
                        "p": p if len(d) else math.nan, "test": test if len(d) else "",
                        "mde": power_of(d, _groups_of(list(frame.index), s))["mde"]})
    return pd.DataFrame(out, columns=REFERENCE_COLUMNS)


def judge_agreement(judge: pd.DataFrame, reference: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """Spearman correlation, per source and judge metric, of the judge score with the source's
    headline reference metric (over every model's answers)."""
    ref = reference[["id", "model", "source", "headline"]].copy()
    ref["reference"] = [row[row["headline"]] for _, row in reference.iterrows()]
    merged = judge.merge(ref, on=["id", "model", "source"])
    out = []
    for (src, metric), part in merged.groupby(["source", "metric"], sort=True):
        part = part.dropna(subset=["score_5", "reference"])
        out.append({"source": src, "metric": metric, "reference_metric": part["headline"].iloc[0] if len(part) else "",
                    "spearman": spearman(part["score_5"], part["reference"]), "n": len(part)})
    return pd.DataFrame(out)


def length_bias(judge: pd.DataFrame, tot: pd.DataFrame, lengths: pd.DataFrame, s: Settings,
                match: float = 0.2) -> tuple:
    """(Spearman of each metric's score with answer length, per model; win rates on length-matched
    pairs: items whose two answers differ in length by at most ``match`` of the longer)."""
    corr = []
    for (model, metric), part in judge.groupby(["model", "metric"], sort=True):
        lens = lengths[model].reindex(part["id"]).to_numpy()
        corr.append({"model": model, "metric": metric, "spearman_with_length": spearman(part["score_5"], lens),
                     "n": len(part)})
    matched = []
    for a, b in s.pairs:
        if a not in tot or b not in tot:
            continue
        la, lb = lengths[a], lengths[b]
        ok = (la - lb).abs() <= match * np.maximum(la, lb).clip(lower=1)
        ids = set(ok[ok].index)
        sub = tot[[a, b]][[i in ids for i in tot.index.get_level_values("id")]].dropna().to_numpy()
        wtl = win_tie_loss(sub[:, 0], sub[:, 1], s.tie_tolerance) if len(sub) else win_tie_loss([], [])
        matched.append({"pair": f"{a} vs {b}", "matched_items": wtl["n"], "win": wtl["win"], "tie": wtl["tie"],
                        "loss": wtl["loss"]})
    return pd.DataFrame(corr), pd.DataFrame(matched)


def gate(lo: float, hi: float, threshold: float, above: bool = True) -> bool | None:
    """A gate decided on an interval, not a point: True when the whole interval is on the good side of
    ``threshold`` (``above``: at or over it; else at or under it), False when the whole interval is on
    the bad side, None (undecided: too few items to tell) when it straddles the threshold or is undefined
    -- a point estimate on six items decides nothing."""
    if math.isnan(lo) or math.isnan(hi):
        return None
    good, bad = (lo >= threshold, hi < threshold) if above else (hi <= threshold, lo > threshold)
    return True if good else False if bad else None


def items_to_decide(value: float, lo: float, hi: float, threshold: float, n: int) -> int | float:
    """Roughly how many items would make an interval as wide as (lo, hi) on ``n`` items clear
    ``threshold`` from ``value`` (its half-width falls as one over the square root of n)."""
    gap = abs(value - threshold)
    if any(math.isnan(v) for v in (value, lo, hi)) or gap == 0 or n == 0:
        return math.nan
    return int(math.ceil(n * ((hi - lo) / 2 / gap) ** 2))


def judge_validity(controls: pd.DataFrame, metrics: list[str], s: Settings, min_auc: float) -> tuple[pd.DataFrame, dict]:
    """(per metric, pooled over sources and per source: the AUC of the positive control over the
    negative with its bootstrap CI over items; the verdict). A metric passes when its pooled AUC's lower
    bound clears ``min_auc``, fails when the upper bound does not reach it, and is undecided otherwise
    (with the items that would decide it); the judge passes when every metric does, fails when any
    fails, and is undecided (``passes`` None) otherwise."""
    from ..judge.controls import NEGATIVE, POSITIVE, paired_auc

    wide = controls.pivot_table(index=["id", "source", "metric"], columns="model", values="score_5",
                                aggfunc="first").reindex(columns=[POSITIVE, NEGATIVE]).dropna().reset_index()
    rows = []
    for k, metric in enumerate(metrics):
        part = wide[wide.metric == metric]
        scopes = [("all", part)] + [(src, p) for src, p in part.groupby("source", sort=True)]
        for scope, p in scopes:
            pairs = p[[POSITIVE, NEGATIVE]].to_numpy(dtype=float)
            value = paired_auc(pairs) if len(pairs) else math.nan
            lo, hi = _ci(pairs, paired_auc, s, k, ids=list(p["id"])) if len(pairs) else (math.nan, math.nan)
            rows.append({"scope": scope, "metric": metric, "auc": value, "auc_lo": lo, "auc_hi": hi,
                         "items": len(pairs), "mean_positive": float(pairs[:, 0].mean()) if len(pairs) else math.nan,
                         "mean_negative": float(pairs[:, 1].mean()) if len(pairs) else math.nan,
                         "passes": (gate(lo, hi, min_auc) if len(pairs) else False) if scope == "all" else None,
                         "items_needed": items_to_decide(value, lo, hi, min_auc, len(pairs)) if scope == "all"
                         else math.nan})
    table = pd.DataFrame(rows, columns=["scope", "metric", "auc", "auc_lo", "auc_hi", "items", "mean_positive",
                                        "mean_negative", "passes", "items_needed"])
    pooled = table[table.scope == "all"]
    failing = [r.metric for r in pooled.itertuples() if r.passes is False]
    undecided = [r.metric for r in pooled.itertuples() if r.passes is None]
    need = [v for v in pooled[pooled.passes.isna()]["items_needed"] if not pd.isna(v)]
    verdict = {"enabled": True, "passes": (False if failing or not len(pooled) else None if undecided else True),
               "min_auc": min_auc, "failing_metrics": failing, "undecided_metrics": undecided,
               "items": int(pooled["items"].max()) if len(pooled) else 0,
               "items_needed": int(max(need)) if need else None}
    return table, verdict


def combine(*passes) -> bool | None:
    """Several gates as one: False if any fails, None (undecided) if any is undecided, else True."""
    if any(p is False for p in passes):
        return False
    return None if any(p is None for p in passes) else True


ADVERSARIAL_COLUMNS = ["defences", "kind", "metric", "mean_adversarial", "mean_negative", "diff", "diff_lo", "diff_hi",
                       "auc", "auc_lo", "auc_hi", "items", "fooled"]


def _mean_diff(pairs: np.ndarray) -> float:
    return float((pairs[:, 0] - pairs[:, 1]).mean())


def adversarial_validity(rows: pd.DataFrame, metrics: list[str], s: Settings, tolerance: float,
                         own: str) -> tuple[pd.DataFrame, dict]:
    """Can the judge be talked into a score? Per defence setting, adversarial kind and metric: the mean
    score (0-5) of the adversarial answer less the plain wrong answer's (the negative control) on the
    same items, and the AUC of the adversarial answer over the wrong one, each with its bootstrap CI. A
    kind *fools* the judge on a metric when its mean difference exceeds ``tolerance``. The verdict is the
    setting the judge runs with (``own``); the others show what a defence would buy."""
    from ..judge.adversarial import kind_of
    from ..judge.controls import NEGATIVE, paired_auc

    out = []
    settings = [own] + sorted(set(rows["defences"]) - {own}) if len(rows) else []
    for setting in settings:
        part = rows[rows.defences == setting]
        wide = part.pivot_table(index=["id", "source", "metric"], columns="model", values="score_5",
                                aggfunc="first").reset_index()
        kinds = sorted({k for k in map(kind_of, part["model"].unique()) if k})
        for k_i, kind in enumerate(kinds):
            arm = f"adversarial:{kind}"
            for m_i, metric in enumerate(metrics):
                p = wide[wide.metric == metric]
                frame = p[["id", arm, NEGATIVE]].dropna() if {arm, NEGATIVE} <= set(p.columns) else p.iloc[:0]
                pairs = frame[[arm, NEGATIVE]].to_numpy(dtype=float) if len(frame) else np.empty((0, 2))
                ids = list(frame["id"]) if len(frame) else []
                salt = 1000 + 31 * k_i + m_i
                diff = _mean_diff(pairs) if len(pairs) else math.nan
                lo, hi = _ci(pairs, _mean_diff, s, salt, ids=ids) if len(pairs) else (math.nan, math.nan)
                auc_v = paired_auc(pairs) if len(pairs) else math.nan
                alo, ahi = _ci(pairs, paired_auc, s, salt, ids=ids) if len(pairs) else (math.nan, math.nan)
                out.append({"defences": setting, "kind": kind, "metric": metric,
                            "mean_adversarial": float(pairs[:, 0].mean()) if len(pairs) else math.nan,
                            "mean_negative": float(pairs[:, 1].mean()) if len(pairs) else math.nan,
                            "diff": diff, "diff_lo": lo, "diff_hi": hi, "auc": auc_v, "auc_lo": alo, "auc_hi": ahi,
                            # fooled when even the lower bound of the lift exceeds the tolerance; safe when the
                            # upper bound stays within it; else undecided (None)
                            "items": len(pairs), "fooled": (None if gate(lo, hi, tolerance, above=False) is None
                                                            else not gate(lo, hi, tolerance, above=False))
                            if len(pairs) else None})
    table = pd.DataFrame(out, columns=ADVERSARIAL_COLUMNS)

    def summary(setting: str) -> dict:
        part = table[table.defences == setting]
        fooled = sorted({r.kind for r in part.itertuples() if r.fooled is True})
        open_ = sorted({r.kind for r in part.itertuples() if r.fooled is None} - set(fooled))
        passes = False if fooled or not len(part) else None if open_ else True
        return {"passes": passes, "fooled_by": fooled, "undecided": open_,
                "by_metric": {k: sorted(part[(part.kind == k) & (part.fooled == True)]["metric"])  # noqa: E712
                              for k in fooled}}

    verdict = {"enabled": True, "defences": own, "tolerance": tolerance, **summary(own),
               "with": {st: summary(st) for st in settings if st != own}}
    return table, verdict


PREFERENCE_COLUMNS = ["model", "set", "vs", "sources", "n", "diff", "diff_lo", "diff_hi"]


def preference_table(reference: pd.DataFrame, tuned: dict[str, dict], s: Settings) -> pd.DataFrame:
    """For each preference-tuned model (``tuned[model] = {"set", "init", "sources"}``): its judge-free headline
    metric less that of the model it started from (``init``), pooled over the items of its set's sources,
    with a paired bootstrap CI -- what preference tuning did on the rewards it was tuned for."""
    out = []
    if reference.empty:
        return pd.DataFrame(columns=PREFERENCE_COLUMNS)
    ref = reference.reindex(columns=["id", "source", "model", "headline", "rouge_l", "token_f1", "label_accuracy"]).copy()
    ref["value"] = headline_values(ref)
    for k, (model, spec) in enumerate(tuned.items()):
        base = spec.get("init")
        part = ref[ref.source.isin(spec.get("sources") or ref.source.unique())]
        wide = part.pivot_table(index="id", columns="model", values="value", aggfunc="first")
        if not base or model not in wide or base not in wide:
            continue
        frame = wide[[model, base]].dropna()
        both = frame.to_numpy()
        d = both[:, 0] - both[:, 1] if len(both) else np.array([])
        lo, hi = _ci(d, np.mean, s, 7000 + k, ids=list(frame.index))
        out.append({"model": model, "set": spec["set"], "vs": base, "sources": ", ".join(spec.get("sources") or []),
                    "n": len(d), "diff": float(d.mean()) if len(d) else math.nan, "diff_lo": lo, "diff_hi": hi})
    return pd.DataFrame(out, columns=PREFERENCE_COLUMNS)


FLAG_COLUMNS = ["model", "answers", "flagged", "addresses_judge", "degenerate", "flags"]


def flags_table(reference: pd.DataFrame, models: list[str]) -> pd.DataFrame:
    """Per model: how many answers the checks of :mod:`tunejudge.judge.flags` flag, by family and by check."""
    from ..judge.flags import FLAGS, families

    out = []
    for m in models:
        part = reference[reference.model == m] if len(reference) else reference
        flags = [list(f) if isinstance(f, list) else [] for f in (part["flags"] if "flags" in part else [])]
        fam = [families(f) for f in flags]
        counts = {f: sum(f in x for x in flags) for f in FLAGS}
        out.append({"model": m, "answers": len(part), "flagged": sum(bool(f) for f in flags),
                    "addresses_judge": sum(x["addresses_judge"] for x in fam),
                    "degenerate": sum(x["degenerate"] for x in fam),
                    "flags": "; ".join(f"{f} {n}" for f, n in counts.items() if n)})
    return pd.DataFrame(out, columns=FLAG_COLUMNS)


# ---------------------------------------------------------------- length control (AlpacaEval-style)
def _logistic_fit(x: np.ndarray, y: np.ndarray, w: np.ndarray, l2: float = 1e-2, iters: int = 50) -> np.ndarray:
    """Weighted logistic regression of y (0/1) on [1, x] by Newton's method; a small L2 penalty on
    the slope keeps it finite when the length difference separates the outcomes."""
    X = np.column_stack([np.ones_like(x), x])
    beta = np.zeros(2)
    penalty = np.diag([0.0, l2])
    for _ in range(iters):
        p = 1 / (1 + np.exp(-(X @ beta)))
        grad = X.T @ (w * (y - p)) - penalty @ beta
        hess = X.T @ (X * (w * p * (1 - p))[:, None]) + penalty + 1e-9 * np.eye(2)
        step = np.linalg.solve(hess, grad)
        beta = beta + step
        if np.abs(step).max() < 1e-10:
            break
    return beta


def _preference_rows(a, b, len_a, len_b, tol: float) -> np.ndarray:
    """Per item: (outcome of a over b: 1 win, 0.5 tie, 0 loss; length difference a - b)."""
    o = outcomes(a, b, tol)
    return np.column_stack([(o + 1) / 2, np.asarray(len_a, float) - np.asarray(len_b, float)])


def lc_preference(rows: np.ndarray) -> float:
    """The preference for a at zero length difference: a logistic model of the outcome on
    tanh(length difference / its standard deviation), read at 0 (AlpacaEval 2's length control).
    A tie counts half a win and half a loss."""
    y, d = rows[:, 0], rows[:, 1]
    if len(rows) == 0:
        return math.nan
    sd = d.std()
    x = np.tanh(d / sd) if sd > 0 else np.zeros_like(d)
    ys = np.concatenate([np.ones_like(y), np.zeros_like(y)])
    ws = np.concatenate([y, 1 - y])
    beta = _logistic_fit(np.concatenate([x, x]), ys, ws)
    return float(1 / (1 + np.exp(-beta[0])))


def length_controlled(tot: pd.DataFrame, lengths: pd.DataFrame, s: Settings) -> pd.DataFrame:
    """Per pair: the raw preference (win + tie / 2) and the length-controlled one, each with a paired
    bootstrap CI over items, and the mean length difference (words)."""
    out = []
    for k, (a, b) in enumerate(s.pairs):
        if a not in tot or b not in tot:
            continue
        both = tot[[a, b]].dropna()
        ids = both.index.get_level_values("id")
        rows = _preference_rows(both[a], both[b], lengths[a].reindex(ids).to_numpy(),
                                lengths[b].reindex(ids).to_numpy(), s.tie_tolerance)
        raw = float(rows[:, 0].mean()) if len(rows) else math.nan
        lc = lc_preference(rows)
        out.append({"pair": f"{a} vs {b}", "a": a, "b": b, "n": len(rows),
                    "raw": raw, **dict(zip(("raw_lo", "raw_hi"), _ci(rows[:, 0], np.mean, s, k, ids=list(ids)))),
                    "lc": lc, **dict(zip(("lc_lo", "lc_hi"), _ci(rows, lc_preference, s, k, ids=list(ids)))),
                    "mean_length_diff": float(rows[:, 1].mean()) if len(rows) else math.nan})
    return pd.DataFrame(out, columns=["pair", "a", "b", "n", "raw", "raw_lo", "raw_hi", "lc", "lc_lo", "lc_hi",
                                      "mean_length_diff"])


def cost_table(jobs: dict[str, tuple[list[dict], dict]], prices: dict | None) -> pd.DataFrame:
    """Per judge job (a model's answers, or the controls): the judge, its verdicts, and what they
    took: this run's requests, 429s, tokens, wall time and cost; and the tokens and cost behind every
    verdict it holds, cached ones included (as the endpoint reported them when they were asked)."""
    p = prices or {}

    def usd(prompt, completion):
        if p.get("input_per_mtok") is None or p.get("output_per_mtok") is None:
            return math.nan
        return (prompt * p["input_per_mtok"] + completion * p["output_per_mtok"]) / 1e6

    out = []
    for job, (rows, stats) in jobs.items():
        usage = [r["usage"] for r in rows if r.get("usage")]
        all_in = sum(u.get("prompt_tokens", 0) for u in usage)
        all_out = sum(u.get("completion_tokens", 0) for u in usage)
        # a verdict answered in a batch costs the batch price (its usage's price_factor, OpenAI: half)
        all_usd = sum(usd(u.get("prompt_tokens", 0), u.get("completion_tokens", 0)) * u.get("price_factor", 1.0)
                      for u in usage)
        run_in, run_out = stats.get("prompt_tokens", 0), stats.get("completion_tokens", 0)
        b_in, b_out = stats.get("batch_prompt_tokens", 0), stats.get("batch_completion_tokens", 0)
        run_usd = usd(run_in - b_in, run_out - b_out) + usd(b_in, b_out) * stats.get("price_factor", 1.0)
        judge = stats.get("judge") or (rows[0].get("judge") if rows else {}) or {}
        out.append({"job": job, "judge": f"{judge.get('backend', '?')}/{judge.get('model', '?')}",
                    "verdicts": sum(1 for r in rows if r.get("score") is not None),
                    "logprob_weighted": sum(1 for r in rows if r.get("weighting") == LOGPROBS),
                    "out_of_range_mass": sum(1 for r in rows if (r.get("dropped_mass") or 0) > 0),
                    "requests": stats.get("requests", 0), "http_429": stats.get("http_429", 0),
                    "prompt_tokens": run_in, "completion_tokens": run_out, "seconds": stats.get("seconds", math.nan),
                    "cost_usd": run_usd, "all_verdicts_prompt_tokens": all_in,
                    "all_verdicts_completion_tokens": all_out, "all_verdicts_cost_usd": all_usd if usage else usd(0, 0)})
    return pd.DataFrame(out, columns=["job", "judge", "verdicts", "logprob_weighted", "out_of_range_mass", "requests", "http_429", "prompt_tokens",
                                      "completion_tokens", "seconds", "cost_usd", "all_verdicts_prompt_tokens",
                                      "all_verdicts_completion_tokens", "all_verdicts_cost_usd"])


def pairwise_table(rows: list[dict], lengths: pd.DataFrame, s: Settings) -> pd.DataFrame:
    """Per pair and metric (and every metric pooled): the pairwise verdicts from a's side, with a
    bootstrap CI on the win share, the position-inconsistency rate (verdicts that flipped with the
    order, counted as ties) and the length-controlled preference."""
    df = pd.DataFrame([r for r in rows if r.get("verdict") is not None],
                      columns=["id", "source", "pair", "a", "b", "metric", "verdict", "consistent"])
    # pairs in the analysis's order (then the null model's, by name), metrics by name, items by id: the
    # same rows in any order give the same table
    rank = {f"{a} vs {b}": i for i, (a, b) in enumerate(s.pairs)}
    df = df.assign(_rank=[rank.get(p, len(rank)) for p in df["pair"]]).sort_values(
        ["_rank", "pair", "metric", "id"], kind="mergesort").drop(columns="_rank").reset_index(drop=True)
    out = []
    for pair, part in df.groupby("pair", sort=False):
        a, b = part["a"].iloc[0], part["b"].iloc[0]
        # "all metrics": an item's verdicts on every metric are one draw (resampled together)
        for metric, sub in [*part.groupby("metric", sort=False), ("all metrics", part.sort_values("id", kind="mergesort"))]:
            o = sub["verdict"].map({"a": 1, "tie": 0, "b": -1}).to_numpy(dtype=float)
            win = (o == 1).astype(float)
            d = (lengths[a].reindex(sub["id"]).to_numpy(dtype=float) - lengths[b].reindex(sub["id"]).to_numpy(dtype=float))
            pref = np.column_stack([(o + 1) / 2, d])
            asked = sub["consistent"].notna()
            out.append({"pair": pair, "a": a, "b": b, "metric": metric, "n": len(sub),
                        "win": float(win.mean()) if len(sub) else math.nan,
                        **dict(zip(("win_lo", "win_hi"), share_ci(win, _groups_of(list(sub["id"]), s), s.level))),
                        "groups": n_groups(sub["id"], s.groups),
                        "tie": float((o == 0).mean()) if len(sub) else math.nan,
                        "loss": float((o == -1).mean()) if len(sub) else math.nan,
                        "inconsistency": float((sub.loc[asked, "consistent"] == False).mean())  # noqa: E712
                        if asked.any() else math.nan,
                        "preference": float(pref[:, 0].mean()) if len(sub) else math.nan,
                        "lc_preference": lc_preference(pref) if len(sub) else math.nan})
    return pd.DataFrame(out, columns=["pair", "a", "b", "metric", "n", "groups", "win", "win_lo", "win_hi", "tie",
                                      "loss", "inconsistency", "preference", "lc_preference"])


# ---------------------------------------------------------------- judge panel
PRIMARY = PRIMARY_JUDGE  # the judge section's own judge, in the panel's tables
PANEL_COLUMNS = {
    "panel_means": ["judge", "judge_model", "model", "total", "total_lo", "total_hi", "n"],
    "panel_agreement": ["judge_a", "judge_b", "spearman", "spearman_lo", "spearman_hi", "kappa", "kappa_lo",
                        "kappa_hi", "items", "low"],
    "panel_conclusions": ["pair", "judge", "gain", "gain_lo", "gain_hi", "win", "loss", "conclusion", "judges_disagree"],
    "panel_validity": ["judge", "metric", "auc", "auc_lo", "auc_hi", "items", "passes"],
}


def cohen_kappa(a, b) -> float:
    """Cohen's kappa of two raters' labels on the same items; NaN where chance agreement is certain
    (both raters give one and the same label to every item)."""
    a, b = np.asarray(a), np.asarray(b)
    if len(a) == 0:
        return math.nan
    observed = float((a == b).mean())
    chance = float(sum((a == v).mean() * (b == v).mean() for v in np.union1d(a, b)))
    if chance >= 1:
        return math.nan
    return (observed - chance) / (1 - chance)


def conclusion(a: str, b: str, lo: float, hi: float) -> str:
    """What a gain's CI says about a pair: which model is better, or that the items cannot tell."""
    if math.isnan(lo) or math.isnan(hi):
        return "undefined"
    if lo > 0:
        return f"{a} better"
    if hi < 0:
        return f"{b} better"
    return "no clear difference"


def _panel_spearman(x: np.ndarray, n_models: int) -> float:
    """Spearman of two judges' totals; ``x``: one row per item, judge a's models then judge b's."""
    return spearman(x[:, :n_models].ravel(), x[:, n_models:].ravel())


def _panel_kappa(x: np.ndarray, models: list[str], pairs: list, tol: float) -> float:
    """Cohen's kappa of the win / tie / loss verdicts two judges' totals imply for every pair."""
    if not pairs:
        return math.nan
    n, col = len(models), {m: i for i, m in enumerate(models)}
    va = [outcomes(x[:, col[a]], x[:, col[b]], tol) for a, b in pairs]
    vb = [outcomes(x[:, n + col[a]], x[:, n + col[b]], tol) for a, b in pairs]
    return cohen_kappa(np.concatenate(va), np.concatenate(vb))


def panel_tables(frames: dict[str, pd.DataFrame], metrics: list[str], models: list[str], s: Settings,
                 min_spearman: float, min_kappa: float, identities: dict[str, str] | None = None) -> dict[str, pd.DataFrame]:
    """Every judge of the panel on one item set (the items every judge scored for every model on
    every metric): each judge's mean totals; each pair of judges' agreement -- Spearman of their
    per-item totals (every model's answers pooled) and Cohen's kappa of the win / tie / loss verdicts
    they imply for every pair in ``s.pairs``, each with a bootstrap CI over items, ``low`` where
    either is below its threshold or undefined; and each judge's conclusion on every pair (from the
    CI of the mean gain), ``judges_disagree`` where the judges do not all draw the same one."""
    kept = {j: common_items(df, metrics, models)[0] for j, df in frames.items()}
    ids = set.intersection(*(set(df["id"]) for df in kept.values())) if kept else set()
    tots = {j: totals(df[df["id"].isin(ids)], metrics).reindex(columns=models).dropna(how="all")
            for j, df in kept.items()}
    index = sorted(set.intersection(*(set(t.index) for t in tots.values()))) if tots else []
    tots = {j: t.loc[index] if index else t.iloc[:0] for j, t in tots.items()}  # the same items, in one order
    judges = list(frames)
    means, agreement, concl = [], [], []
    for j in judges:
        for m in models:
            v = tots[j][m].to_numpy(dtype=float) if len(tots[j]) else np.array([])
            lo, hi = _ci(v, np.mean, s, ids=_ids(tots[j].index) if len(tots[j]) else None)
            means.append({"judge": j, "judge_model": (identities or {}).get(j, ""), "model": m, "total": float(v.mean()) if len(v) else math.nan,
                          "total_lo": lo, "total_hi": hi, "n": len(v)})
    pairs = [(a, b) for a, b in s.pairs if a in models and b in models]
    rho = partial(_panel_spearman, n_models=len(models))
    kappa = partial(_panel_kappa, models=models, pairs=pairs, tol=s.tie_tolerance)
    for k, (ja, jb) in enumerate(combinations(judges, 2)):
        # one row per item: judge a's totals for every model, then judge b's
        both = np.column_stack([tots[ja].to_numpy(dtype=float), tots[jb].to_numpy(dtype=float)])
        r, kap = (rho(both), kappa(both)) if len(both) else (math.nan, math.nan)
        item_ids = _ids(tots[ja].index) if len(both) else None
        r_lo, r_hi = _ci(both, rho, s, k, ids=item_ids) if len(both) else (math.nan, math.nan)
        k_lo, k_hi = _ci(both, kappa, s, k, ids=item_ids) if len(both) else (math.nan, math.nan)
        low = not (r >= min_spearman) or not (kap >= min_kappa)  # NaN: cannot be shown to agree
        agreement.append({"judge_a": ja, "judge_b": jb, "spearman": r, "spearman_lo": r_lo, "spearman_hi": r_hi,
                          "kappa": kap, "kappa_lo": k_lo, "kappa_hi": k_hi, "items": len(both), "low": low})
    for k, (a, b) in enumerate(pairs):
        rows = []
        for j in judges:
            both = tots[j][[a, b]].to_numpy(dtype=float)
            diff = both[:, 0] - both[:, 1]
            lo, hi = _ci(diff, np.mean, s, k, ids=_ids(tots[j].index) if len(both) else None)
            wtl = win_tie_loss(both[:, 0], both[:, 1], s.tie_tolerance)
            rows.append({"pair": f"{a} vs {b}", "judge": j, "gain": float(diff.mean()) if len(diff) else math.nan,
                         "gain_lo": lo, "gain_hi": hi, "win": wtl["win"], "loss": wtl["loss"],
                         "conclusion": conclusion(a, b, lo, hi)})
        disagree = len({r["conclusion"] for r in rows}) > 1
        concl += [{**r, "judges_disagree": disagree} for r in rows]
    return {name: pd.DataFrame(rows, columns=PANEL_COLUMNS[name])
            for name, rows in (("panel_means", means), ("panel_agreement", agreement),
                               ("panel_conclusions", concl))}
