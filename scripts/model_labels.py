"""Rule model_labels: how the report, the plots and the browser name each run (results/model_labels.json).

Display labels live here only: rewording one reruns what shows it, never a training or an answer."""

from tunejudge.io import run_step, write_json


def main(snakemake):
    write_json(snakemake.output[0], dict(snakemake.params.labels))


run_step(lambda: main(snakemake), snakemake.log[0])  # noqa: F821
