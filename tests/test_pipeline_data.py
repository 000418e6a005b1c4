"""The real Snakemake on the shipped samples: data stage, incremental rebuilds, byte-identical reruns."""

import json

import pytest
import yaml
from conftest import CORES, REPO, copy_workdir, make_workdir, planned_jobs, snakemake

pytestmark = pytest.mark.pipeline
SOURCES = ["summarization_cnn", "qa_cnn", "sst2", "agnews", "qa_squad", "sebastian"]


def data_files(wd):
    out = {}
    for sub in ("instructions", "curated", "splits"):
        for p in sorted((wd / "data" / sub).rglob("*.json")):
            out[str(p.relative_to(wd))] = p.read_bytes()
    return out


@pytest.fixture(scope="module")
def built(default_data, tmp_path_factory):
    """A copy of the session's default data build (conftest.default_data): this module edits it."""
    return copy_workdir(default_data, tmp_path_factory.mktemp("data") / "wd")


def test_builds_every_split_then_nothing_to_do(built):
    for s in SOURCES:
        assert (built / f"data/instructions/{s}_instruction_data.json").is_file()
        assert (built / f"data/curated/{s}.json").is_file()
        assert (built / f"data/curated/{s}.dropped.json").is_file()
    for p in ("test", "full/train", "full/val", "small/train", "small/val"):
        assert json.loads((built / f"data/splits/{p}.json").read_text())
    assert planned_jobs(snakemake(built, "-n", "split")) == {}


def test_no_cnn_article_is_on_both_sides_of_the_default_split(built):
    """The default's summaries and RAGAS questions read the same sample articles: every record of an
    article is in the test set or none is (by group key, and by the article text itself)."""
    articles = {json.loads(line)["id"]: json.loads(line)["article"]
                for line in (REPO / "data/samples/cnn_dailymail.jsonl").read_text().splitlines()}

    def article_of(rec):
        for art_id, text in articles.items():
            if rec["source"] == "summarization_cnn" and rec["input"] == text.strip():
                return art_id
            contexts = (rec.get("meta") or {}).get("reference_contexts") or []
            if rec["source"] == "qa_cnn" and contexts and all(c.strip()[:60] in text for c in contexts):
                return art_id
        return None

    test = json.loads((built / "data/splits/test.json").read_text())
    test_articles = {article_of(r) for r in test} - {None}
    assert test_articles and any(r["source"] == "qa_cnn" for r in test)
    test_groups = {g for r in test for g in r.get("group", [])}
    for p in ("full/train", "full/val", "small/train", "small/val"):
        for r in json.loads((built / f"data/splits/{p}.json").read_text()):
            assert article_of(r) not in test_articles, (p, r["id"])
            assert not set(r.get("group", [])) & test_groups
    manifest = json.loads((built / "data/splits/manifest.json").read_text())
    assert manifest["test"]["n"] == len(test)


def test_dropped_records_carry_reasons(built):
    dropped = json.loads((built / "data/curated/qa_cnn.dropped.json").read_text())
    reasons = {d["reason"] for d in dropped}  # audit.mode: record, so no audit_* reason
    assert "noisy_persona" in reasons and reasons <= {"noisy_persona", "exact_duplicate", "near_duplicate"}
    assert all(d["detail"] and d["record"]["id"] for d in dropped)


def check_generated(rows: list[dict], skipped: list[dict], asked: int) -> None:
    """RAGAS's rows against what was asked: at least one row (the offline default's claim: generated rows
    join qa_cnn; 6 of 6 on the default config), never more than asked, and every shortfall explained (a
    135M model may fail a step: then the skipped list says which stage and step, and why)."""
    assert 1 <= len(rows) <= asked, f"{len(rows)} generated rows of {asked} asked; skipped: {skipped}"
    assert len(rows) == asked or skipped, f"{asked - len(rows)} rows missing and nothing says why"
    assert all(s["stage"] and s["step"] and s["reason"] for s in skipped)


