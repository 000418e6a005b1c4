"""Rule meta_eval_sets: the meta-evaluation's items from SummEval and MT-Bench's human judgments (sampled
as meta_eval says), with the experts' ratings and votes."""

import logging

from tunejudge.data.load import load_corpus
from tunejudge.io import run_step, write_json
from tunejudge.judge.meta_eval import mt_bench_pairs, summeval_items

log = logging.getLogger("tunejudge.meta_eval")


def rows_of(spec: dict, key: str) -> list[dict]:
    loader = spec["loader"]
    return [dict(r) for r in load_corpus(loader, key=f"meta_eval.{key}.loader")], str(loader.get("data_files") or loader["path"])


def main(snakemake):
    p, out = snakemake.params, snakemake.output
    rows, where = rows_of(p.summeval, "summeval")
    items = summeval_items(rows, p.summeval.get("articles"), p.summeval.get("summaries_per_article"), p.seed, where)
    write_json(out.summeval, items)
    rows, where = rows_of(p.mt_bench, "mt_bench")
    pairs, votes = mt_bench_pairs(rows, p.mt_bench.get("pairs"), p.seed, where)
    write_json(out.mt_bench, {"pairs": pairs, "votes": votes})
    log.info("SummEval: %d summaries of %d articles; MT-Bench: %d first-turn pairs, %d expert votes", len(items),
             len({it["article"] for it in items}), len(pairs), len(votes))


run_step(lambda: main(snakemake), snakemake.log[0])  # noqa: F821
