"""Rule audit_qa_cnn: the LLM auditor's verdict on every generated QA item of one source."""

import logging

from tunejudge.data.audit import run_audit
from tunejudge.data.records import validate_records
from tunejudge.io import progress_stream, read_json, run_step, write_json
from tunejudge.run.config import with_runtime

log = logging.getLogger("tunejudge.audit")


def main(snakemake):
    path = snakemake.input[0]
    records = validate_records(read_json(path), path)
    with progress_stream(snakemake.log.main) as stream:
        verdicts, stats = run_audit(records, path, snakemake.params.audit, with_runtime("judge", snakemake.params.llm, snakemake.config["judge"]),
                                    noisy_personas=snakemake.params.noisy_personas, threads=snakemake.threads,
                                    server_log=snakemake.log.server, progress=stream)
    write_json(snakemake.output[0], verdicts)
    log.info("%s: %s -> %s", path, stats, snakemake.output[0])


run_step(lambda: main(snakemake), snakemake.log.main)  # noqa: F821