def test_ragas_generated_rows_with_the_local_model_join_qa_cnn(built):
    """The offline default: RAGAS over 3 sample articles with SmolLM2 served on 127.0.0.1 and the
    packaged all-MiniLM-L6-v2 embeddings, for real."""
    gen = built / "data/generated/qa_cnn"
    rows = [json.loads(line) for line in (gen / "ragas_testset.jsonl").read_text().splitlines()]
    skipped = json.loads((gen / "ragas_skipped.json").read_text())
    cfg = yaml.safe_load((built / "config/config.yaml").read_text())
    check_generated(rows, skipped, asked=cfg["sources"]["qa_cnn"]["generate"]["size"])
    articles = {json.loads(line)["id"] for line in (built / "data/samples/cnn_dailymail.jsonl").read_text().splitlines()[:3]}
    for r in rows:
        assert r["user_input"] and r["reference"] and r["reference_contexts"]
        assert r["persona_name"] in {"Local News Reader", "Hurried Commuter"}
        assert r["synthesizer_name"].endswith("_query_synthesizer") and r["article_id"] in articles
    log = (built / "results/logs/generate_qa_cnn/qa_cnn.log").read_text()
    assert "SmolLM2" in log and "requests" in log
    records = json.loads((built / "data/instructions/qa_cnn_instruction_data.json").read_text())
    by_pair = {(r["instruction"], r["output"]): r for r in records}
    for row in rows:  # mode extend: every generated row is a closed-book record beside the sample's
        rec = by_pair[(row["user_input"], row["reference"])]
        assert rec["input"] == "" and rec["meta"]["persona_name"] == row["persona_name"]
        assert rec["meta"]["synthesizer_name"] == row["synthesizer_name"]
        assert rec["meta"]["article_id"] == row["article_id"]
        assert rec["meta"]["reference_contexts"] == row["reference_contexts"]
        assert row["query_style"] in {"MISSPELLED", "POOR_GRAMMAR", "WEB_SEARCH_LIKE", "PERFECT_GRAMMAR"}


def test_every_qa_cnn_item_has_an_audit_verdict(built):
    records = json.loads((built / "data/instructions/qa_cnn_instruction_data.json").read_text())
    verdicts = json.loads((built / "data/audit/qa_cnn.json").read_text())
    assert [v["id"] for v in verdicts] == [r["id"] for r in records]
    for v in verdicts:
        if v.get("skipped"):
            assert v["skipped"] == "noisy_persona" and v["persona_name"] == "Hurried Commuter"
        else:
            assert isinstance(v["grounded"], bool) and isinstance(v["standalone"], bool) and v["reason"]
    assert "audit in record mode" in (built / "results/logs/curate/qa_cnn.log").read_text()


