"""Properties every statistic of tunejudge.analysis.stats must have, whatever the data:

- the same answer when its input rows are shuffled and re-indexed (pandas aligns on index: a function
  that lets it pair values by index rather than by item gives another answer, or NaN);
- intervals that resample how the items were drawn: with items clustered (several questions on one
  article), the clustered bootstrap's 95% interval covers the true difference about 95% of the time,
  while resampling single items covers visibly less.
"""

import math

import numpy as np
import pandas as pd
import pytest

from tunejudge.analysis import stats as A

MODELS, METRICS, SOURCES = ["base", "full", "small"], ["FactualCorrectness", "InstructionAdherence", "ClarityUtility"], \
    ["sst2", "qa_cnn", "qa_squad"]


def _data(seed=0, n=24):
    rng = np.random.default_rng(seed)
    ids = [f"i{k:02d}" for k in range(n)]
    source = {i: SOURCES[k % 3] for k, i in enumerate(ids)}
    groups = {i: (f"article{k // 3}" if source[i] == "qa_cnn" else i) for k, i in enumerate(ids)}
    judge = pd.DataFrame([{"id": i, "source": source[i], "model": m, "metric": met,
                           "score_5": float(rng.integers(0, 6)), "reason": "r"}
                          for i in ids for m in MODELS for met in METRICS])
    reference = pd.DataFrame([{"id": i, "source": source[i], "model": m, "headline": "label_accuracy",
                               "rouge_l": None, "token_f1": None, "label_accuracy": float(rng.integers(0, 2)),
                               "flags": ["looping"] if rng.random() < 0.2 else []} for i in ids for m in MODELS])
    lengths = pd.DataFrame({m: {i: int(rng.integers(1, 60)) for i in ids} for m in MODELS})
    controls = pd.DataFrame([{"id": i, "source": source[i], "model": arm, "metric": met,
                              "score_5": float(rng.integers(0, 6)), "reason": "r"}
                             for i in ids for arm in ("control:positive", "control:negative") for met in METRICS])
    adversarial = pd.DataFrame([{"id": i, "source": source[i], "model": arm, "metric": met, "defences": "none",
                                 "score_5": float(rng.integers(0, 6)), "reason": "r"}
                                for i in ids for arm in ("control:negative", "adversarial:inject_verdict")
                                for met in METRICS])
    pairwise = [{"id": i, "source": source[i], "pair": f"{a} vs {b}", "a": a, "b": b, "metric": met,
                 "verdict": ["a", "b", "tie"][int(rng.integers(0, 3))], "consistent": bool(rng.random() < 0.8)}
                for i in ids for a, b in (("full", "base"), ("small", "base")) for met in METRICS]
    return judge, reference, lengths, controls, adversarial, pairwise, groups


def _shuffled(df: pd.DataFrame, seed=1) -> pd.DataFrame:
    """The same rows in another order under another index (not 0..n-1)."""
    out = df.sample(frac=1.0, random_state=seed)
    out.index = np.random.default_rng(seed).permutation(len(out)) * 7 + 1000
    return out


def _same(a, b):
    if isinstance(a, pd.DataFrame):
        pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True), check_exact=True)
    elif isinstance(a, tuple | list):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _same(x, y)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            _same(a[k], b[k])
    elif isinstance(a, float) and math.isnan(a):
        assert isinstance(b, float) and math.isnan(b)
    else:
        assert a == b


