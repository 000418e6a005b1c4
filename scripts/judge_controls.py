"""Rule judge_controls: the judge on control answers (positive: the item's reference; negative:
another item's reference of the same source), through the same judge and cache as the models."""

import logging
import time
from collections import Counter

from tunejudge.analysis.responses import test_records
from tunejudge.io import progress_stream, read_json, run_step, write_json
from tunejudge.judge.controls import control_items
from tunejudge.judge.llm import connector
from tunejudge.judge.metrics import load_metrics
from tunejudge.judge.runner import check_errors, judge_model
from tunejudge.judge.scores import write_judge_rows
from tunejudge.llm import backends
from tunejudge.llm.store import AnswerStore
from tunejudge.run.config import panel_judge, with_runtime

log = logging.getLogger("tunejudge.judge")


def main(snakemake):
    name = getattr(snakemake.params, "name", None)  # a panel judge (rules judge_panel*), else the judge
    cfg = with_runtime("judge", snakemake.params.judge, panel_judge(snakemake.config["judge"], name))
    ctl = snakemake.params.controls
    test = test_records(read_json(snakemake.input.test), snakemake.input.test)
    arms = control_items(test, ctl.get("items_per_source"), snakemake.params.seed)
    metrics = load_metrics(cfg["metrics"])
    judge = backends.identity(cfg)
    connect = connector(cfg, backends.budget(cfg), threads=snakemake.threads, server_log=snakemake.log.server)
    rows, total = [], Counter()
    t0 = time.monotonic()
    with AnswerStore(cfg["cache"]) as cache, progress_stream(snakemake.log.main) as stream:
        for arm, items in arms.items():
            got, stats = judge_model(items, arm, metrics, judge, cache, connect, cfg["in_flight"], stream,
                                     max_requests=cfg["max_requests"])
            log.info("%s: %d items, requests: %s", arm, len(items), {k: v for k, v in stats.items() if k != "items"})
            rows += got
            total.update({k: v for k, v in stats.items() if isinstance(v, int) and k != "in_flight_limit"})
    check_errors(rows, cfg["max_error_fraction"], "controls")
    write_judge_rows(snakemake.output[0], rows)
    write_json(snakemake.output.stats, {**total, "judge": judge.row(), "seconds": round(time.monotonic() - t0, 1)})


run_step(lambda: main(snakemake), snakemake.log.main)  # noqa: F821
