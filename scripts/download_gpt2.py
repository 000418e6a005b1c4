"""Rule download_gpt2: the Hub's GPT-2 safetensors, once."""

from tunejudge.io import run_step
from tunejudge.model import download_hub_weights


def main(snakemake):
    download_hub_weights(snakemake.wildcards.size, snakemake.output[0])


run_step(lambda: main(snakemake), snakemake.log[0])  # noqa: F821
