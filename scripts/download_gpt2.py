"""Rule download_gpt2 (localrule): the Hub's GPT-2 safetensors, once, and where they came from."""

from tunejudge.io import run_step, write_json
from tunejudge.models.gpt2.weights import download_hub_weights
from tunejudge.run import hub

hub.go_online()  # a download rule: the one kind of job that reaches the Hub


def main(snakemake):
    source = download_hub_weights(snakemake.wildcards.size, snakemake.output.weights)
    write_json(snakemake.output.source, source)


run_step(lambda: main(snakemake), snakemake.log[0])  # noqa: F821
