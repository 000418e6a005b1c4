"""The judge panel: its settings (tunejudge.run.config) and its statistics (tunejudge.analysis.stats)."""

import math

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import REPO

from tunejudge.analysis import stats as A
from tunejudge.errors import ConfigError
from tunejudge.run.checks import check_panel
from tunejudge.run.config import panel_judge

SCHEMA = yaml.safe_load((REPO / "config/schema.yaml").read_text())
MODELS = ["base", "full"]
METRICS = ["m1", "m2"]


def frame(scores: dict[str, np.ndarray]) -> pd.DataFrame:
    """A judge frame: per model, per item, the same score on every metric."""
    rows = [{"id": f"i{k:03d}", "source": "s", "model": m, "metric": metric, "score_5": float(v[k]), "reason": "r"}
            for m, v in scores.items() for k in range(len(v)) for metric in METRICS]
    return pd.DataFrame(rows)


def settings():
    return A.Settings(pairs=[["full", "base"]], n_boot=300, seed=1)


def test_cohen_kappa():
    assert A.cohen_kappa([1, 0, -1, 1], [1, 0, -1, 1]) == 1.0
    assert math.isnan(A.cohen_kappa([0, 0, 0], [0, 0, 0]))  # chance agreement is certain: undefined
    assert A.cohen_kappa([1, 1, 0, 0], [1, 0, 1, 0]) == pytest.approx(0.0)
    assert A.cohen_kappa([1, 1, -1, -1], [-1, -1, 1, 1]) == pytest.approx(-1.0)


def test_identical_judges_agree_and_a_random_one_is_flagged():
    rng = np.random.default_rng(0)
    quality = {"base": rng.uniform(0, 3, 40), "full": rng.uniform(1, 5, 40)}
    primary = frame(quality)
    frames = {"primary": primary, "twin": primary.copy(),
              "random": frame({m: rng.uniform(0, 5, 40) for m in MODELS})}
    t = A.panel_tables(frames, METRICS, MODELS, settings(), 0.6, 0.4, {"primary": "openai/a"})
    agree = t["panel_agreement"].set_index(["judge_a", "judge_b"])
    twin = agree.loc[("primary", "twin")]
    assert twin.spearman == pytest.approx(1.0) and twin.kappa == pytest.approx(1.0) and not twin.low
    assert twin.spearman_lo == pytest.approx(1.0)
    for pair in [("primary", "random"), ("twin", "random")]:
        assert agree.loc[pair].low and agree.loc[pair].spearman < 0.6 and agree.loc[pair].kappa < 0.4
    means = t["panel_means"]
    assert list(means.columns) == A.PANEL_COLUMNS["panel_means"] and len(means) == 3 * len(MODELS)
    assert means.iloc[0].judge_model == "openai/a" and (means["n"] == 40).all()


def test_judges_that_rank_a_pair_differently_are_flagged():
    base, full = np.linspace(0, 2, 30), np.linspace(2, 4, 30)
    frames = {"primary": frame({"base": base, "full": full}), "contrary": frame({"base": full, "full": base}),
              "twin": frame({"base": base, "full": full})}
    c = A.panel_tables(frames, METRICS, MODELS, settings(), 0.6, 0.4)["panel_conclusions"].set_index("judge")
    assert c.loc["primary", "conclusion"] == "full better" and c.loc["contrary", "conclusion"] == "base better"
    assert c["judges_disagree"].all()
    same = A.panel_tables({k: frames[k] for k in ("primary", "twin")}, METRICS, MODELS, settings(), 0.6, 0.4)
    assert not same["panel_conclusions"]["judges_disagree"].any()


def test_the_panel_uses_the_items_every_judge_scored():
    primary = frame({"base": np.arange(10.0) % 5, "full": np.arange(10.0) % 4})
    other = primary.copy()
    other.loc[(other.id == "i003") & (other.model == "full"), "score_5"] = np.nan  # an error row
    t = A.panel_tables({"primary": primary, "other": other}, METRICS, MODELS, settings(), 0.6, 0.4)
    assert (t["panel_means"]["n"] == 9).all() and t["panel_agreement"].iloc[0]["items"] == 9


def judge_section(**panel):
    cfg = yaml.safe_load((REPO / "config/config.yaml").read_text())["judge"]
    cfg["panel"] = {"judges": panel, "min_spearman": 0.6, "min_kappa": 0.4}
    return cfg


def test_a_panel_judge_is_the_judge_section_with_its_keys_changed():
    cfg = judge_section(mini={"backend": "openai", "openai": {"model": "gpt-4.1-mini"}})
    mini = panel_judge(cfg, "mini")
    assert mini["openai"]["model"] == "gpt-4.1-mini" and mini["openai"]["api_key_env"] == cfg["openai"]["api_key_env"]
    assert mini["metrics"] == cfg["metrics"] and "panel" not in mini and "controls" not in mini
    assert panel_judge(cfg, None) == panel_judge(cfg, "primary") == cfg
    assert check_panel(cfg, SCHEMA) == ["mini"]
    with pytest.raises(ConfigError, match="no judge 'maxi'"):
        panel_judge(cfg, "maxi")


def test_a_bad_panel_judge_is_named_in_the_error():
    with pytest.raises(ConfigError, match=r"judge.panel.judges.weird \(as merged: judge.backend\): 'nope' is not one of"):
        check_panel(judge_section(weird={"backend": "nope"}), SCHEMA)
    with pytest.raises(ConfigError, match=r"judge.panel.judges.slow \(as merged: judge.in_flight\)"):
        check_panel(judge_section(slow={"in_flight": 0}), SCHEMA)
