"""Rule analyze: the study's statistics with CIs, per source, judge checks and qualitative cases."""

import logging

import pandas as pd

from tunejudge import analysis as A
from tunejudge.io import read_json, read_jsonl, run_step, write_json, write_text_atomic

log = logging.getLogger("tunejudge.analyze")


def main(snakemake):
    cfg, metrics, models = snakemake.params.analysis, snakemake.params.metrics, snakemake.params.models
    judge = A.judge_frame([r for p in snakemake.input.judge for r in read_jsonl(p)])
    reference = pd.DataFrame([r for p in snakemake.input.reference for r in read_jsonl(p)])
    answers = {r["id"]: r for r in read_json(snakemake.input.responses)}
    s = A.Settings(pairs=[list(p) for p in cfg["pairs"]], tie_tolerance=cfg["tie_tolerance"],
                   n_boot=cfg["bootstrap"], seed=snakemake.params.seed, level=cfg["ci_level"])
    tot = A.totals(judge, metrics)
    lengths = pd.DataFrame({m: {i: len(a[f"model {m}"].split()) for i, a in answers.items()} for m in models})
    means_src, pairs_src = A.per_source(judge, metrics, models, s)
    length_corr, length_matched = A.length_bias(judge, tot, lengths, s, cfg["length_match"])
    tables = {
        "means": A.means_table(judge, metrics, models, s),
        "means_by_source": means_src,
        "pairs": A.pair_table(tot, s),
        "pairs_by_source": pairs_src,
        "judge_agreement": A.judge_agreement(judge, reference, metrics),
        "length_bias": length_corr,
        "length_matched": length_matched,
    }
    for name, df in tables.items():
        write_text_atomic(getattr(snakemake.output, name), df.to_csv(index=False, float_format="%.6f"))
    write_json(snakemake.output.cases, A.cases(judge, tot, answers, s, cfg["cases_per_direction"]))
    for _, r in tables["means"].iterrows():
        log.info("%s: mean total %.3f [%.3f, %.3f] over %d items", r["model"], r["total"], r["total_lo"],
                 r["total_hi"], r["n"])


run_step(lambda: main(snakemake), snakemake.log[0])  # noqa: F821
