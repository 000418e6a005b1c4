"""MinHash-LSH near-duplicate candidates: recall at the threshold, whatever the threshold."""

import random

import pytest

from tunejudge.data.dedup import NearDupIndex, candidate_probability, jaccard, lsh_params


def _pair(rng: random.Random, n: int, t: float) -> tuple[frozenset, frozenset]:
    """Two shingle sets of n elements each, with Jaccard exactly the smallest m/(2n-m) >= t."""
    m = next(m for m in range(n + 1) if m / (2 * n - m) >= t)
    words = [f"w{rng.getrandbits(48):x}" for _ in range(2 * n - m)]
    shared, rest = words[:m], words[m:]
    a = frozenset(shared + rest[: n - m])
    b = frozenset(shared + rest[n - m :])
    return a, b


@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.85])
def test_candidate_recall_at_the_threshold_is_at_least_095(threshold):
    index = NearDupIndex(threshold=threshold)
    rng = random.Random(threshold)
    hits, pairs = 0, 600
    for _ in range(pairs):
        a, b = _pair(rng, 150, threshold)
        assert threshold <= jaccard(a, b) < threshold + 0.01
        hits += bool(set(index.band_keys(a)) & set(index.band_keys(b)))
    assert hits / pairs >= 0.95, (threshold, index.bands, index.rows, hits / pairs)


def test_the_old_fixed_bands_missed_most_pairs_at_low_thresholds():
    """What the fixed 16 x 4 gave: the reason the bands now follow the threshold."""
    assert candidate_probability(0.5, 16, 4) < 0.65 and candidate_probability(0.3, 16, 4) < 0.13
    for t in (0.05, 0.3, 0.5, 0.85, 0.95, 1.0):
        bands, rows = lsh_params(t)
        assert candidate_probability(t, bands, rows) >= 0.99 and bands * rows <= 256


def test_a_threshold_too_low_for_lsh_compares_every_pair():
    assert lsh_params(0.001) is None
    index = NearDupIndex(threshold=0.001)
    assert index.exhaustive
    rec = {"id": "a", "instruction": "alpha beta gamma delta", "input": "one two three four", "output": "x"}
    index.add(rec)
    near = dict(rec, id="b", input="one two three five", output="y")
    assert index.check(near)[0] == "near_duplicate"
