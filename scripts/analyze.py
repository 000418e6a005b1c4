"""Rule analyze: the study's statistics with CIs, per source, judge checks and qualitative cases."""

import logging
from pathlib import Path

import pandas as pd

from tunejudge import analysis as A
from tunejudge import replicates as RS
from tunejudge.io import read_json, read_jsonl, run_step, write_json, write_text_atomic
from tunejudge.judge.scores import read_judge_rows

log = logging.getLogger("tunejudge.analyze")


def job_name(path: str) -> str:
    """A judge job's name in the cost table: its outputs' path under results/judge/ (base, controls,
    pairwise/full_vs_base, panel/<judge>/base)."""
    rel = Path(path).relative_to("results/judge").as_posix()
    return rel.removesuffix(".stats.json").removesuffix(".jsonl")


def identity(rows: list[dict]) -> str:
    """backend/model of the judge that wrote these rows."""
    return f"{rows[0]['judge']['backend']}/{rows[0]['judge']['model']}" if rows else ""


def panel(snakemake, judge_all, metrics, models, s, primary_validity) -> dict:
    """The panel's tables (empty, with their columns, without a panel)."""
    names = snakemake.params.panel
    if not names:
        return {name: pd.DataFrame(columns=cols) for name, cols in A.PANEL_COLUMNS.items()}
    frames, identities = {A.PRIMARY: judge_all}, {A.PRIMARY: identity(read_judge_rows(snakemake.input.judge[0]))}
    for j in names:
        rows = [r for p in snakemake.input.panel if Path(p).parent.name == j for r in read_judge_rows(p)]
        frames[j], identities[j] = A.judge_frame(rows), identity(rows)
    t = snakemake.params.panel_thresholds
    tables = A.panel_tables(frames, metrics, models, s, t["min_spearman"], t["min_kappa"], identities)
    validity = [primary_validity.assign(judge=A.PRIMARY)]
    for p in snakemake.input.panel_controls:
        controls = A.judge_frame(read_judge_rows(p))
        validity.append(A.judge_validity(controls, metrics, s, snakemake.params.min_auc)[0].assign(judge=Path(p).parent.name))
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


def reseeding(snakemake, judge_all, reference, metrics, s) -> dict:
    """The tables over seeds: each run's means and each model's pooled mean (seeds), and each pair with
    replicates compared with the Multi-Bootstrap beside the items-only interval (replicates)."""
    judge = pd.concat([judge_all, A.judge_frame([r for p in snakemake.input.replicate_judge for r in read_judge_rows(p)])],
                      ignore_index=True)
    reference = pd.concat([reference, *(pd.DataFrame(read_jsonl(p)) for p in snakemake.input.replicate_reference)],
                          ignore_index=True)
    values = RS.per_item(judge, reference, metrics)
    runs_of, seed_of = snakemake.params.runs_of, snakemake.params.seed_of
    tables = {"seeds": RS.seeds_table(values, runs_of, seed_of, s.n_boot, s.seed, s.level),
              "replicates": RS.replicates_table(values, runs_of, seed_of, s.pairs, s.n_boot, s.seed, s.level)}
    for r in tables["replicates"].itertuples():
        if r.seeds_disagree:
            log.warning("%s (%s): the seeds disagree -- %s", r.pair, r.measure, r.per_seed)
    return tables


def main(snakemake):
    cfg, metrics, models = snakemake.params.analysis, snakemake.params.metrics, snakemake.params.models
    judge_all = A.judge_frame([r for p in snakemake.input.judge for r in read_judge_rows(p)])
    # one item set for every table: the items every model has every metric scored on
    judge, excluded = A.common_items(judge_all, metrics, models)
    reference = pd.DataFrame([r for p in snakemake.input.reference for r in read_jsonl(p)])
    answers = {r["id"]: r for r in read_json(snakemake.input.responses)}
    s = A.Settings(pairs=[list(p) for p in cfg["pairs"]], tie_tolerance=cfg["tie_tolerance"],
                   n_boot=cfg["bootstrap"], seed=snakemake.params.seed, level=cfg["ci_level"])
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
    }
    if snakemake.input.controls:
        controls = A.judge_frame([r for p in snakemake.input.controls for r in read_judge_rows(p)])
        tables["judge_validity"], verdict = A.judge_validity(controls, metrics, s, snakemake.params.min_auc)
    else:
        tables["judge_validity"] = pd.DataFrame(columns=["scope", "metric", "auc", "auc_lo", "auc_hi", "items"])
        verdict = {"enabled": False, "passes": None}
    write_json(snakemake.output.validity, verdict)
    tables.update(panel(snakemake, judge_all, metrics, models, s, tables["judge_validity"]))
    pair_rows = [r for p in snakemake.input.pairwise for r in read_jsonl(p)]
    tables["pairwise"] = A.pairwise_table(pair_rows, lengths, s)
    by_job = {job_name(p): read_json(p) for p in snakemake.input.stats}
    tables.update(reseeding(snakemake, judge_all, reference, metrics, s))
    job_rows = {job_name(p): read_jsonl(p) for p in [*snakemake.input.judge, *snakemake.input.replicate_judge,
                                                     *snakemake.input.controls,
                                                     *snakemake.input.pairwise, *snakemake.input.panel,
                                                     *snakemake.input.panel_controls]}
    tables["judge_cost"] = A.cost_table({j: (job_rows.get(j, []), st) for j, st in by_job.items()},
                                        snakemake.params.prices)
    if verdict.get("passes") is False:
        log.warning("the judge FAILS its controls (metrics below AUC %.2f: %s): its scores do not separate a "
                    "correct answer from a wrong one", verdict["min_auc"], ", ".join(verdict["failing_metrics"]))
    for name, df in tables.items():
        write_text_atomic(getattr(snakemake.output, name), df.to_csv(index=False, float_format="%.6f"))
    write_json(snakemake.output.cases, A.cases(judge, tot, answers, s, cfg["cases_per_direction"]))
    if len(excluded):
        log.warning("%d of %d test items left out of every table (an error row or no row for some model): %s",
                    len(excluded), judge_all["id"].nunique(), snakemake.output.excluded_items)
    for _, r in tables["means"].iterrows():
        log.info("%s: mean total %.3f [%.3f, %.3f] over %d items", r["model"], r["total"], r["total_lo"],
                 r["total_hi"], r["n"])


run_step(lambda: main(snakemake), snakemake.log[0])  # noqa: F821
