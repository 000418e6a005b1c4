"""The rehearsal: the study's whole path, offline, against local stand-ins for the outside world.

``config/paper.yaml`` exactly as shipped, plus ``config/rehearsal.yaml`` (sizes, and where the
outside world is). Every rule runs its real code: ``datasets.load_dataset`` of the Hub ids and
``hf_hub_download`` of the weights against a local Hub (olah on 127.0.0.1, named by
``HF_ENDPOINT``), Raschka's file from a local file server through the download rule, RAGAS, the
audit, the judge (logprobs) and the embeddings through the OpenAI protocol at a scripted server
that answers as the API does (model snapshots, usage, 1,536-d embeddings, some 429s with
Retry-After, 401 for a wrong key). In order:

1. the corpora (the bundled samples, exported to each corpus's public format, or ``--corpora``)
   become the stand-in Hub; the stand-ins start;
2. ``snakemake preflight``: the checks, and the planned requests;
3. ``snakemake download``: the download rules (localrules), the only jobs that reach a network;
4. the Hub and the file server stop, ``HF_ENDPOINT`` points at a closed port, and the rest of the
   DAG runs (the compute rules read the Hub cache, offline);
5. a summary: every rule that ran, requests sent vs planned, requests refused at the proxy
   (anything meant for a host other than 127.0.0.1), time. It fails if any check fails.

Where it can, the run happens in a network namespace with loopback only (``unshare -n``), so
nothing outside 127.0.0.1 is reachable at all; everywhere, HTTP(S)_PROXY points at a proxy that
counts and refuses such requests.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

from tunejudge.errors import TunejudgeError
from tunejudge.run.config import compose

from .corpora import export_samples, read_corpora
from .servers import CountingProxy, FileServer, LocalHub, free_port
from .standin import build_mirror

REPO = Path(__file__).resolve().parents[3]
PAPER_RULES = ["generate_qa_cnn", "audit_qa_cnn", "download_source", "download_corpus", "download_gpt2",
               "download_base", "prepare_base", "check_base", "build_instructions", "curate", "split", "train", "respond", "merge_responses", "judge",
               "judge_controls", "reference_metrics", "analyze", "plots", "report", "provenance",
               "meta_eval_sets", "meta_eval_judge", "meta_eval_report"]
NOT_EXERCISED = [
    "the quality of pretrained GPT-2 weights: the stand-in Hub holds a seeded random init in the Hub's "
    "layout, so gpt2.max_perplexity is off (the check itself is tested on mis-mapped weights)",
    "the answers of a real GPT-4.1: the scripted endpoint answers every schema deterministically",
    "the public Raschka file's sha256: the bundled 41-item sample is served, with its own sha256",
]


def _snakemake_cmd(workdir: Path, configfiles: list[Path], cores: int, *targets: str) -> list[str]:
    exe = Path(sys.executable).with_name("snakemake")
    return [str(exe), *targets, "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
            "--cores", str(cores), "--resources", "gpu=1", "--configfile", *map(str, configfiles)]


def _run(cmd: list[str], env: dict, log: Path, timeout: int, what: str) -> None:
    t = time.monotonic()
    with open(log, "a") as f:
        f.write(f"\n$ {' '.join(cmd)}\n")
        f.flush()
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, timeout=timeout)
    print(f"rehearsal: {what}: rc {proc.returncode} in {time.monotonic() - t:.0f} s", flush=True)
    if proc.returncode != 0:
        tail = log.read_text()[-5000:]
        raise TunejudgeError(f"rehearsal: snakemake failed (rc {proc.returncode}); log {log}:\n{tail}")


def _stats(base_url: str) -> dict:
    root = base_url.rsplit("/v1", 1)[0]
    with urllib.request.urlopen(f"{root}/_stats", timeout=10) as r:
        return json.loads(r.read())


def _rules_ran(workdir: Path) -> list[str]:
    bench = workdir / "results" / "benchmarks"
    ran = {p.name for p in bench.iterdir() if p.is_dir()} if bench.exists() else set()
    return sorted(ran)


def _stand_ins(cfg: dict, workdir: Path, corpora: Path | None, override: Path) -> tuple[dict, set]:
    """The stand-in Hub's repositories (corpora in their public formats, GPT-2 and Llama weights) and the
    files the download rules fetch from 127.0.0.1; returns (the Hub's commits, the file server's port)."""
    corpora = corpora or export_samples(REPO / "data" / "samples", workdir / "corpora")
    datasets = read_corpora(corpora)
    sizes = [cfg["gpt2"]["size"]] if cfg["gpt2"]["weights"] == "pretrained" else []
    hub_bases = [b["hub"]["repo"] for b in (cfg.get("bases") or {}).values() if b.get("hub")]
    commits = build_mirror(datasets, workdir / "hub", gpt2_sizes=sizes, seed=cfg["seed"],
                           transformers_repos=tuple(hub_bases))
    downloads = {}
    for source, spec in cfg["sources"].items():
        if spec.get("download"):
            url = urllib.parse.urlsplit(spec["download"]["url"])
            if url.hostname not in ("127.0.0.1", "localhost"):
                raise TunejudgeError(f"{override}: sources.{source}.download.url is not on 127.0.0.1")
            dest = workdir / "www" / url.path.lstrip("/")
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(Path(corpora) / "instruction-data.json", dest)
            downloads[source] = url
    file_ports = {u.port for u in downloads.values()}
    if len(file_ports) > 1:
        raise TunejudgeError(f"{override}: every download must share one 127.0.0.1 port (got {sorted(file_ports)})")
    return commits, file_ports


def _judged(workdir: Path) -> dict:
    """What the judge's rows say: how many, asked or empty, weighted, the models the endpoint named, and
    the transformers bases with their weights check."""
    from tunejudge.judge.runner import EMPTY_REASON

    rows = [json.loads(line) for p in sorted((workdir / "results/judge").glob("*.jsonl"))
            for line in p.read_text().splitlines()]
    asked = [r for r in rows if r.get("score") is not None and r.get("reason") != EMPTY_REASON]
    return {
        "judge_rows": len(rows), "judge_rows_empty_answer": len(rows) - len(asked), "judge_rows_asked": len(asked),
        "judge_rows_logprob_weighted": sum(1 for r in asked if r.get("weighting") == "logprobs"),
        "judge_rows_out_of_range_mass": sum(1 for r in asked if (r.get("dropped_mass") or 0) > 0),
        "judge_served_by": sorted({r.get("served_by") for r in rows if r.get("served_by")}),
        "transformers_bases": {p.parent.name: {"source": json.loads(p.read_text()),
                                               "check": json.loads((p.parent / "perplexity.json").read_text())}
                               for p in sorted((workdir / "data/bases").glob("*/source.json"))
                               if (p.parent / "perplexity.json").exists()},
    }


def _plan_vs_sent(summary: dict, sent: dict, meta_sent: int) -> dict:
    """Preflight's plan beside what the stand-in endpoint answered, per kind and in total (RAGAS and the
    audit are planned as upper bounds)."""
    before_judging = summary["preflight_before_judging"]["requests"]
    planned = {"judge": before_judging.get("judge", 0) + before_judging.get("judge_controls", 0)
               + before_judging.get("adversarial", 0),
               "ragas": summary["preflight"]["requests"].get("ragas", 0),
               "audit": summary["preflight"]["requests"].get("audit", 0),
               "meta": before_judging.get("meta_summeval", 0) + before_judging.get("meta_mt_bench", 0)}
    sent["kinds"]["meta"] = meta_sent
    bounds = set(summary["preflight"].get("upper_bounds") or [])
    out = {kind: {"planned": planned[kind], "sent": sent["kinds"].get(kind, 0), "upper_bound": kind in bounds}
           for kind in ("judge", "ragas", "audit", "meta")}
    exact = [v for v in out.values() if not v["upper_bound"]]
    total_planned, answered = sum(v["planned"] for v in exact), sum(v["sent"] for v in exact)
    out["total"] = {"planned": total_planned, "sent": answered, "upper_bound": False,
                    "off_by": round(abs(answered - total_planned) / max(answered, 1), 4)}
    return out


def rehearse(workdir: Path, *, corpora: Path | None, override: Path, cores: int, olah_cli: str,
             timeout: int = 3000) -> dict:
    t0 = time.monotonic()
    workdir = workdir.resolve()
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    configfiles = [REPO / "config/config.yaml", REPO / "config/paper.yaml", override.resolve()]
    cfg = compose(configfiles)
    base_url = cfg["judge"]["openai"]["base_url"]
    ep = urllib.parse.urlsplit(base_url)
    if ep.hostname not in ("127.0.0.1", "localhost"):
        raise TunejudgeError(f"{override}: judge.openai.base_url {base_url} is not on 127.0.0.1")

    # 1. the stand-ins
    commits, file_ports = _stand_ins(cfg, workdir, corpora, override)

    from ..testing.openai_server import ScriptedOpenAI, linking_extractor, word_embedding

    key_env = cfg["judge"]["openai"].get("api_key_env") or "OPENAI_API_KEY"
    key = f"sk-rehearsal-{secrets.token_hex(8)}"
    log = workdir / "rehearsal.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "OPENAI_"))}
    env.update({key_env: key, "HF_HOME": str(workdir / "hf-home"), "PYTHONHASHSEED": "0",
                "TIKTOKEN_CACHE_DIR": str(workdir / "tiktoken")})
    proxy = CountingProxy()
    env.update(proxy.env())
    # RAGAS's extractors answered from the articles (names as entities, summaries that list them, word-bag
    # embeddings): articles that name the same people link, and RAGAS's multi-hop synthesizers run
    api = ScriptedOpenAI(linking_extractor, api_like=True, api_key=key, rate_limit_every=50, retry_after_s=0.2,
                         port=ep.port, embed=word_embedding)
    summary: dict = {"workdir": str(workdir), "configfiles": [str(p) for p in configfiles],
                     "stand_in_hub": commits, "not_exercised": NOT_EXERCISED}
    with proxy, api:
        with LocalHub(olah_cli, workdir / "hub", workdir / "olah") as local_hub, \
                FileServer(workdir / "www", file_ports.pop()) if file_ports else _Nothing() as files:
            env["HF_ENDPOINT"] = local_hub.endpoint
            # 2. downloads, 3. preflight: the only steps that see the Hub and the file server
            _run(_snakemake_cmd(workdir, configfiles, cores, "download"), env, log, timeout,
                 "snakemake download (Hub and file server up)")
            _run(_snakemake_cmd(workdir, configfiles, cores, "preflight"), env, log, timeout, "snakemake preflight")
            summary["preflight"] = json.loads((workdir / "results" / "preflight.json").read_text())["plan"]
            summary["file_server_requests"] = dict(getattr(files, "requests", {}))
        # 4. the outside world is gone: compute rules read the Hub cache, offline. Preflight again once
        # the models have answered: the judge's count is then exact (empty answers cost no request).
        env["HF_ENDPOINT"] = f"http://127.0.0.1:{free_port()}"
        _run(_snakemake_cmd(workdir, configfiles, cores, "results/all_model_responses.json"), env, log, timeout,
             "snakemake up to the answers (Hub and file server down)")
        _run(_snakemake_cmd(workdir, configfiles, cores, "preflight"), env, log, timeout,
             "snakemake preflight, before judging")
        summary["preflight_before_judging"] = json.loads((workdir / "results" / "preflight.json").read_text())["plan"]
        _run(_snakemake_cmd(workdir, configfiles, cores), env, log, timeout, "snakemake, the rest of the DAG")
        sent = _stats(base_url)
        # 5. the judge against human experts (outside `all`): its requests counted on their own
        _run(_snakemake_cmd(workdir, configfiles, cores, "meta_eval"), env, log, timeout, "snakemake meta_eval")
        after = _stats(base_url)["kinds"]
        meta_sent = sum(after.get(k, 0) - sent["kinds"].get(k, 0) for k in ("judge", "pairwise"))
    summary["requests_answered"] = sent["kinds"]
    summary["requests_refused_429"] = sent["replies"].get("http_429", 0)
    summary["usage"] = sent["usage"]
    summary["requests_outside_127.0.0.1"] = dict(proxy.hosts)
    summary["rules_ran"] = _rules_ran(workdir)
    summary["rules_missing"] = [r for r in PAPER_RULES if r not in summary["rules_ran"]]
    summary.update(_judged(workdir))
    summary["plan_vs_sent"] = _plan_vs_sent(summary, sent, meta_sent)
    summary["meta_eval"] = (workdir / "results/meta_eval/report.md").read_text()
    summary["seconds"] = round(time.monotonic() - t0, 1)
    summary["failures"] = _failures(summary)
    (workdir / "rehearsal_summary.json").write_text(json.dumps(summary, indent=2))
    return summary


class _Nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _failures(s: dict) -> list[str]:
    out = []
    if s["rules_missing"]:
        out.append(f"rules that did not run: {s['rules_missing']}")
    if s["requests_outside_127.0.0.1"]:
        out.append(f"requests meant for other hosts: {s['requests_outside_127.0.0.1']}")
    if not s["judge_rows_asked"] or s["judge_rows_logprob_weighted"] != s["judge_rows_asked"]:
        out.append(f"judge rows with logprob-weighted scores: {s['judge_rows_logprob_weighted']} of the "
                   f"{s['judge_rows_asked']} the endpoint scored")
    if s["plan_vs_sent"]["total"]["off_by"] > 0.05:
        out.append(f"preflight's exact counts are {s['plan_vs_sent']['total']['off_by']:.1%} off the requests sent")
    over = {k: v for k, v in s["plan_vs_sent"].items() if v["upper_bound"] and v["sent"] > v["planned"]}
    if over:
        out.append(f"more requests sent than preflight's upper bound: {over}")
    return out


def render(s: dict) -> str:
    lines = [f"rehearsal of config/paper.yaml: {'OK' if not s['failures'] else 'FAILED'} in {s['seconds']:.0f} s",
             f"  rules that ran ({len(s['rules_ran'])}): {', '.join(s['rules_ran'])}",
             "  requests (planned by preflight / answered by the scripted OpenAI endpoint; the judge's plan from "
             "the preflight run once the models had answered; <= an upper bound, total: the exact kinds):"]
    for kind, v in s["plan_vs_sent"].items():
        lines.append(f"    {kind:<6} {'<=' if v['upper_bound'] else '  '}{v['planned']:>5} / {v['sent']:<5}")
    lines += [f"  429s with Retry-After answered by retrying: {s['requests_refused_429']}",
              f"  judge rows: {s['judge_rows']}: {s['judge_rows_asked']} scored by the endpoint, "
              f"{s['judge_rows_logprob_weighted']} of them logprob-weighted (served by {', '.join(s['judge_served_by']) or '-'}); "
              f"{s['judge_rows_empty_answer']} empty answers scored 0 without a request",
              f"  requests meant for hosts other than 127.0.0.1: {sum(s['requests_outside_127.0.0.1'].values())}",
              f"  isolation: {s.get('isolation', 'proxy')}",
              "  not exercised:"] + [f"    - {n}" for n in s["not_exercised"]]
    lines += [f"  FAILED: {f}" for f in s["failures"]]
    lines.append(f"  details: {s['workdir']}/rehearsal_summary.json, report: {s['workdir']}/results/report.md")
    return "\n".join(lines)


def _netns_available() -> bool:
    if not shutil.which("unshare") or not shutil.which("ip"):
        return False
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True)
    if probe.returncode == 0:
        return True
    return subprocess.run(["unshare", "-rn", "true"], capture_output=True).returncode == 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tunejudge_dev.rehearsal", description=__doc__.split("\n\n")[0])
    ap.add_argument("--workdir", type=Path, default=REPO / ".rehearsal", help="where it runs (wiped first)")
    ap.add_argument("--corpora", type=Path, help="a folder of corpus files in their public formats "
                    "(default: the bundled samples, exported)")
    ap.add_argument("--override", type=Path, default=REPO / "config/rehearsal.yaml")
    ap.add_argument("--cores", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--olah", default=os.environ.get("TUNEJUDGE_OLAH", str(REPO / ".venv-hub/bin/olah-cli")),
                    help="olah's olah-cli (make rehearse installs it into .venv-hub)")
    ap.add_argument("--isolate", choices=["auto", "netns", "proxy"], default="auto",
                    help="netns: run in a network namespace with loopback only (unshare -n); proxy: only "
                         "count and refuse requests through HTTP(S)_PROXY; auto: netns where possible")
    ap.add_argument("--in-netns", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if not args.in_netns and args.isolate != "proxy" and (args.isolate == "netns" or _netns_available()):
        flag = "-n" if subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0 else "-rn"
        inner = [sys.executable, "-m", "tunejudge_dev.rehearsal", *(argv if argv is not None else sys.argv[1:]),
                 "--in-netns"]
        return subprocess.run(["unshare", flag, "sh", "-c", 'ip link set lo up && exec "$@"', "sh", *inner]).returncode
    try:
        summary = rehearse(args.workdir, corpora=args.corpora, override=args.override, cores=args.cores,
                           olah_cli=args.olah)
    except TunejudgeError as e:
        print(f"rehearsal failed: {e}", file=sys.stderr)
        return 1
    summary["isolation"] = "network namespace, loopback only (+ counting proxy)" if args.in_netns else "counting proxy"
    (Path(summary["workdir"]) / "rehearsal_summary.json").write_text(json.dumps(summary, indent=2))
    print(render(summary))
    return 1 if summary["failures"] else 0
