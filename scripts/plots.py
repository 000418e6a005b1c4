"""Rule plots: the report's figures (PNG)."""

import pandas as pd

from tunejudge.analysis import plots
from tunejudge.analysis.stats import judge_frame
from tunejudge.io import read_json, run_step
from tunejudge.judge.scores import read_judge_rows


def main(snakemake):
    metrics, models = snakemake.params.metrics, snakemake.params.models
    rows = [r for p in snakemake.input.judge for r in read_judge_rows(p)]
    judge = judge_frame(rows)
    who = f"judge: {rows[0]['judge']['backend']} / {rows[0]['judge']['model']}" if rows else "judge: none"
    labels = read_json(snakemake.input.labels)
    pct = plots.percent(snakemake.params.level)
    weights = "random-init weights" if any("random init" in v for v in labels.values()) else "pretrained weights"
    plots.score_distributions(judge, metrics, models, f"Judge scores per metric ({who}; {weights})",
                              snakemake.output.scores)
    plots.source_means(pd.read_csv(snakemake.input.means_by_source), models,
                       f"Mean total score per source, {pct}% CI ({who}; {weights})", snakemake.output.sources,
                        level=snakemake.params.level)
    plots.win_tie_loss_bars(pd.read_csv(snakemake.input.pairs), f"Win / tie / loss on the per-item total ({who})",
                            snakemake.output.win_tie_loss, level=snakemake.params.level)
    plots.length_controlled(pd.read_csv(snakemake.input.length_controlled),
                            f"Preference for the first model of each pair, raw and length-controlled, {pct}% CI ({who})",
                            snakemake.output.length_controlled)
    plots.seed_spread(pd.read_csv(snakemake.input.seeds), models, f"Seed spread ({who}; {weights})",
                      snakemake.output.seeds, level=snakemake.params.level)
    histories = {m: read_json(p) for m, p in zip(snakemake.params.trained, snakemake.input.histories)}
    plots.all_loss_curves(histories, f"Fine-tuning loss ({weights})", snakemake.output.loss)


run_step(lambda: main(snakemake), snakemake.log[0])  # noqa: F821
