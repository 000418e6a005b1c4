"""Rule merge_responses: every model's answers side by side, in the study's format."""

import logging

from tunejudge.analysis.responses import merge_responses
from tunejudge.data.records import validate_records
from tunejudge.io import read_json, run_step, write_json

log = logging.getLogger("tunejudge.merge_responses")


def main(snakemake):
    test = validate_records(read_json(snakemake.input.test), snakemake.input.test)
    rows = merge_responses(test, [(p, read_json(p)) for p in snakemake.input.responses])
    write_json(snakemake.output.responses, rows)
    log.info("%d test items x %d models -> %s", len(rows), len(snakemake.input.responses), snakemake.output.responses)


run_step(lambda: main(snakemake), snakemake.log[0])  # noqa: F821
