"""The judge against human experts (tunejudge.judge.meta_eval, `snakemake meta_eval`): SummEval and MT-Bench human
judgments in their public formats (sets this project makes, data/samples), judged by scripted judges --
one that scores by the human label plus noise passes, a random one fails -- and the report puts both beside
the published figures."""

import csv
import json
import os

import pandas as pd
import pytest
import yaml
from conftest import CORES, REPO, make_workdir, snakemake
from tunejudge_dev.testing import meta as T

from tunejudge.errors import DataError
from tunejudge.judge import meta_eval as M

SAMPLES = REPO / "data" / "samples"


def _jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_the_shipped_sets_are_what_the_project_makes(tmp_path):
    for name in ("cnn_dailymail.jsonl", "instruction-data.json"):
        (tmp_path / name).write_bytes((SAMPLES / name).read_bytes())
    T.write_samples(tmp_path)
    for name in ("summeval.jsonl", "mt_bench_human.jsonl"):
        assert (tmp_path / name).read_text() == (SAMPLES / name).read_text(), "rerun python -m tunejudge_dev.testing.meta"


def test_items_votes_and_clear_errors():
    rows = _jsonl(SAMPLES / "summeval.jsonl")
    items = M.summeval_items(rows, 3, 4, 0, "summeval.jsonl")
    assert len(items) == 12 and len({it["article"] for it in items}) == 3
    assert items[0]["input"] == next(r["text"] for r in rows if str(r["id"]) == items[0]["article"])
    assert M.summeval_items(rows, 3, 4, 0, "x") == items  # seeded
    bad = [dict(rows[0], coherence=rows[0]["coherence"][:2])]
    with pytest.raises(DataError, match="summeval.jsonl: record 0: field 'coherence': has 2 ratings for 6"):
        M.summeval_items(bad, None, None, 0, "summeval.jsonl")
    pairs, votes = M.mt_bench_pairs(_jsonl(SAMPLES / "mt_bench_human.jsonl"), None, 0, "mt.jsonl")
    assert len(pairs) == 8 * 3 and all(p["model_a"] < p["model_b"] for p in pairs)
    assert len(votes) == 8 * 3 * 2  # first turn only, two experts each
    # a vote given with the models the other way round is flipped onto the pair's order
    flip = next(v for v in votes if v["id"].endswith("helpful/offtopic"))
    assert flip["human"] in ("a", "tie", "b")
    with pytest.raises(DataError, match="field 'winner'"):
        M.mt_bench_pairs([dict(_jsonl(SAMPLES / "mt_bench_human.jsonl")[0], winner="A")], None, 0, "mt.jsonl")


def test_statistics_on_known_answers():
    frame = pd.DataFrame({"article": ["a"] * 4 + ["b"] * 4, "j:coherence": [1, 2, 3, 4, 4, 3, 2, 1],
                          **{f"human:{d}": [1, 2, 3, 4, 1, 2, 3, 4] for d in M.DIMENSIONS}})
    corr = M.summary_level(frame, "j", 200, 0, 0.95).set_index(["statistic", "dimension"])
    assert corr.loc[("spearman", "coherence"), "value"] == 0.0  # +1 on one article, -1 on the other
    votes = pd.DataFrame({"question": [1, 1, 2, 2], "human": ["a", "tie", "b", "a"], "j": ["a", "a", "b", "tie"]})
    agree = M.agreement(votes, "j", 200, 0, 0.95).set_index("setup")
    assert agree.loc["with_ties", "agreement"] == 0.5 and agree.loc["without_ties", "agreement"] == 1.0
    assert agree.loc["without_ties", "votes"] == 2


@pytest.mark.pipeline
def test_meta_eval_through_snakemake_passes_an_oracle_and_fails_a_random_judge(tmp_path):
    from tunejudge_dev.testing.openai_server import ScriptedOpenAI

    summeval, mt = _jsonl(SAMPLES / "summeval.jsonl"), _jsonl(SAMPLES / "mt_bench_human.jsonl")
    os.environ["TUNEJUDGE_META_KEY"] = "sk-meta"
    try:
        with ScriptedOpenAI(T.oracle_judge(summeval, mt)) as oracle, ScriptedOpenAI(T.random_judge()) as coin:
            def endpoint(srv, model):
                return {"backend": "openai", "openai": {"model": model, "base_url": srv.base_url,
                                                        "api_key_env": "TUNEJUDGE_META_KEY"}}
            wd = make_workdir(tmp_path, {"judge.backend": "openai", "judge.in_flight": 8,
                                         "judge.openai": {**yaml.safe_load((REPO / "config/config.yaml").read_text())
                                                          ["judge"]["openai"], **endpoint(oracle, "scripted")["openai"]},
                                         "judge.panel.judges": {"coin": endpoint(coin, "scripted")},
                                         "meta_eval.summeval.articles": 6, "meta_eval.mt_bench.pairs": None})
            # the plan is written before the checks are enforced (this endpoint serves no embeddings model
            # for the default's RAGAS generation, so the checks fail; the meta-evaluation needs none)
            snakemake(wd, "--cores", "1", "preflight", check=False)
            plan = json.loads((wd / "results/preflight.json").read_text())["plan"]["requests"]
            snakemake(wd, "--cores", CORES, "meta_eval")
            asked = oracle.chat_requests, coin.chat_requests
    finally:
        del os.environ["TUNEJUDGE_META_KEY"]
    items = json.loads((wd / "results/meta_eval/summeval.items.json").read_text())
    pairs = json.loads((wd / "results/meta_eval/mt_bench.items.json").read_text())["pairs"]
    assert len(items) == 6 * 6 and len(pairs) == 24
    assert asked == (len(items) * 4 + 2 * len(pairs),) * 2  # every summary x criterion, every pair both orders
    assert plan["meta_summeval"] + plan["meta_mt_bench"] == sum(asked)  # preflight planned exactly that
    corr = {(r["scorer"], r["statistic"], r["dimension"]): r for r in csv.DictReader((wd / "results/meta_eval/summeval.csv").open())}
    agree = {(r["scorer"], r["setup"]): r for r in csv.DictReader((wd / "results/meta_eval/mt_bench.csv").open())}
    print("\noracle: SummEval Spearman", corr[("primary", "spearman", "average")]["value"], "MT-Bench without ties",
          agree[("primary", "without_ties")]["agreement"], "| random:", corr[("coin", "spearman", "average")]["value"],
          agree[("coin", "without_ties")]["agreement"])
    assert float(corr[("primary", "spearman", "average")]["value"]) > 0.6
    assert float(corr[("primary", "spearman", "average")]["lo"]) > 0
    assert float(agree[("primary", "without_ties")]["agreement"]) > 0.8
    assert abs(float(corr[("coin", "spearman", "average")]["value"])) < 0.35
    report = (wd / "results/meta_eval/report.md").read_text()
    assert "## Judge versus human experts" in report and "0.514" in report and "85%" in report and "63%" in report
    assert "- `primary` tracks the experts better than chance on both sets" in report
    assert "**`coin` does not track the experts better than chance on" in report
    assert "| length (baseline) | spearman |" in report
    assert not (wd / "results/report.md").exists()  # outside `all`: nothing else ran