def test_enforced_audit_through_snakemake_drops_with_the_auditors_reasons(tmp_path, monkeypatch):
    """Generation and audit through an OpenAI-compatible endpoint (scripted, real HTTP): the auditor
    rejects some answers; curation drops exactly those, with its words."""
    from tunejudge_dev.testing.openai_server import (
        Reply,
        ScriptedOpenAI,
        prompt_of,
        response_schema,
    )

    cycle = [(True, True), (False, True), (True, False)]  # kept, not grounded, question-dependent
    assigned = {}

    def verdict(answer):
        return assigned.setdefault(answer, cycle[len(assigned) % 3])

    def script(body, seen):
        if (response_schema(body) or {}).get("title") != "QAAudit":
            return Reply()  # RAGAS's prompts: a value fitting the asked schema
        answer = prompt_of(body).split("Answer: ", 1)[1].split("\n", 1)[0]
        grounded, standalone = verdict(answer)
        return Reply(content=json.dumps({"reason": f"scripted auditor on {answer[:20]!r}", "grounded": grounded,
                                         "standalone": standalone}))

    monkeypatch.setenv("TUNEJUDGE_PIPELINE_KEY", "sk-test")
    with ScriptedOpenAI(script) as srv:
        wd = make_workdir(tmp_path, {
            "judge.backend": "openai",
            "judge.openai": {"model": "scripted", "base_url": srv.base_url, "api_key_env": "TUNEJUDGE_PIPELINE_KEY",
                             "logprobs": False, "structured_output": "json_schema", "max_tokens_field": "max_tokens"},
            "curation.audit.mode": "enforce",
            "sources.qa_cnn.generate.mode": "replace",
            "sources.qa_cnn.generate.size": 8,
        })
        snakemake(wd, "--cores", CORES, "data/curated/qa_cnn.json")
        assert srv.embedding_requests > 0
    rows = (wd / "data/generated/qa_cnn/ragas_testset.jsonl").read_text().splitlines()
    records = json.loads((wd / "data/instructions/qa_cnn_instruction_data.json").read_text())
    assert len(rows) == len(records) == 8  # mode replace: the generated rows only
    kept = json.loads((wd / "data/curated/qa_cnn.json").read_text())
    dropped = json.loads((wd / "data/curated/qa_cnn.dropped.json").read_text())
    noisy = {r["id"] for r in records if r["meta"]["persona_name"] == "Hurried Commuter"}
    expect = {r["id"]: assigned[r["output"]] for r in records if r["id"] not in noisy}
    assert {r["id"] for r in kept} == {i for i, v in expect.items() if v == (True, True)}
    assert len(set(assigned.values())) == 3  # each kind of verdict came up
    for d in dropped:
        rid = d["record"]["id"]
        if rid in noisy:
            assert d["reason"] == "noisy_persona"
        else:
            assert d["reason"] == {(False, True): "audit_not_grounded", (True, False): "audit_question_dependent"}[expect[rid]]
            assert "scripted auditor on" in d["detail"]
    assert len(kept) + len(dropped) == len(records)


def test_editing_one_dataset_replans_only_its_consumers(built):
    p = built / "data/instructions/sst2_instruction_data.json"
    recs = json.loads(p.read_text())
    recs[0]["output"] = "Negative" if recs[0]["output"] == "Positive" else "Positive"
    p.write_text(json.dumps(recs, indent=2))
    proc = snakemake(built, "-n", "split")
    assert planned_jobs(proc) == {"curate": 1, "split": 1}
    assert "data/curated/sst2.json" in proc.stdout
    for other in SOURCES:
        if other != "sst2":
            assert f"data/curated/{other}.json" not in proc.stdout.split("rule split")[0]


def test_same_config_same_bytes(default_data, tmp_path):
    """Every data file deleted and rebuilt (--forceall, RAGAS answers from the store): the same bytes."""
    first = data_files(default_data)
    wd = copy_workdir(default_data, tmp_path / "wd")
    for sub in ("instructions", "curated", "splits"):
        for p in (wd / "data" / sub).rglob("*.json"):
            p.unlink()
    snakemake(wd, "--cores", CORES, "split", "--forceall")
    assert data_files(wd) == first and len(first) == 6 + 12 + 7


def test_bad_dataset_stops_with_file_record_field(tmp_path):
    wd = make_workdir(tmp_path)
    snakemake(wd, "--cores", "1", "data/instructions/agnews_instruction_data.json")
    p = wd / "data/instructions/agnews_instruction_data.json"
    recs = json.loads(p.read_text())
    recs[3]["output"] = 2
    p.write_text(json.dumps(recs))
    proc = snakemake(wd, "--cores", "1", "data/curated/agnews.json", check=False)
    assert proc.returncode != 0
    assert "data/instructions/agnews_instruction_data.json: record 3: field 'output': expected a string" in proc.stderr
    assert not (wd / "data/curated/agnews.json").exists()


def test_lint_is_clean():
    proc = snakemake(REPO, "--lint")
    assert "Congratulations" in proc.stdout + proc.stderr