def test_every_statistic_is_the_same_on_shuffled_and_reindexed_rows():
    judge, reference, lengths, controls, adversarial, pairwise, groups = _data()
    s = A.Settings(pairs=[["full", "base"], ["small", "base"]], n_boot=200, groups=groups)
    sj, sr = _shuffled(judge), _shuffled(reference)
    tot, stot = A.totals(judge, METRICS), A.totals(sj, METRICS)
    _same(tot, stot)
    answers = {i: {"instruction": "q", "input": "", "output": "o", **{f"model {m}": "a" for m in MODELS}}
               for i in judge["id"].unique()}
    kept, left = A.common_items(judge, METRICS, MODELS)
    skept, sleft = A.common_items(sj, METRICS, MODELS)
    _same(kept.sort_values(["id", "model", "metric"]), skept.sort_values(["id", "model", "metric"]))  # a filter
    _same(left, sleft)
    checks = {
        "means_table": lambda j: A.means_table(j, METRICS, MODELS, s),
        "per_source": lambda j: A.per_source(j, METRICS, MODELS, s),
        "pair_table": lambda j: A.pair_table(A.totals(j, METRICS), s),
        "cases": lambda j: A.cases(j, A.totals(j, METRICS), answers, s),
        "length_bias": lambda j: A.length_bias(j, A.totals(j, METRICS), lengths, s),
        "length_controlled": lambda j: A.length_controlled(A.totals(j, METRICS), lengths, s),
    }
    for name, f in checks.items():
        _same(f(judge), f(sj)), name
    for name, f in {"reference_table": lambda r: A.reference_table(r, MODELS, s),
                    "preference_table": lambda r: A.preference_table(r, {"full": {"set": "p", "init": "base",
                                                                                  "sources": ["sst2"]}}, s),
                    "flags_table": lambda r: A.flags_table(r, MODELS),
                    "judge_agreement": lambda r: A.judge_agreement(judge, r, METRICS)}.items():
        _same(f(reference), f(sr)), name
    _same(A.judge_agreement(sj, reference, METRICS), A.judge_agreement(judge, reference, METRICS))
    _same(A.judge_validity(controls, METRICS, s, 0.75), A.judge_validity(_shuffled(controls), METRICS, s, 0.75))
    _same(A.adversarial_validity(adversarial, METRICS, s, 0.5, "none"),
          A.adversarial_validity(_shuffled(adversarial), METRICS, s, 0.5, "none"))
    rng = np.random.default_rng(3)
    _same(A.pairwise_table(pairwise, lengths, s), A.pairwise_table([pairwise[i] for i in rng.permutation(len(pairwise))],
                                                                    lengths, s))
    frames = {"primary": judge, "second": _shuffled(judge, 5)}
    _same(A.panel_tables(frames, METRICS, MODELS, s, 0.6, 0.4),
          A.panel_tables({"primary": sj, "second": _shuffled(judge, 9)}, METRICS, MODELS, s, 0.6, 0.4))
    # the array functions: positions pair up, never a pandas index
    x, y = pd.Series([3.0, 1, 2, 5, 4], index=[10, 11, 12, 13, 14]), np.array([2.0, 1, 3, 5, 4])
    assert A.spearman(x, y) == A.spearman(x.to_numpy(), y) == pytest.approx(0.9)
    perm = np.array([4, 2, 0, 3, 1])
    assert A.spearman(x.to_numpy()[perm], y[perm]) == pytest.approx(0.9)
    v, g = np.arange(12.0), [f"g{k // 3}" for k in range(12)]
    assert A.bootstrap_ci(v, np.mean, 300, 1, groups=g) == A.bootstrap_ci(v[::-1], np.mean, 300, 1, groups=g[::-1])


def test_the_default_length_bias_table_has_a_value_for_every_model():
    """The judge frame's slice keeps its row index while lengths come by item: every model gets its
    correlations (before, pandas paired them by index: NaN for all but the first model)."""
    judge, _, lengths, *_ = _data()
    s = A.Settings(pairs=[["full", "base"]], n_boot=50)
    corr, _ = A.length_bias(judge, A.totals(judge, METRICS), lengths, s)
    assert set(corr["model"]) == set(MODELS) and corr["spearman_with_length"].notna().all()
    part = judge[(judge.model == "small") & (judge.metric == METRICS[0])]
    want = A.spearman(part["score_5"].to_numpy(), lengths["small"].reindex(part["id"]).to_numpy())
    got = corr[(corr.model == "small") & (corr.metric == METRICS[0])]["spearman_with_length"].iloc[0]
    assert got == want


def _clustered_sets(rng, n_groups, per_group, delta, sims):
    """``sims`` test sets of paired score differences: ``n_groups`` articles of ``per_group`` questions
    each; an article's questions share most of their difference (a random article effect), so they move
    together. The true mean difference is ``delta``."""
    article = rng.normal(0.0, 1.0, size=(sims, n_groups, 1))
    item = rng.normal(0.0, 0.35, size=(sims, n_groups, per_group))
    return (delta + article + item).reshape(sims, n_groups * per_group)


def test_the_clustered_bootstrap_covers_the_true_difference_and_the_item_bootstrap_does_not():
    """1,000 simulated test sets of 30 articles x 4 questions (seeded): the interval that resamples
    articles covers the true difference in 93-97% of them; the one that resamples single questions
    covers visibly less (it treats 120 correlated questions as 120 independent draws)."""
    rng = np.random.default_rng(2024)
    n_groups, per_group, delta, sims = 30, 4, 0.3, 1000
    sets = _clustered_sets(rng, n_groups, per_group, delta, sims)
    groups = np.repeat(np.arange(n_groups), per_group)
    clustered = items = 0
    for k, d in enumerate(sets):
        lo, hi = A.bootstrap_ci(d, np.mean, 400, k, 0.95, groups=groups)
        clustered += lo <= delta <= hi
        lo, hi = A.bootstrap_ci(d, np.mean, 400, k, 0.95)
        items += lo <= delta <= hi
    clustered, items = clustered / sims, items / sims
    print(f"coverage: clustered {clustered:.3f}, items {items:.3f}")
    assert 0.93 <= clustered <= 0.97
    assert items < 0.80  # visibly less: about 0.6 at this intra-article correlation
