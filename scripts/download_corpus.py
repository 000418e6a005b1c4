"""Rule download_corpus (localrule): one Hub corpus split into the Hub cache; its manifest."""

from tunejudge.data.load import fetch_dataset
from tunejudge.io import run_step, write_json
from tunejudge.run import hub

hub.go_online()  # a download rule: the one kind of job that reaches the Hub


def main(snakemake):
    write_json(snakemake.output[0], fetch_dataset(snakemake.params.loader, snakemake.params.key))


run_step(lambda: main(snakemake), snakemake.log[0])  # noqa: F821
