"""Rule preflight (localrule, no output: runs whenever asked): checks and the planned requests and cost."""

import logging
from pathlib import Path

from tunejudge import hub, preflight
from tunejudge.errors import DataError
from tunejudge.io import read_json, run_step, write_json

hub.go_online()  # it checks that the Hub answers
log = logging.getLogger("tunejudge.preflight")


def _articles(cfg):
    """The articles of each generating source, where they can be read without the network."""
    from tunejudge.datasets import load_corpus

    out = {}
    for source, spec in cfg["sources"].items():
        gen = spec.get("generate")
        if not gen:
            continue
        loader = gen["articles"]
        if hub.is_hub(loader) and not Path(f"data/hub/{hub.dataset_key(loader)}.json").exists():
            continue
        # from the cache the download filled (the Hub may be gone by now). The Hub checks ran first,
        # online: huggingface_hub reads the offline switch once, when first imported.
        hub.go_offline()
        try:
            rows = load_corpus(loader, limit=gen.get("limit"), select="first",
                               key=f"sources.{source}.generate.articles")
            out[source] = [r["article"] for r in rows]
        finally:
            hub.go_online()
    return out


def _judge_todo(cfg, test, judged):
    """The exact judge count once every judged run has answered (results/responses/<run>.json), else None."""
    files = [Path(f"results/responses/{run}.json") for run in judged]
    if test is None or not all(f.exists() for f in files):
        return None
    from tunejudge.llm.store import AnswerStore
    from tunejudge.responses import merge_responses, test_records

    try:
        rows, _ = merge_responses(test_records(test, "data/splits/test.json"), [(f, read_json(f)) for f in files])
    except DataError as e:  # an answer file of an older test set: its run answers again before it is judged
        log.info("judge count estimated: %s", e)
        return None
    with AnswerStore(cfg["judge"]["cache"]) as cache:
        return preflight.judge_requests(rows, list(judged), cfg["judge"]["metrics"], cfg["judge"],
                                        lambda keys: cache.get_many(keys))


def _controls_todo(cfg, test):
    """The exact count of control verdicts once the test split exists, else None."""
    if test is None:
        return None
    from tunejudge.llm.store import AnswerStore
    from tunejudge.responses import test_records

    with AnswerStore(cfg["judge"]["cache"]) as cache:
        return preflight.controls_requests(test_records(test, "data/splits/test.json"), cfg["judge"], cfg["seed"],
                                           lambda keys: cache.get_many(keys))


def _meta(cfg, judges):
    """The meta-evaluation's requests: exact where its sets are readable (local files, downloaded Hub sets)."""
    from tunejudge.datasets import load_corpus
    from tunejudge.llm.store import AnswerStore
    from tunejudge.meta_eval import mt_bench_pairs, summeval_items

    meta = cfg.get("meta_eval") or {}
    if not meta:
        return {}
    loaders = [meta["summeval"]["loader"], meta["mt_bench"]["loader"]]
    if any(hub.is_hub(x) and not Path(f"data/hub/{hub.dataset_key(x)}.json").exists() for x in loaders):
        return preflight.meta_eval_requests(cfg, None, judges)
    hub.go_offline()
    try:
        se = [dict(r) for r in load_corpus(loaders[0], key="meta_eval.summeval.loader")]
        mt = [dict(r) for r in load_corpus(loaders[1], key="meta_eval.mt_bench.loader")]
    finally:
        hub.go_online()
    items = summeval_items(se, meta["summeval"].get("articles"), meta["summeval"].get("summaries_per_article"),
                           cfg["seed"], "meta_eval.summeval")
    pairs, _ = mt_bench_pairs(mt, meta["mt_bench"].get("pairs"), cfg["seed"], "meta_eval.mt_bench")
    with AnswerStore(cfg["judge"]["cache"]) as cache:
        return preflight.meta_eval_requests(cfg, (items, pairs), judges,
                                            {j: (lambda keys: cache.get_many(keys)) for j in judges})


def _counter(cfg):
    import tiktoken

    from tunejudge.qagen.offline import seed_tiktoken_cache

    seed_tiktoken_cache(Path(cfg["judge"]["cache"]).parent / "tiktoken")
    enc = tiktoken.get_encoding("cl100k_base")  # what RAGAS counts documents with
    return lambda text: len(enc.encode(text, disallowed_special=()))


def main(snakemake):
    cfg = snakemake.config
    hub_loaders = {key: loader for key, (loader, _) in snakemake.params.hub_datasets.items()}
    done = {k for k in hub_loaders if Path(f"data/hub/{k}.json").exists()}
    repos = snakemake.params.model_repos
    done |= {key for key, (_, _, marker) in repos.items() if Path(marker).exists()}
    checks = [preflight.check_key(cfg), preflight.check_endpoint(cfg)]
    checks += preflight.check_hub(hub_loaders, {k: (repo, rev) for k, (repo, rev, _) in repos.items()}, done)
    for url, dest in snakemake.params.downloads:
        checks.append(preflight.check_url(url, Path(dest)))
    test = read_json("data/splits/test.json") if Path("data/splits/test.json").exists() else None
    done = {f"generate:{s}" for s in cfg["sources"] if Path(f"data/generated/{s}/ragas_testset.jsonl").exists()}
    done |= {f"audit:{s}" for s in cfg["sources"] if Path(f"data/audit/{s}.json").exists()}
    judged = snakemake.params.judged
    plan = preflight.plan_run(cfg, test_items=test, judge_todo=_judge_todo(cfg, test, judged), articles=_articles(cfg),
                              done=done, token_count=_counter(cfg), controls_todo=_controls_todo(cfg, test),
                              judged_runs=len(judged), jobs=preflight.run_jobs(snakemake.params.runs),
                              meta=_meta(cfg, snakemake.params.meta_judges))
    report = preflight.render(checks, plan, cfg["judge"].get("prices"))
    log.info("\n%s", report)
    write_json("results/preflight.json", {"checks": [c.__dict__ for c in checks],
                                          "plan": plan.as_dict(cfg["judge"].get("prices"))})
    preflight.ensure_ok(checks)


run_step(lambda: main(snakemake), snakemake.log[0])  # noqa: F821
