"""Rule judge_pairwise: one model pair's answers side by side, both orders, every judge metric."""

import logging
import time

from tunejudge.analysis.responses import answers_of
from tunejudge.io import progress_stream, read_json, run_step, write_json, write_jsonl
from tunejudge.judge.metrics import load_metrics
from tunejudge.judge.pairwise import PROMPT, judge_pair, pair_connector, reason_chars, template
from tunejudge.judge.runner import check_errors
from tunejudge.llm import backends
from tunejudge.llm.store import AnswerStore
from tunejudge.run.config import with_runtime

log = logging.getLogger("tunejudge.judge")


def main(snakemake):
    cfg = with_runtime("judge", snakemake.params.judge, snakemake.config["judge"])
    a, b = snakemake.wildcards.a, snakemake.wildcards.b
    rows_in = read_json(snakemake.input.responses)
    for m in (a, b):
        answers_of(rows_in, m, snakemake.input.responses)  # every row has both answers, as strings
    metrics = load_metrics(cfg["metrics"])
    judge = backends.identity(cfg)
    connect = pair_connector(cfg, threads=snakemake.threads, server_log=snakemake.log.server)
    t0 = time.monotonic()
    with AnswerStore(cfg["cache"]) as cache, progress_stream(snakemake.log.main) as stream:
        rows, stats = judge_pair(a, b, rows_in, metrics, judge, cache, connect, cfg["in_flight"],
                                 reason_max_chars=reason_chars(cfg, snakemake.params.pairwise), progress_file=stream,
                                 max_requests=cfg["max_requests"])
    log.info("%s vs %s: %s", a, b, stats)
    check_errors(rows, cfg["max_error_fraction"], f"{a} vs {b}")
    write_jsonl(snakemake.output.rows, rows)
    write_json(snakemake.output.prompts, {"prompt": PROMPT, "metrics": {m.name: template(m) for m in metrics}})
    write_json(snakemake.output.stats, {**stats, "judge": judge.row(), "seconds": round(time.monotonic() - t0, 1)})


run_step(lambda: main(snakemake), snakemake.log.main)  # noqa: F821
