"""Rule generate_qa_cnn: RAGAS test-set generation over news articles through the judge's backend."""

import logging

from tunejudge.data.load import load_corpus
from tunejudge.data.qagen.run import run_generation
from tunejudge.io import progress_stream, run_step, write_json, write_jsonl
from tunejudge.models.gpt2.tokenizer import get_tokenizer
from tunejudge.run.config import with_runtime

log = logging.getLogger("tunejudge.qagen")


def main(snakemake):
    spec = snakemake.params.spec
    loader = dict(spec["articles"])
    local = list(snakemake.input.articles)
    if local:
        loader["data_files"] = local
    rows = load_corpus(loader, limit=spec.get("limit"), select="first", key=f"sources.{snakemake.wildcards.source}.generate.articles")
    with progress_stream(snakemake.log.main) as stream:
        result, stats = run_generation(rows, ", ".join(local) or loader["path"], spec,
                                       with_runtime("judge", snakemake.params.llm, snakemake.config["judge"]), seed=snakemake.params.seed,
                                       tokenizer=get_tokenizer(snakemake.params.tokenizer), threads=snakemake.threads,
                                       server_log=snakemake.log.server, progress=stream)
    write_json(snakemake.output.skipped, result.skipped)
    write_jsonl(snakemake.output.testset, result.rows)
    log.info("%d rows -> %s; %d steps skipped -> %s; requests: %s", len(result.rows), snakemake.output.testset,
             len(result.skipped), snakemake.output.skipped, stats)


run_step(lambda: main(snakemake), snakemake.log.main)  # noqa: F821
