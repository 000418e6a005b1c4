"""Rule download_source: fetch a source's raw file once."""

from tunejudge.io import run_step
from tunejudge.run.download import fetch


def main(snakemake):
    spec = snakemake.params.spec
    fetch(spec["url"], snakemake.output[0], sha256=spec.get("sha256"))


run_step(lambda: main(snakemake), snakemake.log[0])  # noqa: F821
