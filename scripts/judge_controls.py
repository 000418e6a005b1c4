"""Rule judge_controls: the judge on control answers (positive: the item's reference; negative: another
item's reference of the same source; adversarial: answers written to talk the judge into a score),
through the same judge and cache as the models."""

import time

from tunejudge.analysis.responses import test_records
from tunejudge.io import progress_stream, read_json, run_step, write_json
from tunejudge.judge.defences import check
from tunejudge.judge.llm import shared_connector
from tunejudge.judge.metrics import load_metrics
from tunejudge.judge.runner import check_errors, run_controls
from tunejudge.judge.scores import write_judge_rows
from tunejudge.llm import backends
from tunejudge.llm.store import AnswerStore
from tunejudge.run.config import panel_judge, with_runtime


def main(snakemake):
    name = getattr(snakemake.params, "name", None)  # a panel judge (rules judge_panel*), else the judge
    cfg = with_runtime("judge", snakemake.params.judge, panel_judge(snakemake.config["judge"], name))
    test = test_records(read_json(snakemake.input.test), snakemake.input.test)
    judge = backends.identity(cfg)
    t0 = time.monotonic()
    with AnswerStore(cfg["cache"]) as cache, progress_stream(snakemake.log.main) as stream, shared_connector(
            cfg, backends.budget(cfg), threads=snakemake.threads, server_log=snakemake.log.server) as connect:
        rows, adversarial, stats = run_controls(
            test, controls=snakemake.params.controls, seed=snakemake.params.seed, metrics=load_metrics(cfg["metrics"]),
            judge=judge, cache=cache, connect=connect, in_flight=cfg["in_flight"], max_requests=cfg["max_requests"],
            defences=check(cfg.get("defences")), progress=stream)
    check_errors(rows + adversarial, cfg["max_error_fraction"], "controls")
    write_judge_rows(snakemake.output[0], rows)
    if "adversarial" in snakemake.output.keys():
        write_judge_rows(snakemake.output.adversarial, adversarial)
    write_json(snakemake.output.stats, {**stats, "judge": judge.row(), "seconds": round(time.monotonic() - t0, 1)})


run_step(lambda: main(snakemake), snakemake.log.main)  # noqa: F821
