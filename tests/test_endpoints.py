"""Any OpenAI-compatible endpoint as a compared model (models.<m>.endpoint), offline and through Snakemake: the
packaged SmolLM2 GGUF served by llama-cpp-python's server answers the test set beside `base` (the same weights
through transformers), both are judged and reported with their judge-free metrics side by side; preflight plans
the endpoint's requests, the job counts what it sent, and a rerun sends none."""

import csv
import json

import pytest
import yaml
from conftest import CORES, REPO, copy_workdir, snakemake

pytestmark = pytest.mark.pipeline

ONE_METRIC = [m for m in yaml.safe_load((REPO / "config/config.yaml").read_text())["judge"]["metrics"]
              if m["name"] == "InstructionAdherence"]


def test_a_served_gguf_is_compared_beside_its_transformers_twin_in_one_report(default_data, tmp_path, monkeypatch):
    from tunejudge_dev.testing.openai_server import ScriptedOpenAI

    from tunejudge.llm.server import llama_server, packaged_gguf

    # the compared model is the real server; the judge a scripted one (the local judge has its own tests)
    with llama_server(packaged_gguf(), n_ctx=2048, threads=1, startup_timeout_s=180, log_path=tmp_path / "server.log",
                      alias="smollm2-served") as (url, key, alias), \
            ScriptedOpenAI(api_like=True, api_key="sk-scripted") as judge:
        monkeypatch.setenv("TUNEJUDGE_ENDPOINT_KEY", key)
        monkeypatch.setenv("TUNEJUDGE_JUDGE_KEY", "sk-scripted")
        wd = copy_workdir(default_data, tmp_path / "wd", {
            "split.test.size": 12, "generation.max_new_tokens": 16,
            "models": {"base": {"base": "smollm2"},
                       "served": {"endpoint": {"model": alias, "base_url": url, "api_key_env": "TUNEJUDGE_ENDPOINT_KEY",
                                               "prompt": "completion", "in_flight": 2,
                                               "prices": {"input_per_mtok": 0.1, "output_per_mtok": 0.4}}}},
            "analysis.pairs": [["served", "base"]],
            "judge.backend": "openai", "judge.in_flight": 8,
            "judge.openai.model": "gpt-4.1-mini", "judge.openai.base_url": judge.base_url,
            "judge.openai.api_key_env": "TUNEJUDGE_JUDGE_KEY",
            "judge.metrics": ONE_METRIC, "judge.controls.items_per_source": 1,
            "judge.controls.adversarial.enabled": False})
        snakemake(wd, "--cores", CORES, "data/splits/test.json")  # the test split of this size: preflight's count
        snakemake(wd, "--cores", CORES, "preflight")
        plan = json.loads((wd / "results/preflight.json").read_text())["plan"]
        assert plan["requests"]["answers:served"] == 12  # every test item once
        snakemake(wd, "--cores", CORES, "--resources", "gpu=1")
        stats = json.loads((wd / "results/responses/served.stats.json").read_text())
        assert stats["requests"] == 12 and stats["cached"] == 0 and stats["prompt_tokens"] > 0
        assert stats["cost_usd"] > 0
        served = json.loads((wd / "results/responses/served.json").read_text())
        assert served["generation"]["endpoint"] == url and len(served["responses"]) == 12
        assert any(r["response"].strip() for r in served["responses"])
        labels = json.loads((wd / "results/model_labels.json").read_text())
        assert labels["served"].startswith("smollm2-served at 127.0.0.1")
        with open(wd / "results/tables/reference.csv") as f:
            models = {r["model"] for r in csv.DictReader(f)}
        assert {"served", "base"} <= models
        report = (wd / "results/report.md").read_text()
        assert "served" in report and "smollm2-served at 127.0.0.1" in report
        judged = [json.loads(line) for line in (wd / "results/judge/served.jsonl").read_text().splitlines()]
        assert len(judged) == 12
        # a forced rerun of the answers: all from the answer store, nothing sent, the same bytes
        before = (wd / "results/responses/served.json").read_bytes()
        snakemake(wd, "--cores", CORES, "results/responses/served.json", "--forcerun=respond_endpoint",
                  "--allowed-rules", "respond_endpoint")
        again = json.loads((wd / "results/responses/served.stats.json").read_text())
        assert again.get("requests", 0) == 0 and again["cached"] == 12
        assert (wd / "results/responses/served.json").read_bytes() == before
        # the key was never written
        for p in wd.rglob("*"):
            if p.is_file():
                assert key.encode() not in p.read_bytes(), p
