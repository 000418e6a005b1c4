"""`make rehearse`: config/paper.yaml as shipped + config/rehearsal.yaml, every rule of the study's DAG,
offline against the stand-ins (local Hub, scripted OpenAI API, file server), checked from its summary."""

import json
import os
import subprocess
import sys

import pytest
from conftest import CORES, REPO

pytestmark = pytest.mark.pipeline

OLAH = os.environ.get("TUNEJUDGE_OLAH", str(REPO / ".venv-hub/bin/olah-cli"))


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory):
    wd = tmp_path_factory.mktemp("rehearsal") / "run"
    proc = subprocess.run([sys.executable, "-m", "tunejudge_dev.rehearsal", "--workdir", str(wd), "--olah", OLAH,
                           "--cores", CORES], capture_output=True, text=True, timeout=1500, cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return wd, json.loads((wd / "rehearsal_summary.json").read_text()), proc.stdout


def test_every_rule_of_the_paper_dag_ran_with_nothing_outside_loopback(rehearsal):
    wd, s, out = rehearsal
    assert s["failures"] == [] and s["rules_missing"] == []
    for rule in ("generate_qa_cnn", "audit_qa_cnn", "download_source", "download_corpus", "download_gpt2",
                 "download_base", "prepare_base", "check_base", "build_instructions", "curate", "split", "train",
                 "respond", "merge_responses", "judge", "judge_controls", "reference_metrics", "analyze", "plots",
                 "report", "provenance"):
        assert rule in s["rules_ran"]
    assert sorted(p.name for p in (wd / "results/models").iterdir()) == ["full", "full2k", "lora_small", "small"]
    assert s["requests_outside_127.0.0.1"] == {}
    assert "rehearsal of config/paper.yaml: OK" in out and "not exercised" in out


def test_preflight_planned_the_requests_that_were_sent(rehearsal):
    """The judge's count is exact; RAGAS's (its multi-hop synthesizers run where articles link, which
    only the LLM's answers decide) and the audit's (one per generated row) are upper bounds."""
    wd, s, _ = rehearsal
    v = s["plan_vs_sent"]["judge"]
    assert v["sent"] > 0 and abs(v["planned"] - v["sent"]) <= 0.05 * v["sent"] and not v["upper_bound"], v
    for kind in ("ragas", "audit"):
        v = s["plan_vs_sent"][kind]
        assert v["upper_bound"] and 0 < v["sent"] <= v["planned"], (kind, v)
    rows = [json.loads(line) for line in (wd / "data/generated/qa_cnn/ragas_testset.jsonl").read_text().splitlines()]
    print("rehearsal RAGAS rows by synthesizer:", {r["synthesizer_name"] for r in rows}, s["plan_vs_sent"])
    assert s["requests_refused_429"] >= 1  # the API-like endpoint refused some; the clients waited and retried
    meta = s["plan_vs_sent"]["meta"]  # snakemake meta_eval on the stand-in Hub's SummEval and MT-Bench sets
    assert meta["sent"] == meta["planned"] == 3 * 4 * 4 + 2 * 6, meta


def test_meta_eval_ran_on_the_stand_in_hub(rehearsal):
    wd, s, _ = rehearsal
    assert "## Judge versus human experts" in s["meta_eval"] and "0.514" in s["meta_eval"]
    for repo in ("datasets/mteb/summeval", "datasets/lmsys/mt_bench_human_judgments"):
        assert repo in s["stand_in_hub"]
    items = json.loads((wd / "results/meta_eval/summeval.items.json").read_text())
    assert len(items) == 12 and len({it["article"] for it in items}) == 3


def test_judge_rows_are_logprob_weighted_and_name_the_served_model(rehearsal):
    wd, s, _ = rehearsal
    assert s["judge_rows_asked"] > 0 and s["judge_rows_logprob_weighted"] == s["judge_rows_asked"]
    assert s["judge_served_by"] == ["gpt-4.1-2025-04-14"]


def test_a_transformers_base_came_from_the_stand_in_hub_and_was_read_offline(rehearsal):
    """download_base fetched the repository (snapshot_download through HF_ENDPOINT) at its revision;
    prepare_base and check_base read it from the Hub cache with the Hub gone; the LoRA model answered."""
    wd, s, _ = rehearsal
    base = s["transformers_bases"]["hub_llama"]
    assert base["source"]["repo"] == "tunejudge-rehearsal/tiny-llama"
    assert base["source"]["commit"] == s["stand_in_hub"]["models/tunejudge-rehearsal/tiny-llama"]
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= set(base["source"]["files"])
    assert base["check"]["perplexity"] < base["check"]["max_perplexity"] == 100
    log = (wd / "results/logs/prepare_base/hub_llama.log").read_text()
    assert "LlamaForCausalLM" in log
    answers = json.loads((wd / "results/all_model_responses.json").read_text())
    assert all(isinstance(r["model lora_small"], str) for r in answers)
    card = (wd / "results/models/lora_small/hf/README.md").read_text()
    assert "base_model: tunejudge-rehearsal/tiny-llama" in card and "lora" in card


def test_provenance_records_revisions_weights_judge_and_the_merged_config(rehearsal):
    wd, s, _ = rehearsal
    p = json.loads((wd / "results/provenance.json").read_text())
    assert p["config"]["sources"]["sst2"]["loader"] == {"path": "stanfordnlp/sst2", "split": "train"}
    assert p["config"]["judge"]["openai"]["base_url"] == "http://127.0.0.1:18082/v1"
    revisions = {d["loader"]["path"]: d["revision"] for d in p["datasets"]}
    assert revisions["stanfordnlp/sst2"] == s["stand_in_hub"]["datasets/stanfordnlp/sst2"]
    assert {d["loader"].get("name") for d in p["datasets"] if d["loader"]["path"] == "abisee/cnn_dailymail"} == {"3.0.0"}
    w = p["bases"]["gpt2"]
    assert w["source"]["repo"] == "openai-community/gpt2" and w["sha256"] == w["source"]["sha256"]
    assert w["source"]["revision"] == s["stand_in_hub"]["models/openai-community/gpt2"]
    assert p["judge"]["reported_models"] and set(p["judge"]["reported_models"]) == {"gpt-4.1-2025-04-14"}
    assert p["packages"]["datasets"] and p["packages"]["deepeval"]
    assert len(p["downloads"]) == 1 and p["downloads"][0]["file"].endswith("instruction-data.json")
    assert (wd / "results/report.md").exists()
    secret_free = (wd / "results/provenance.json").read_text()
    assert "sk-rehearsal" not in secret_free
