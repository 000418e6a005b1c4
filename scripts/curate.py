"""Rule curate: schema-check one source's instruction file, curate it, write kept and dropped."""

import logging

from tunejudge.curate import curate
from tunejudge.io import read_json, run_step, write_json
from tunejudge.records import validate_records
from tunejudge.tokenizer import get_tokenizer

log = logging.getLogger("tunejudge.curate")


def main(snakemake):
    path = snakemake.input[0]
    records = validate_records(read_json(path), path)
    res = curate(records, snakemake.params.curation, get_tokenizer(snakemake.params.tokenizer))
    write_json(snakemake.output.dropped, res.dropped)
    write_json(snakemake.output.kept, res.kept)
    log.info("%s: %s", path, res.summary())


run_step(lambda: main(snakemake), snakemake.log[0])  # noqa: F821
