"""Rule init_gpt2: a seeded random GPT-2, saved as a checkpoint that says it is random."""

import logging

from tunejudge.io import run_step
from tunejudge.models.bases import base_label
from tunejudge.models.gpt2.weights import init_random, save_checkpoint

log = logging.getLogger("tunejudge.init_gpt2")


def main(snakemake):
    size, seed = snakemake.wildcards.size, int(snakemake.wildcards.seed)
    model = init_random(size, seed)
    save_checkpoint(model, snakemake.output[0], {"label": base_label(size, "random", seed), "init": "random"})
    log.info("%s: %s parameters -> %s", base_label(size, "random", seed), f"{model.num_parameters():,}",
             snakemake.output[0])


run_step(lambda: main(snakemake), snakemake.log[0])  # noqa: F821
