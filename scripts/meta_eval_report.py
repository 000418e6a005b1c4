"""Rule meta_eval_report: every judge against the experts, beside the published figures and a trivial
baseline: results/meta_eval/report.md and its tables."""

import logging

import pandas as pd

from tunejudge.io import read_json, read_jsonl, run_step, write_text_atomic
from tunejudge.judge import meta_eval as M
from tunejudge.judge.scores import read_judge_rows

log = logging.getLogger("tunejudge.meta_eval")


def main(snakemake):
    p, out = snakemake.params, snakemake.output
    items, mt = read_json(snakemake.input.summeval), read_json(snakemake.input.mt_bench)
    judges = list(p.judges)
    frame = M.summeval_frame(items, {j: read_judge_rows(f) for j, f in zip(judges, snakemake.input.summeval_rows)})
    votes = M.mt_bench_frame(mt["pairs"], mt["votes"], {j: read_jsonl(f) for j, f in zip(judges, snakemake.input.mt_bench_rows)})
    a = p.analysis
    corr = pd.concat([M.summary_level(frame, s, a["bootstrap"], p.seed, a["ci_level"]) for s in [*judges, "length"]],
                     ignore_index=True)
    agree = pd.concat([M.agreement(votes, s, a["bootstrap"], p.seed, a["ci_level"]) for s in [*judges, "length"]],
                      ignore_index=True)
    write_text_atomic(out.summeval, corr.to_csv(index=False, float_format="%.6f"))
    write_text_atomic(out.mt_bench, agree.to_csv(index=False, float_format="%.6f"))
    idents = {j: read_json(f)["judge"] for j, f in zip(judges, snakemake.input.stats)}
    write_text_atomic(out.report, M.report_md(corr, agree, idents, a["ci_level"],
                                              summaries=len(items), pairs=len(mt["pairs"]), votes=len(mt["votes"])) + "\n")
    for r in corr[(corr.dimension == "average") & (corr.statistic == "spearman")].itertuples():
        log.info("SummEval %s: summary-level Spearman %.3f [%.3f, %.3f]", r.scorer, r.value, r.lo, r.hi)
    for r in agree.itertuples():
        log.info("MT-Bench %s %s: agreement %.3f [%.3f, %.3f] over %d votes", r.scorer, r.setup, r.agreement, r.lo, r.hi,
                 r.votes)


run_step(lambda: main(snakemake), snakemake.log[0])  # noqa: F821
