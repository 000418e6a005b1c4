"""Rule split_size: one experiment's train/val at the size a sweep point asks for."""

import logging
from pathlib import Path

from tunejudge.data.records import validate_records
from tunejudge.data.split import make_splits
from tunejudge.io import read_json, run_step, write_json

log = logging.getLogger("tunejudge.split_size")


def main(snakemake):
    by_source = {Path(p).stem: validate_records(read_json(p), p) for p in snakemake.input}
    name = snakemake.wildcards.experiment
    cfg = dict(snakemake.params.split, experiments={name: snakemake.params.experiment})
    res = make_splits(by_source, cfg, seed=snakemake.params.seed)
    for part in ("train", "val"):
        write_json(getattr(snakemake.output, part), res.experiments[name][part])
    log.info("experiment %s at size %s: %d train, %d val", name, snakemake.wildcards.size,
             len(res.experiments[name]["train"]), len(res.experiments[name]["val"]))


run_step(lambda: main(snakemake), snakemake.log[0])  # noqa: F821
