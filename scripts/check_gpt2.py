"""Rule check_gpt2: perplexity of the pretrained base weights on plain English; fails when too high."""

from tunejudge.io import run_step, write_json
from tunejudge.models.sanity import check_weights


def main(snakemake):
    result = check_weights(snakemake.input[0], snakemake.wildcards.size, snakemake.params.max_perplexity)
    write_json(snakemake.output[0], result)


run_step(lambda: main(snakemake), snakemake.log[0])  # noqa: F821
