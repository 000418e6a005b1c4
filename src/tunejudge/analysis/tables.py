"""Rule analyze's tables: every statistic the report shows, from the judge's rows, the judge-free
metrics and the answers, on one item set, with intervals; the judge's validity verdict; the cases."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import pandas as pd

from ..judge.adversarial import NULL_MODEL, NULL_PERSUASIVE
from . import replicates as RS
from . import stats as A

log = logging.getLogger("tunejudge.analyze")


@dataclass
class Inputs:
    """What rule analyze reads, already parsed (the script reads the files)."""

    judge: list[dict]  # the judge's rows of every model (the first seeds)
    reference: list[dict]  # the judge-free rows of every model
    answers: dict[str, dict]  # id -> test record with every model's answer
    controls: list[dict] | None = None  # the judge's control rows (None: controls off)
    adversarial: list[dict] | None = None  # the adversarial controls' rows (None: off)
    panel: dict[str, list[dict]] = field(default_factory=dict)  # panel judge -> its rows
    panel_controls: dict[str, list[dict]] = field(default_factory=dict)  # panel judge -> its control rows
    pairwise: list[dict] = field(default_factory=list)
    replicate_judge: list[dict] = field(default_factory=list)
    replicate_reference: list[dict] = field(default_factory=list)
    jobs: dict[str, tuple[list[dict], dict]] = field(default_factory=dict)  # judge job -> (rows, stats)
    primary_identity: str = ""  # backend/model of the judge section's own judge
    # test item id -> its unit in the split (items that share a CNN article or a SQuAD passage share one):
    # what every interval resamples (tunejudge.data.split.split_units)
    groups: dict[str, str] = field(default_factory=dict)


@dataclass
class Analysis:
    tables: dict[str, pd.DataFrame]
    verdict: dict
    cases: list[dict]


def identity(rows: list[dict]) -> str:
    """backend/model of the judge that wrote these rows."""
    return f"{rows[0]['judge']['backend']}/{rows[0]['judge']['model']}" if rows else ""


def _panel(inp: Inputs, judge_all, metrics, models, s, primary_validity, thresholds: dict, min_auc: float) -> dict:
    """The panel's tables (empty, with their columns, without a panel)."""
    if not inp.panel:
        return {name: pd.DataFrame(columns=cols) for name, cols in A.PANEL_COLUMNS.items()}
    frames, identities = {A.PRIMARY: judge_all}, {A.PRIMARY: inp.primary_identity}
    for j, rows in inp.panel.items():
        frames[j], identities[j] = A.judge_frame(rows), identity(rows)
    tables = A.panel_tables(frames, metrics, models, s, thresholds["min_spearman"], thresholds["min_kappa"], identities)
    validity = [primary_validity.assign(judge=A.PRIMARY)]
    for j, rows in inp.panel_controls.items():
        validity.append(A.judge_validity(A.judge_frame(rows), metrics, s, min_auc)[0].assign(judge=j))
    pooled = pd.concat(validity, ignore_index=True)
    tables["panel_validity"] = pooled[pooled.scope == "all"].reindex(columns=A.PANEL_COLUMNS["panel_validity"])
    for r in tables["panel_agreement"].itertuples():
        if r.low:
            log.warning("judges %s and %s agree little: Spearman %.2f, kappa %.2f on %d items", r.judge_a, r.judge_b,
                        r.spearman, r.kappa, r.items)
    split = tables["panel_conclusions"]
    for pair in split[split.judges_disagree]["pair"].unique():
        log.warning("the judges draw different conclusions on %s: %s", pair, "; ".join(
            f"{r.judge}: {r.conclusion}" for r in split[split.pair == pair].itertuples()))
    return tables


def _reseeding(inp: Inputs, judge_all, reference, metrics, s, runs_of: dict, seed_of: dict) -> dict:
    """The tables over seeds: each run's means and each model's pooled mean (seeds), and each pair with
    replicates compared with the Multi-Bootstrap beside the items-only interval (replicates)."""
    judge = pd.concat([judge_all, A.judge_frame(inp.replicate_judge)], ignore_index=True)
    extra = [pd.DataFrame(inp.replicate_reference)] if inp.replicate_reference else []
    reference = pd.concat([reference, *extra], ignore_index=True)
    values = RS.per_item(judge, reference, metrics)
    tables = {"seeds": RS.seeds_table(values, runs_of, seed_of, s.n_boot, s.seed, s.level, s.groups),
              "replicates": RS.replicates_table(values, runs_of, seed_of, s.pairs, s.n_boot, s.seed, s.level,
                                                groups=s.groups)}
    for r in tables["replicates"].itertuples():
        if r.seeds_disagree:
            log.warning("%s (%s): the seeds disagree -- %s", r.pair, r.measure, r.per_seed)
    return tables


def adversarial_frame(rows: list[dict]) -> pd.DataFrame:
    """The adversarial controls' rows as a frame, with the defence setting each was judged under."""
    frame = A.judge_frame(rows)
    frame["defences"] = [r.get("defences", "none") for r in rows]
    return frame


