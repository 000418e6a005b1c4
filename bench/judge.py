"""Judge throughput: the same items judged one request at a time, then with 16 requests in flight.

A scripted OpenAI-compatible server (its own process, 127.0.0.1) answers every request after a
fixed latency (0.5 s: a hosted GPT-4.1 GEval call takes longer), standing in for a hosted judge; the judge talks to it through the real openai SDK and
deepeval's GEval, exactly as in a run. Both runs start from an empty verdict cache, after one
untimed warm-up run. Then the concurrent run is repeated on its warm cache: the requests it sends
are `cached_requests` (target 0).

Then the same concurrent run against a server that refuses (429, Retry-After 0.1 s) whatever is
beyond 4 requests in flight: the client halves its limit on 429s and regrows it (AIMD), so
`throttled_ratio` (sequential_s / throttled_s) should approach the 4 the server allows, with every
verdict answered once (`throttled_paid_twice`, target 0).

The concurrent run goes over the configured HTTP transport (``judge.http_client``: aiohttp); it is
run once more over the SDK's default, httpx, for comparison (``httpx_concurrent_s``, ``httpx_ratio``).

Prints one JSON object on its last line: sequential_s, concurrent_s, ratio (target >= 15 at 16 in
flight and 0.5 s, >= 14 at 0.25 s), http_client, httpx_concurrent_s, httpx_ratio, cached_requests,
throttled_s, throttled_ratio, throttled_429s, throttled_mean_in_flight.

    python bench/judge.py                       # 32 sample items x 3 metrics, 0.5 s per request
    python bench/judge.py --latency 1 --items 64 --in-flight 32
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import yaml  # noqa: E402
from common import ROOT, emit, sample_records  # noqa: E402

from tunejudge.judge.llm import connector  # noqa: E402
from tunejudge.judge.metrics import load_metrics  # noqa: E402
from tunejudge.judge.runner import judge_model  # noqa: E402
from tunejudge.llm import backends  # noqa: E402
from tunejudge.llm.client import RequestBudget  # noqa: E402
from tunejudge.llm.store import AnswerStore  # noqa: E402

KEY_ENV = "TUNEJUDGE_BENCH_KEY"


def start_server(latency: float, *extra: str):
    proc = subprocess.Popen([sys.executable, "-m", "tunejudge_dev.testing.openai_server", "--latency", str(latency),
                             *extra], stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline().split()
    if not line or line[0] != "READY":
        proc.kill()
        raise SystemExit("the scripted server did not start")
    return proc, line[1]


def server_stats(base_url: str) -> dict:
    with urllib.request.urlopen(base_url.rsplit("/v1", 1)[0] + "/_stats", timeout=5) as r:
        return json.load(r)


def server_requests(base_url: str) -> int:
    return server_stats(base_url)["chat_requests"]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=32)
    ap.add_argument("--latency", type=float, default=0.5, help="seconds the server takes per request")
    ap.add_argument("--in-flight", type=int, default=16)
    args = ap.parse_args(argv)

    cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())["judge"]
    metrics = load_metrics(cfg["metrics"])
    records = [r for r in sample_records() if r["output"].strip()][: args.items]
    items = [{**r, "response": r["output"][::-1] if i % 2 else r["output"]} for i, r in enumerate(records)]
    os.environ.setdefault(KEY_ENV, "sk-bench-not-a-secret")
    proc, base_url = start_server(args.latency)
    try:
        def judge_once(in_flight: int, cache_dir: str | None = None, http: str | None = None):
            run_cfg = {**cfg, "backend": "openai", "in_flight": in_flight, "timeout_s": 30,
                       "http_client": http or cfg["http_client"],
                       "openai": {**cfg["openai"], "model": "scripted", "base_url": base_url,
                                  "api_key_env": KEY_ENV, "logprobs": True}}
            cache_dir = cache_dir or tempfile.mkdtemp()
            before = server_requests(base_url)
            with AnswerStore(Path(cache_dir) / "answers") as cache, open(os.devnull, "w") as quiet:
                t = time.perf_counter()
                rows, stats = judge_model(items, "bench", metrics, backends.identity(run_cfg), cache,
                                          connector(run_cfg, RequestBudget(None)), in_flight, quiet)
                dt = time.perf_counter() - t
            assert len(rows) == len(items) * len(metrics) and stats["errors"] == 0, stats
            return dt, server_requests(base_url) - before, cache_dir

        judge_once(args.in_flight)  # warm-up: imports, deepeval templates, connection set-up
        sequential_s, seq_requests, _ = judge_once(1)
        concurrent_s, conc_requests, warm = judge_once(args.in_flight)
        _, cached_requests, _ = judge_once(args.in_flight, warm)
        httpx_s, _, _ = judge_once(args.in_flight, http="httpx")
    finally:
        proc.terminate()
        proc.wait()
    proc, base_url = start_server(args.latency, "--max-in-flight", "4", "--retry-after", "0.1")
    try:
        throttled_s, _, _ = judge_once(args.in_flight)
        st = server_stats(base_url)
    finally:
        proc.terminate()
        proc.wait()
    seen = st["in_flight_seen"][len(st["in_flight_seen"]) // 2:]
    emit({
        "items": len(items), "metrics": len(metrics), "requests": seq_requests, "latency_s": args.latency,
        "in_flight": args.in_flight, "sequential_s": round(sequential_s, 3), "concurrent_s": round(concurrent_s, 3),
        "ratio": round(sequential_s / concurrent_s, 2), "ideal_ratio": args.in_flight,
        "http_client": cfg["http_client"], "httpx_concurrent_s": round(httpx_s, 3),
        "httpx_ratio": round(sequential_s / httpx_s, 2),
        "concurrent_requests": conc_requests, "cached_requests": cached_requests,
        "throttled_s": round(throttled_s, 3), "throttled_ratio": round(sequential_s / throttled_s, 2),
        "throttled_ideal_ratio": 4, "throttled_429s": st["replies"].get("http_429", 0),
        "throttled_paid_twice": st["replies"].get("ok", 0) - len(items) * len(metrics),
        "throttled_mean_in_flight": round(sum(seen) / max(len(seen), 1), 2),
    })


if __name__ == "__main__":
    main()
