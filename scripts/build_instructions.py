"""Rule build_instructions: load one corpus through `datasets`, convert it, write the records."""

import logging

from tunejudge.datasets import build, load_corpus
from tunejudge.io import run_step, write_json

log = logging.getLogger("tunejudge.build_instructions")


def main(snakemake):
    source, spec = snakemake.wildcards.source, snakemake.params.spec
    loader = dict(spec["loader"])
    if snakemake.input:  # the local files this rule declared (a download, or the loader's data_files)
        loader["data_files"] = list(snakemake.input)
        if spec.get("download"):
            loader["path"] = "json"
    where = ", ".join(snakemake.input) or loader["path"]
    rows = load_corpus(loader, limit=spec.get("limit"), select=spec.get("select", "shuffle"),
                       seed=snakemake.params.seed)
    records, skipped = build(spec["builder"], rows, spec, source, where=where)
    for reason, n in sorted(skipped.items()):
        log.info("skipped %d rows: %s", n, reason)
    write_json(snakemake.output[0], records)
    log.info("%s: %d instruction records -> %s", source, len(records), snakemake.output[0])


run_step(lambda: main(snakemake), snakemake.log[0])  # noqa: F821
