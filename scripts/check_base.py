"""Rule check_base: a transformers base's perplexity on plain English; stops the run when too high."""

from tunejudge.io import run_step, write_json
from tunejudge.models.auto import open_lm
from tunejudge.models.bases import BaseSpec
from tunejudge.models.sanity import check_perplexity


def main(snakemake):
    spec = BaseSpec(**snakemake.params.base)
    lm = open_lm(spec, snakemake.input[0])
    result = check_perplexity(lm, f"base {spec.name} ({spec.where()})", spec.max_perplexity,
                              f"bases.{spec.name}.max_perplexity")
    write_json(snakemake.output[0], {**result, "where": spec.where(), "model": lm.describe()})


run_step(lambda: main(snakemake), snakemake.log[0])  # noqa: F821
