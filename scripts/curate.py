"""Rule curate: schema-check one source's instruction file, curate it, write kept and dropped."""

import logging

from tunejudge.data.curate import curate
from tunejudge.data.records import validate_records
from tunejudge.io import read_json, run_step, write_json
from tunejudge.models.gpt2.tokenizer import get_tokenizer

log = logging.getLogger("tunejudge.curate")


def main(snakemake):
    path = snakemake.input.records
    records = validate_records(read_json(path), path)
    audit = None
    if snakemake.input.audit:
        verdicts = read_json(snakemake.input.audit[0])
        if snakemake.params.audit_mode == "enforce":
            audit = {v["id"]: v for v in verdicts}
        else:
            failing = sum(1 for v in verdicts if v.get("keep") is False)
            log.info("audit in record mode: %d of %d items fail the auditor's checks and are kept anyway "
                     "(verdicts in %s)", failing, len(verdicts), snakemake.input.audit[0])
    res = curate(records, snakemake.params.curation, get_tokenizer(snakemake.params.tokenizer), audit,
                 audit_path=snakemake.input.audit[0] if snakemake.input.audit else "",
                 required=tuple(snakemake.params.required), task=snakemake.params.builder)
    write_json(snakemake.output.dropped, res.dropped)
    write_json(snakemake.output.kept, res.kept)
    log.info("%s: %s", path, res.summary())


run_step(lambda: main(snakemake), snakemake.log[0])  # noqa: F821
