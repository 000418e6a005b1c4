"""Rule config: results/config.yaml, the config this run gets (files merged as tunejudge.run.config does)."""

import yaml

from tunejudge.io import run_step, write_text_atomic


def main(snakemake):
    write_text_atomic(snakemake.output[0], yaml.safe_dump(dict(snakemake.params.config), sort_keys=False))


run_step(lambda: main(snakemake), snakemake.log[0])  # noqa: F821
