"""Statistics over seeds and items (tunejudge.analysis.replicates): the Multi-Bootstrap's calibration, measured by
simulation, and the per-seed flags."""

import numpy as np
import pandas as pd
import pytest

from tunejudge.analysis.replicates import (
    MIN_SEEDS,
    multi_bootstrap,
    replicates_table,
    seeds_table,
    verdict,
)
from tunejudge.analysis.stats import bootstrap_ci

# A realistic study: 100 test items on a 0-15 total; items differ a lot (sd 2), each trained model's
# answer to an item is noisy (sd 1.5), and a recipe's seeds differ by a whole-model offset (sd 0.4: a
# few points of a percent scale, as Dodge et al. 2020 saw for BERT seeds).
ITEMS, SD_ITEM, SD_NOISE, SD_SEED = 100, 2.0, 1.5, 0.4


def simulate(rng, seeds: int, delta: float):
    """Per-item scores [seeds, items] of two recipes whose true means differ by ``delta``."""
    item = rng.normal(0, SD_ITEM, ITEMS)

    def recipe(mean):
        return mean + item + rng.normal(0, SD_SEED, (seeds, 1)) + rng.normal(0, SD_NOISE, (seeds, ITEMS))

    return recipe(7.0 + delta), recipe(7.0)


def rejection_rates(seeds: int, delta: float, sims: int, seed: int) -> tuple[float, float]:
    """(items-only interval of one seed per recipe, Multi-Bootstrap over all seeds): how often each 95%
    interval of a - b excludes zero."""
    rng = np.random.default_rng(seed)
    items_only = mb = 0
    for k in range(sims):
        a, b = simulate(rng, seeds, delta)
        lo, hi = bootstrap_ci(a[0] - b[0], np.mean, 500, k)
        items_only += lo > 0 or hi < 0
        lo, hi = multi_bootstrap(a, b, 500, k)
        mb += lo > 0 or hi < 0
    return items_only / sims, mb / sims


@pytest.mark.parametrize("seeds", [3, 5])
def test_calibration_with_no_true_difference(seeds):
    """Same true mean: one seed per recipe with an items-only interval 'finds' a difference far more often than
    5%; the Multi-Bootstrap stays near 5% (rougher with 3 seeds: the report warns below MIN_SEEDS)."""
    items_only, mb = rejection_rates(seeds, 0.0, 300, seeds)
    print(f"\n{seeds} seeds, 100 items, no true difference, 300 simulations: a nominal 95% interval excludes 0 in "
          f"{items_only:.1%} (items only, one seed each) vs {mb:.1%} (Multi-Bootstrap)")
    assert items_only > 0.25  # measured 45-49%: the false positives of ignoring seed variance
    assert mb < (0.16 if seeds < MIN_SEEDS else 0.10)  # measured ~11% at 3 seeds, ~6% at 5
    assert mb < items_only / 3


def test_calibration_finds_a_real_difference():
    items_only, mb = rejection_rates(5, 1.0, 150, 11)
    print(f"\n5 seeds, true difference 1.0: found by the Multi-Bootstrap in {mb:.1%} of simulations (items only {items_only:.1%})")
    assert mb > 0.8


def test_multi_bootstrap_is_reproducible_and_collapses_to_the_items_bootstrap_with_one_seed():
    rng = np.random.default_rng(0)
    a, b = rng.normal(1, 1, (3, 40)), rng.normal(0, 1, (1, 40))
    assert multi_bootstrap(a, b, 500, 3) == multi_bootstrap(a, b, 500, 3)
    lo, hi = multi_bootstrap(a, b, 2000, 1)
    assert lo < (a.mean() - b.mean()) < hi
    one = multi_bootstrap(a[:1], b, 4000, 2)
    ref = bootstrap_ci(a[0] - b[0], np.mean, 4000, 2)
    assert one == pytest.approx(ref, abs=0.06)
    with pytest.raises(ValueError, match="same items"):
        multi_bootstrap(a, b[:, :10])
    assert verdict(0.1, 0.3) == "a better" and verdict(-0.3, -0.1) == "b better" and verdict(-0.1, 0.1) == "no difference"


def _frame(cols: dict) -> pd.DataFrame:
    return pd.DataFrame(cols, index=[f"i{k}" for k in range(len(next(iter(cols.values()))))])


def test_seeds_that_disagree_raise_the_flag_and_one_sided_replicates_say_so():
    rng = np.random.default_rng(4)
    base = rng.normal(5, 1, 60)
    agree = {"full": base + 1.0 + rng.normal(0, 0.2, 60), "full-seed124": base + 1.1 + rng.normal(0, 0.2, 60),
             "full-seed125": base + 0.9 + rng.normal(0, 0.2, 60), "base": base}
    runs_of = {"base": ["base"], "full": ["full", "full-seed124", "full-seed125"]}
    seed_of = {"base": None, "full": 123, "full-seed124": 124, "full-seed125": 125}
    t = replicates_table({"total": _frame(agree)}, runs_of, seed_of, [["full", "base"]], 1000, 0, 0.95)
    (row,) = t.itertuples()
    assert row.seeds_a == 3 and row.seeds_b == 1 and row.n == 60 and not row.seeds_disagree
    assert row.verdicts == "a better; a better; a better" and row.mb_lo > 0 and row.few_seeds
    assert row.note == "only full has replicates: base is one run" and "seed 124: +1.1" in row.per_seed
    worse = dict(agree, **{"full-seed125": base - 1.0 + rng.normal(0, 0.2, 60)})  # one seed loses
    (row,) = replicates_table({"total": _frame(worse)}, runs_of, seed_of, [["full", "base"]], 1000, 0, 0.95).itertuples()
    assert row.seeds_disagree and "b better" in row.verdicts
    assert row.mb_lo < row.gain < row.mb_hi and row.items_lo > 0  # the first seed alone looked sure
    seeds = seeds_table({"total": _frame(agree)}, runs_of, seed_of, 500, 0, 0.95)
    assert list(seeds[seeds.model == "full"].run) == ["full", "full-seed124", "full-seed125", "pooled"]
    assert seeds[seeds.run == "pooled"].interval.item() == "multi-bootstrap"
    # one run per side: nothing to say about seeds
    assert replicates_table({"total": _frame(agree)}, {"base": ["base"], "full": ["full"]}, seed_of,
                            [["full", "base"]], 100, 0, 0.95).empty
