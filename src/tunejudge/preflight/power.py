"""Before a run: how large a difference its test set can detect (the minimum detectable effect of the
headline comparison) and whether that reaches ``analysis.target_effect``.

The spread of the paired differences comes from a previous run's analysis where one exists
(``results/tables/comparisons.csv``: its headline comparison's MDE, rescaled to the configured test
size: an MDE falls as one over the square root of the items), else from a stated assumption."""

from __future__ import annotations

import csv
import math
from pathlib import Path

from ..analysis.stats import ALPHA, POWER, mde_factor

# The SD of two models' per-item differences of the judge's total (0-15, the study's three metrics),
# assumed when no run has measured it: the offline default's measured 5.5 (a 135M judge, 23 items)
ASSUMED_SD_PER_METRIC = 5.5 / 3
COMPARISONS = Path("results/tables/comparisons.csv")


def planned_power(cfg: dict, previous: Path = COMPARISONS) -> dict:
    """The headline comparison (the first of ``analysis.pairs``, on the judge's total) on the configured
    test set: its MDE, the target, whether the target is detectable, and the items it would need."""
    n = int(cfg["split"]["test"]["size"])
    metrics = len(cfg["judge"]["metrics"])
    target = (cfg["analysis"].get("target_effect") or {}).get("judge", 0.5) * metrics
    pair = " vs ".join(cfg["analysis"]["pairs"][0]) if cfg["analysis"]["pairs"] else "?"
    row = None
    if previous.exists():
        rows = [r for r in csv.DictReader(previous.open()) if r["scope"] == "all" and r["measure"].startswith("judge")]
        row = next((r for r in rows if r["comparison"] == pair), rows[0] if rows else None)
    if row is not None and row["mde"] not in ("", "nan") and int(row["n"]) > 1:
        mde = float(row["mde"]) * math.sqrt(int(row["n"]) / n)
        source = (f"from the previous run's {row['comparison']} ({previous}: MDE {float(row['mde']):.2f} on "
                  f"{row['n']} items in {row['groups']} groups, rescaled)")
        pair = row["comparison"]
    else:
        sd = ASSUMED_SD_PER_METRIC * metrics
        mde = mde_factor(n) * sd / math.sqrt(n)
        source = (f"assumed: SD {sd:.1f} of the per-item differences of the total (the offline default's measured "
                  "spread) and items drawn independently (items sharing an article make it larger)")
    need = int(math.ceil(n * (mde / target) ** 2)) if target > 0 else None
    return {"comparison": pair, "measure": f"judge total (0-{5 * metrics})", "test_items": n, "mde": round(mde, 3),
            "target": target, "detectable": bool(mde <= target), "items_needed": need, "spread": source}


def render_power(p: dict) -> list[str]:
    verdict = (f"the target {p['target']:g} is detectable" if p["detectable"] else
               f"TOO SMALL for the target {p['target']:g}: about {p['items_needed']} test items would detect it "
               "(split.test.size)")
    return [f"preflight: power of the headline comparison ({p['comparison']}, {p['measure']}) on {p['test_items']} "
            f"test items: minimum detectable effect {p['mde']:.2f} at alpha {ALPHA}, power {POWER}; {verdict}",
            f"  note: spread {p['spread']}"]
