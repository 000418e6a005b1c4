"""Rule judge: one model's answers, every metric, through the configured judge."""

import logging
import time
from collections import defaultdict

from tunejudge.analysis.responses import run_answers
from tunejudge.data.records import validate_records
from tunejudge.io import progress_stream, read_json, run_step, write_json
from tunejudge.judge.defences import check
from tunejudge.judge.llm import connector
from tunejudge.judge.metrics import load_metrics
from tunejudge.judge.runner import check_errors, judge_model, prompt_templates
from tunejudge.judge.scores import write_judge_rows
from tunejudge.llm import backends
from tunejudge.llm.store import AnswerStore
from tunejudge.run.config import panel_judge, with_runtime

log = logging.getLogger("tunejudge.judge")


def main(snakemake):
    name = getattr(snakemake.params, "name", None)  # a panel judge (rules judge_panel*), else the judge
    cfg = with_runtime("judge", snakemake.params.judge, panel_judge(snakemake.config["judge"], name))
    model = snakemake.wildcards.model
    items = run_answers(validate_records(read_json(snakemake.input.test), snakemake.input.test),
                        read_json(snakemake.input.responses), snakemake.input.responses)
    metrics = load_metrics(cfg["metrics"])
    judge = backends.identity(cfg)
    defences = check(cfg.get("defences"))
    if judge.backend == "local":
        log.info("judge: %s served locally -- a smoke-test judge, not comparable to GPT-4.1", judge.model)
    connect = connector(cfg, backends.budget(cfg), threads=snakemake.threads,
                        server_log=snakemake.log.server)
    t0 = time.monotonic()
    with AnswerStore(cfg["cache"]) as cache, progress_stream(snakemake.log.main) as stream:
        rows, stats = judge_model(items, model, metrics, judge, cache, connect, cfg["in_flight"], stream,
                                  max_requests=cfg["max_requests"], defences=defences)
    log.info("requests: %s", {k: v for k, v in stats.items() if k not in ("items",)})
    check_errors(rows, cfg["max_error_fraction"], model)
    write_judge_rows(snakemake.output[0], rows)
    write_json(snakemake.output.prompts, prompt_templates(metrics, judge, defences))
    write_json(snakemake.output.stats, {**stats, "judge": judge.row(), "seconds": round(time.monotonic() - t0, 1)})
    means = defaultdict(list)
    for r in rows:
        if r["score_5"] is not None:
            means[r["metric"]].append(r["score_5"])
    for metric, scores in means.items():
        log.info("%s %s: mean %.3f / 5 over %d answers", model, metric, sum(scores) / len(scores), len(scores))


run_step(lambda: main(snakemake), snakemake.log.main)  # noqa: F821
