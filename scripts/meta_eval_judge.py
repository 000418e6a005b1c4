"""Rule meta_eval_judge: one judge on the meta-evaluation's items -- every SummEval summary on the G-Eval
criteria (GEval), every MT-Bench first-turn pair side by side in both orders."""

import logging
import time

from tunejudge.io import progress_stream, read_json, run_step, write_json, write_jsonl
from tunejudge.judge.defences import check
from tunejudge.judge.llm import connector
from tunejudge.judge.meta_eval import MT_BENCH_METRIC, summeval_metrics
from tunejudge.judge.metrics import load_metrics
from tunejudge.judge.pairwise import judge_pair, pair_connector, reason_chars
from tunejudge.judge.runner import check_errors, judge_model
from tunejudge.judge.scores import write_judge_rows
from tunejudge.llm import backends
from tunejudge.llm.store import AnswerStore
from tunejudge.run.config import panel_judge, with_runtime

log = logging.getLogger("tunejudge.meta_eval")


def main(snakemake):
    p, out = snakemake.params, snakemake.output
    cfg = with_runtime("judge", p.judge, panel_judge(snakemake.config["judge"], p.name))
    judge = backends.identity(cfg)
    defences = check(cfg.get("defences"))
    items = read_json(snakemake.input.summeval)
    mt = read_json(snakemake.input.mt_bench)
    t0 = time.monotonic()
    with AnswerStore(cfg["cache"]) as cache, progress_stream(snakemake.log.main) as stream:
        rows, stats = judge_model(items, "summeval", load_metrics(summeval_metrics(p.summeval, cfg["metrics"])), judge,
                                  cache, connector(cfg, backends.budget(cfg), threads=snakemake.threads,
                                                   server_log=snakemake.log.server),
                                  cfg["in_flight"], stream, max_requests=cfg["max_requests"], defences=defences)
        check_errors(rows, cfg["max_error_fraction"], "summeval")
        pairs, pstats = judge_pair("A", "B", mt["pairs"], load_metrics([MT_BENCH_METRIC]), judge, cache,
                                   pair_connector(cfg, threads=snakemake.threads, server_log=snakemake.log.server),
                                   cfg["in_flight"], reason_max_chars=reason_chars(cfg, {}), progress_file=stream,
                                   max_requests=cfg["max_requests"], defences=defences)
        check_errors(pairs, cfg["max_error_fraction"], "mt_bench")
    write_judge_rows(out.summeval, rows)
    write_jsonl(out.mt_bench, pairs)
    write_json(out.stats, {"summeval": stats, "mt_bench": pstats, "judge": judge.row(),
                           "seconds": round(time.monotonic() - t0, 1)})
    log.info("%s: SummEval %s; MT-Bench %s", p.name, stats, pstats)


run_step(lambda: main(snakemake), snakemake.log.main)  # noqa: F821
