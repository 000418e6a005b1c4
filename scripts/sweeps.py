"""Rule sweeps: the sweep table and plot (every sweep point and seed against its settings)."""

import logging

import pandas as pd

from tunejudge.analysis import plots
from tunejudge.analysis.replicates import sweep_rows
from tunejudge.analysis.stats import judge_frame
from tunejudge.io import read_json, read_jsonl, run_step, write_text_atomic
from tunejudge.judge.scores import read_judge_rows

log = logging.getLogger("tunejudge.sweeps")


def main(snakemake):
    runs = snakemake.params.runs
    histories = {read_json(p)["model"]: read_json(p) for p in snakemake.input.histories}
    reference = pd.DataFrame([r for p in snakemake.input.reference for r in read_jsonl(p)])
    judge = judge_frame([r for p in snakemake.input.judge for r in read_judge_rows(p)]) if snakemake.input.judge else None
    rows = sweep_rows(runs, histories, reference, judge, snakemake.params.metrics)
    write_text_atomic(snakemake.output.table, rows.to_csv(index=False, float_format="%.6f"))
    plots.sweep_lines(rows, f"Sweeps: {len(runs)} trainings", snakemake.output.plot)
    for (sweep, point), part in rows.groupby(["sweep", "point"], sort=False):
        log.info("%s %s: val loss %s, judge-free %.3f over %d seeds", sweep, point,
                 "/".join(f"{v:.3f}" for v in part.drop_duplicates("run")["val_loss"]),
                 part.drop_duplicates("run")["reference"].mean(), part["run"].nunique())


run_step(lambda: main(snakemake), snakemake.log[0])  # noqa: F821
