"""Rule build_instructions: load one corpus through `datasets` (and any generated rows), convert, write."""

import logging

from tunejudge.data.builders import build
from tunejudge.data.load import load_corpus
from tunejudge.io import read_jsonl, run_step, write_json

log = logging.getLogger("tunejudge.build_instructions")


def main(snakemake):
    source, spec = snakemake.wildcards.source, snakemake.params.spec
    rows, where = [], []
    corpus = list(snakemake.input.corpus)
    gen = spec.get("generate")
    if not gen or gen.get("mode", "replace") == "extend":  # the loader's rows (local or from the Hub)
        loader = dict(spec["loader"])
        if corpus:  # the local files this rule declared (a download, or the loader's data_files)
            loader["data_files"] = corpus
            if spec.get("download"):
                loader["path"] = "json"
        rows.extend(load_corpus(loader, limit=spec.get("limit"), select=spec.get("select", "shuffle"),
                                seed=snakemake.params.seed, key=f"sources.{source}.loader"))
        where.extend(corpus or [loader["path"]])
    for path in snakemake.input.generated:  # RAGAS rows (rule generate_qa_cnn), after the corpus rows
        generated = read_jsonl(path)
        log.info("%d generated rows from %s", len(generated), path)
        rows.extend(generated)
        where.append(path)
    records, skipped = build(spec["builder"], rows, spec, source, where=", ".join(where))
    for reason, n in sorted(skipped.items()):
        log.info("skipped %d rows: %s", n, reason)
    write_json(snakemake.output[0], records)
    log.info("%s: %d instruction records -> %s", source, len(records), snakemake.output[0])


run_step(lambda: main(snakemake), snakemake.log[0])  # noqa: F821
