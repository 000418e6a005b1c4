"""Rule split: the global test set and train/val per experiment."""

import logging
from pathlib import Path

from tunejudge.data.records import validate_records
from tunejudge.data.split import make_splits
from tunejudge.io import read_json, run_step, write_json

log = logging.getLogger("tunejudge.split")


def main(snakemake):
    by_source = {}
    for path in snakemake.input:
        records = validate_records(read_json(path), path)
        by_source[Path(path).stem] = records
    cfg = dict(snakemake.params.split, experiments=snakemake.params.experiments)
    res = make_splits(by_source, cfg, seed=snakemake.params.seed)
    # outputs.parts is experiment-major, train then val (the rule's expand)
    paths = iter(snakemake.output.parts)
    for name in snakemake.params.experiments:
        for part in ("train", "val"):
            write_json(next(paths), res.experiments[name][part])
    write_json(snakemake.output.test, res.test)
    write_json(snakemake.output.dropped, res.dropped)
    write_json(snakemake.output.manifest, res.manifest())
    log.info("splits: %s", res.manifest())


run_step(lambda: main(snakemake), snakemake.log[0])  # noqa: F821
