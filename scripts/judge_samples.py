"""Rule judge_samples: the judge on a preference set's samples -- GEval on every sample and metric
(pointwise), or the first two samples of each prompt side by side in both orders (pairwise)."""

import time

from tunejudge.io import progress_stream, read_json, run_step, write_json, write_jsonl
from tunejudge.judge.defences import check
from tunejudge.judge.llm import shared_connector
from tunejudge.judge.metrics import load_metrics
from tunejudge.judge.pairwise import judge_pair, pair_connector, reason_chars
from tunejudge.judge.runner import check_errors, judge_model
from tunejudge.llm import backends
from tunejudge.llm.store import AnswerStore
from tunejudge.run.config import with_runtime


def main(snakemake):
    cfg = with_runtime("judge", snakemake.params.judge, snakemake.config["judge"])
    items = read_json(snakemake.input.samples)["items"]
    metrics, judge, defences = load_metrics(cfg["metrics"]), backends.identity(cfg), check(cfg.get("defences"))
    k = min(len(it["samples"]) for it in items) if items else 0
    rows, stats, t0 = [], {}, time.monotonic()
    with AnswerStore(cfg["cache"]) as cache, progress_stream(snakemake.log.main) as stream:
        if snakemake.params.mode == "pairwise":
            answers = [{**it["record"], "model sample0": it["samples"][0], "model sample1": it["samples"][1]}
                       for it in items]
            rows, stats = judge_pair("sample0", "sample1", answers, metrics, judge, cache,
                                     pair_connector(cfg, threads=snakemake.threads, server_log=snakemake.log.server),
                                     cfg["in_flight"], reason_max_chars=reason_chars(cfg, {}), progress_file=stream,
                                     max_requests=cfg["max_requests"], defences=defences)
        else:
            with shared_connector(cfg, backends.budget(cfg), threads=snakemake.threads,
                                  server_log=snakemake.log.server) as connect:
                for j in range(k):
                    got, st = judge_model([{**it["record"], "response": it["samples"][j]} for it in items], f"sample{j}",
                                          metrics, judge, cache, connect, cfg["in_flight"], stream,
                                          max_requests=cfg["max_requests"], defences=defences)
                    rows += got
                    stats = {key: stats.get(key, 0) + v for key, v in st.items() if isinstance(v, int)}
    check_errors(rows, cfg["max_error_fraction"], "samples")
    write_jsonl(snakemake.output[0], rows)
    write_json(snakemake.output.stats, {**stats, "judge": judge.row(), "seconds": round(time.monotonic() - t0, 1)})


run_step(lambda: main(snakemake), snakemake.log.main)  # noqa: F821
