"""The report's statistics on small hand-computed examples."""

import math

import numpy as np
import pandas as pd
import pytest

from tunejudge.analysis.stats import (
    Settings,
    bootstrap_ci,
    means_table,
    pair_table,
    sign_test,
    spearman,
    totals,
    win_tie_loss,
)


def test_win_tie_loss_and_tolerance():
    a, b = [3, 5, 2, 7, 1.0], [1, 5, 2.5, 7.2, 4]
    assert win_tie_loss(a, b) == {"win": 0.2, "tie": 0.2, "loss": 0.6, "n": 5}
    # with tolerance 0.5: 2 vs 2.5 and 7 vs 7.2 become ties
    assert win_tie_loss(a, b, tol=0.5) == {"win": 0.2, "tie": 0.6, "loss": 0.2, "n": 5}


def test_sign_test_exact_binomial():
    # 9 wins, 1 loss, 2 ties: p = 2 * P(X <= 1 | n=10, 1/2) = 2 * 11/1024
    a = [1] * 9 + [0] + [5, 5]
    b = [0] * 9 + [1] + [5, 5]
    assert sign_test(a, b) == pytest.approx(22 / 1024)
    assert sign_test([1, 0], [0, 1]) == 1.0 and sign_test([2], [2]) == 1.0


def test_bootstrap_ci_covers_the_mean_about_95_percent_of_the_time():
    rng = np.random.default_rng(7)
    hits = 0
    for trial in range(200):
        x = rng.normal(10, 2, size=40)
        lo, hi = bootstrap_ci(x, n_boot=400, seed=trial)
        hits += lo <= 10 <= hi
    assert 0.88 <= hits / 200 <= 0.99
    assert bootstrap_ci([4.0]) == (4.0, 4.0) and all(math.isnan(v) for v in bootstrap_ci([]))
    assert bootstrap_ci([1.0, 2, 3], seed=1) == bootstrap_ci([1.0, 2, 3], seed=1)  # seeded


def test_spearman():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))


def _judge(scores):
    """scores: {model: {id: [metric scores]}} -> judge frame"""
    rows = []
    for model, items in scores.items():
        for i, vals in items.items():
            for metric, v in zip(["F", "A", "C"], vals):
                rows.append({"id": i, "source": "sst2" if i < "c" else "agnews", "model": model, "metric": metric,
                             "score_5": v, "reason": "r"})
    return pd.DataFrame(rows)


def test_totals_means_gains_and_ratios():
    judge = _judge({
        "full": {"a": [5, 5, 5], "b": [4, 4, 4], "c": [0, 1, 2]},
        "base": {"a": [1, 1, 1], "b": [4, 4, 4], "c": [5, 5, 5]},
    })
    tot = totals(judge, ["F", "A", "C"])
    assert tot.loc[("a", "sst2"), "full"] == 15 and tot.loc[("c", "agnews"), "base"] == 15
    s = Settings(pairs=[["full", "base"]], n_boot=200)
    means = means_table(judge, ["F", "A", "C"], ["full", "base"], s).set_index("model")
    assert means.loc["full", "total"] == pytest.approx((15 + 12 + 3) / 3)
    assert means.loc["full", "F"] == pytest.approx(3.0)
    assert means.loc["full", "total_lo"] <= means.loc["full", "total"] <= means.loc["full", "total_hi"]
    row = pair_table(tot, s).iloc[0]
    # per-item gains: +12, 0, -12
    assert (row.win, row.tie, row.loss) == pytest.approx((1 / 3, 1 / 3, 1 / 3))
    assert (row.gain, row.gain_max, row.gain_min) == (0.0, 12.0, -12.0)
    assert row.ratio == pytest.approx(30 / 30)


def test_an_error_row_removes_the_item_from_that_models_totals():
    judge = _judge({"full": {"a": [5, 5, 5], "b": [4, None, 4]}, "base": {"a": [1, 1, 1], "b": [0, 0, 0]}})
    tot = totals(judge, ["F", "A", "C"])
    assert math.isnan(tot.loc[("b", "sst2"), "full"])
    row = pair_table(tot, Settings(pairs=[["full", "base"]], n_boot=50)).iloc[0]
    assert row.n == 1 and row.win == 1.0


def test_totals_that_differ_only_by_float_rounding_are_all_ties():
    rng = np.random.default_rng(3)
    parts = rng.uniform(0, 5, size=(200, 3))
    a = parts.sum(axis=1)
    b = parts[:, ::-1].sum(axis=1) + rng.choice([-1, 1], size=200) * 1e-13  # other summation order, plus noise
    assert (a != b).any()
    assert win_tie_loss(a, b) == {"win": 0.0, "tie": 1.0, "loss": 0.0, "n": 200}
    assert sign_test(a, b) == 1.0
    assert win_tie_loss([0.1 + 0.2, 1.0], [0.3, 1.0 + 1e-7])["tie"] == 1.0  # below the precision kept
    assert win_tie_loss([0.1 + 0.2, 1.0], [0.3, 1.0 + 1e-5])["tie"] == 0.5  # a real difference


def test_every_table_uses_one_item_set_and_says_what_it_left_out():
    from tunejudge.analysis.stats import common_items

    judge = _judge({"full": {"a": [5, 5, 5], "b": [4, None, 4], "c": [1, 1, 1]},
                    "base": {"a": [1, 1, 1], "b": [0, 0, 0], "c": [2, 2, 2]}})
    judge.loc[(judge.model == "full") & (judge.id == "b") & (judge.metric == "A"), "reason"] = "timeout"
    judge = judge[~((judge.model == "base") & (judge.id == "c") & (judge.metric == "C"))]
    kept, left = common_items(judge, ["F", "A", "C"], ["full", "base"])
    assert sorted(kept["id"].unique()) == ["a"]
    why = dict(zip(left["id"], left["why"]))
    assert why == {"b": "full/A: error (timeout)", "c": "base/C: no judge row"}
    s = Settings(pairs=[["full", "base"]], n_boot=50)
    means = means_table(kept, ["F", "A", "C"], ["full", "base"], s).set_index("model")
    # the per-metric means are over the same item as the totals: only "a"
    assert means.loc["full", "F"] == 5.0 and means.loc["base", "n"] == 1 and means.loc["full", "n"] == 1