def analyze(inp: Inputs, *, cfg: dict, metrics: list[str], models: list[str], seed: int, min_auc: float,
            panel_thresholds: dict, runs_of: dict, seed_of: dict, prices: dict | None,
            adversarial_tolerance: float = 0.5, defences: str = "none", tuned: dict | None = None) -> Analysis:
    """Every table of rule analyze (``cfg``: the config's analysis section; ``defences``: the label of the
    judge's own prompt defences, whose adversarial verdict enters the validity verdict)."""
    judge_all = A.judge_frame(inp.judge)
    # one item set for every table: the items every model has every metric scored on
    judge, excluded = A.common_items(judge_all, metrics, models)
    reference = pd.DataFrame(inp.reference)
    answers = inp.answers
    s = A.Settings(pairs=[list(p) for p in cfg["pairs"]], tie_tolerance=cfg["tie_tolerance"],
                   n_boot=cfg["bootstrap"], seed=seed, level=cfg["ci_level"], groups=inp.groups or None)
    tot = A.totals(judge, metrics)
    empty = pd.DataFrame([{"model": m, "empty_answers": sum(not a[f"model {m}"].strip() for a in answers.values()),
                           "answers": len(answers)} for m in models])
    lengths = pd.DataFrame({m: {i: len(a[f"model {m}"].split()) for i, a in answers.items()} for m in models})
    means_src, pairs_src = A.per_source(judge, metrics, models, s)
    length_corr, length_matched = A.length_bias(judge, tot, lengths, s, cfg["length_match"])
    tables = {
        "means": A.means_table(judge, metrics, models, s),
        "means_by_source": means_src,
        "pairs": A.pair_table(tot, s),
        "pairs_by_source": pairs_src,
        "judge_agreement": A.judge_agreement(judge, reference, metrics),
        "reference": A.reference_table(reference, models, s),
        "length_bias": length_corr,
        "length_matched": length_matched,
        "length_controlled": A.length_controlled(tot, lengths, s),
        "excluded_items": excluded,
        "empty_answers": empty,
        "flags": A.flags_table(reference, models),
        "preferences": A.preference_table(reference, tuned or {}, s),
    }
    tables["comparisons"] = A.comparisons(tables["pairs"], pairs_src, tables["reference"], len(metrics),
                                          cfg.get("target_effect") or {})
    if inp.controls is not None:
        tables["judge_validity"], verdict = A.judge_validity(A.judge_frame(inp.controls), metrics, s, min_auc)
    else:
        tables["judge_validity"] = pd.DataFrame(columns=["scope", "metric", "auc", "auc_lo", "auc_hi", "items", "passes",
                                                         "items_needed"])
        verdict = {"enabled": False, "passes": None}
    if inp.adversarial is not None:
        tables["adversarial"], adversarial = A.adversarial_validity(adversarial_frame(inp.adversarial), metrics, s,
                                                                    adversarial_tolerance, defences)
        verdict["adversarial"] = adversarial
        if verdict.get("enabled"):
            verdict["auc_passes"] = verdict["passes"]
            verdict["passes"] = A.combine(verdict["passes"], adversarial["passes"])
    else:
        tables["adversarial"] = pd.DataFrame(columns=A.ADVERSARIAL_COLUMNS)
    tables.update(_panel(inp, judge_all, metrics, models, s, tables["judge_validity"], panel_thresholds, min_auc))
    if any(r.get("a") == NULL_MODEL for r in inp.pairwise):  # the null model's one answer, against each model
        lengths[NULL_MODEL] = len(NULL_PERSUASIVE.split())
    tables["pairwise"] = A.pairwise_table(inp.pairwise, lengths, s)
    tables.update(_reseeding(inp, judge_all, reference, metrics, s, runs_of, seed_of))
    tables["judge_cost"] = A.cost_table(inp.jobs, prices)
    if verdict.get("failing_metrics"):
        log.warning("the judge FAILS its controls (metrics below AUC %.2f: %s): its scores do not separate a "
                    "correct answer from a wrong one", verdict["min_auc"], ", ".join(verdict["failing_metrics"]))
    adv = verdict.get("adversarial") or {}
    if adv.get("fooled_by"):
        log.warning("the judge can be talked into a score: %s score(s) more than %.2f above the plain wrong answer "
                    "(defences: %s)", ", ".join(adv["fooled_by"]), adv["tolerance"], adv["defences"])
    for f in tables["flags"].itertuples():
        if f.flagged:
            log.warning("%s: %d of %d answers flagged (%s)", f.model, f.flagged, f.answers, f.flags)
    cases = A.cases(judge, tot, answers, s, cfg["cases_per_direction"])
    if len(excluded):
        log.warning("%d of %d test items left out of every table (an error row or no row for some model)",
                    len(excluded), judge_all["id"].nunique())
    for _, r in tables["means"].iterrows():
        log.info("%s: mean total %.3f [%.3f, %.3f] over %d items", r["model"], r["total"], r["total_lo"],
                 r["total_hi"], r["n"])
    return Analysis(tables, verdict, cases)
