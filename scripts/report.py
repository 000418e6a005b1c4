"""Rule report: results/report.md from the analysis tables and plots."""

import os

import pandas as pd

from tunejudge.analysis.replicates import MIN_SEEDS
from tunejudge.analysis.report import ReportContext, build_report
from tunejudge.io import read_json, run_step, write_text_atomic
from tunejudge.judge.scores import read_judge_rows


def bases(snakemake) -> dict:
    """Each used base as the report describes it, with its weights check where it ran."""
    return {name: {**b, "perplexity": read_json(b["check"]) if b.get("check") else None}
            for name, b in snakemake.params.bases.items()}


def main(snakemake):
    sweeps = [p for p in snakemake.input.sweeps if p.endswith(".csv")]
    tables = {os.path.basename(p)[:-4]: pd.read_csv(p) for p in [*snakemake.input.tables, *sweeps]}
    out_dir = os.path.dirname(snakemake.output[0])
    plots = {os.path.basename(p)[:-4]: os.path.relpath(p, out_dir)
             for p in [*snakemake.input.plots, *(p for p in snakemake.input.sweeps if p.endswith(".png"))]}
    first = read_judge_rows(snakemake.input.judge[0])
    cfg = snakemake.params.analysis
    text = build_report(ReportContext(
        judge_desc=first[0]["judge"] if first else {"backend": "none", "model": "none"},
        labels=read_json(snakemake.input.labels), config_files=snakemake.params.config_files,
        metrics=snakemake.params.metrics, n_items=len({r["id"] for r in first}), tables=tables,
        cases=read_json(snakemake.input.cases), plots=plots, tie_tolerance=cfg["tie_tolerance"],
        level=cfg["ci_level"], n_boot=cfg["bootstrap"], verdict=read_json(snakemake.input.validity),
        panel_thresholds=snakemake.params.panel_thresholds, bases=bases(snakemake), runs_of=snakemake.params.runs_of,
        min_seeds=MIN_SEEDS,
        preference_sets={s: {"models": models, "summary": read_json(f"data/preferences/{s}.summary.json")}
                         for s, models in snakemake.params.preference_sets.items()}))
    for section in snakemake.input.meta_eval:  # meta_eval.in_report: the judge versus human experts
        text += "\n\n" + open(section, encoding="utf-8").read().rstrip("\n")
    write_text_atomic(snakemake.output[0], text + "\n")


run_step(lambda: main(snakemake), snakemake.log[0])  # noqa: F821