def test_a_ratio_over_a_zero_base_mean_is_infinite_or_undefined_never_dropped():
    from tunejudge.analysis.stats import _ratio_of_means

    assert _ratio_of_means(np.array([[3.0, 0.0], [1.0, 0.0]])) == math.inf
    assert math.isnan(_ratio_of_means(np.array([[0.0, 0.0]])))
    # base is 0 on most items: many resamples have a zero base mean -> the upper bound is infinite
    both = np.array([[5.0, 0.0]] * 9 + [[5.0, 1.0]])
    lo, hi = bootstrap_ci(both, _ratio_of_means, n_boot=500, seed=1)
    assert hi == math.inf and math.isfinite(lo)
    # some resamples 0 / 0: the interval is undefined rather than computed over the others
    lo, hi = bootstrap_ci(np.array([[0.0, 0.0]] * 5 + [[1.0, 1.0]]), _ratio_of_means, n_boot=500, seed=1)
    assert math.isnan(lo) and math.isnan(hi)


def test_sign_test_and_bootstrap_agree_with_scipy():
    scipy_stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(11)
    for wins, losses, ties in [(9, 1, 2), (30, 22, 5), (0, 7, 1), (50, 50, 0), (1, 0, 9)]:
        a = [1] * wins + [0] * losses + [2] * ties
        b = [0] * wins + [1] * losses + [2] * ties
        assert sign_test(a, b) == pytest.approx(scipy_stats.binomtest(wins, wins + losses, 0.5).pvalue, abs=1e-12)
    x = rng.gamma(2.0, 2.0, size=80)
    lo, hi = bootstrap_ci(x, np.mean, n_boot=20000, seed=5, level=0.9)
    ref = scipy_stats.bootstrap((x,), np.mean, n_resamples=20000, confidence_level=0.9, method="percentile",
                                random_state=np.random.default_rng(6)).confidence_interval
    se = x.std() / math.sqrt(len(x))
    assert abs(lo - ref.low) < 0.05 * se * 4 and abs(hi - ref.high) < 0.05 * se * 4


def test_a_judge_that_prefers_longer_answers_is_length_controlled_to_about_half():
    """Equal quality, a longer on ~75% of the items, the judge scoring by length: the raw preference
    is far from 50%, the length-controlled one near it."""
    from tunejudge.analysis.stats import length_controlled

    rng = np.random.default_rng(4)
    n = 400
    len_a = rng.integers(20, 60, n) + np.where(rng.random(n) < 0.75, 25, -25)
    len_b = rng.integers(20, 60, n)
    # the judge: total rises with length, plus noise; quality is the same for both
    score = lambda L: np.clip(L / 10 + rng.normal(0, 1.0, n), 0, 15)  # noqa: E731
    idx = pd.MultiIndex.from_arrays([[f"i{i}" for i in range(n)], ["s"] * n], names=["id", "source"])
    tot = pd.DataFrame({"a": score(len_a), "b": score(len_b)}, index=idx)
    lengths = pd.DataFrame({"a": len_a, "b": len_b}, index=[f"i{i}" for i in range(n)])
    row = length_controlled(tot, lengths, Settings(pairs=[["a", "b"]], n_boot=200)).iloc[0]
    assert row.raw > 0.65 and abs(row.lc - 0.5) < 0.08, (row.raw, row.lc)
    assert row.lc_lo <= row.lc <= row.lc_hi and row.raw_lo <= row.raw <= row.raw_hi


def test_length_control_leaves_a_real_quality_gap():
    from tunejudge.analysis.stats import lc_preference

    rng = np.random.default_rng(5)
    d = rng.normal(0, 10, 500)
    y = (rng.random(500) < 0.8).astype(float)  # a wins 80% whatever the lengths
    assert abs(lc_preference(np.column_stack([y, d])) - 0.8) < 0.05
    assert lc_preference(np.column_stack([np.full(10, 0.5), np.zeros(10)])) == pytest.approx(0.5)


def test_the_bases_list_says_how_each_model_was_tuned_once_and_truly():
    """config/dpo.yaml's full_dpo read "full fine-tuning" in its base's list while its own line said
    preference-tuned LoRA; a QLoRA model read "full fine-tuning" too."""
    from tunejudge.analysis.report import finetune_words

    lora = {"r": 16, "alpha": 32, "dropout": 0.05, "target_modules": "all-linear"}
    assert finetune_words({"method": "full"}) == "full fine-tuning"
    assert finetune_words({"method": "lora", **lora}).startswith("LoRA rank 16, alpha 32")
    assert finetune_words({"method": "qlora", **lora, "quantize": "nf4"}).startswith("QLoRA (a 4-bit base), LoRA rank 16")
    dpo = finetune_words({"method": "dpo", "adapter": "lora", **lora, "loss": "sigmoid", "beta": 0.1,
                          "preferences": "vr"})
    assert dpo.startswith("preference-tuned (sigmoid loss, beta 0.1) on set vr: LoRA rank 16") and "full" not in dpo
    assert finetune_words({"method": "dpo", "adapter": "full", "loss": "simpo", "beta": 2.0,
                           "preferences": "vr"}).endswith("on set vr: every weight")
