"""Rule reference_metrics: judge-free scores for one model's answers."""

import logging

from tunejudge.analysis.reference import reference_rows
from tunejudge.analysis.responses import run_answers
from tunejudge.data.records import validate_records
from tunejudge.io import read_json, run_step, write_jsonl

log = logging.getLogger("tunejudge.reference")


def main(snakemake):
    model = snakemake.wildcards.model
    items = run_answers(validate_records(read_json(snakemake.input.test), snakemake.input.test),
                        read_json(snakemake.input.responses), snakemake.input.responses)
    rows = reference_rows(items, model, snakemake.params.kinds)
    write_jsonl(snakemake.output[0], rows)
    log.info("%s: %d answers scored -> %s", model, len(rows), snakemake.output[0])


run_step(lambda: main(snakemake), snakemake.log[0])  # noqa: F821
