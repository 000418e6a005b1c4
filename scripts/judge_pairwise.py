"""Rules judge_pairwise and judge_pairwise_null: one model pair's answers side by side (or the null model's
constant answer against one model's), both orders, every judge metric."""

import logging
import time

from tunejudge.analysis.responses import answers_of
from tunejudge.io import progress_stream, read_json, run_step, write_json, write_jsonl
from tunejudge.judge.adversarial import NULL_MODEL, with_null_answers
from tunejudge.judge.defences import check
from tunejudge.judge.metrics import load_metrics
from tunejudge.judge.pairwise import PROMPT, judge_pair, pair_connector, reason_chars, template
from tunejudge.judge.runner import check_errors
from tunejudge.llm import backends
from tunejudge.llm.store import AnswerStore
from tunejudge.run.config import with_runtime

log = logging.getLogger("tunejudge.judge")


def main(snakemake):
    cfg = with_runtime("judge", snakemake.params.judge, snakemake.config["judge"])
    rows_in = read_json(snakemake.input.responses)
    if getattr(snakemake.params, "null", False):  # rule judge_pairwise_null: one constant answer vs a model
        a, b = NULL_MODEL, snakemake.wildcards.model
        rows_in = with_null_answers(rows_in)
    else:
        a, b = snakemake.wildcards.a, snakemake.wildcards.b
    for m in (a, b):
        answers_of(rows_in, m, snakemake.input.responses)  # every row has both answers, as strings
    metrics = load_metrics(cfg["metrics"])
    judge = backends.identity(cfg)
    defences = check(cfg.get("defences"))
    connect = pair_connector(cfg, threads=snakemake.threads, server_log=snakemake.log.server)
    t0 = time.monotonic()
    with AnswerStore(cfg["cache"]) as cache, progress_stream(snakemake.log.main) as stream:
        rows, stats = judge_pair(a, b, rows_in, metrics, judge, cache, connect, cfg["in_flight"],
                                 reason_max_chars=reason_chars(cfg, snakemake.params.pairwise), progress_file=stream,
                                 max_requests=cfg["max_requests"], defences=defences)
    log.info("%s vs %s: %s", a, b, stats)
    check_errors(rows, cfg["max_error_fraction"], f"{a} vs {b}")
    write_jsonl(snakemake.output.rows, rows)
    write_json(snakemake.output.prompts, {"prompt": PROMPT, "metrics": {m.name: template(m, defences) for m in metrics},
                                          **({"defences": list(defences)} if defences else {})})
    write_json(snakemake.output.stats, {**stats, "judge": judge.row(), "seconds": round(time.monotonic() - t0, 1)})


run_step(lambda: main(snakemake), snakemake.log.main)  # noqa: F821
