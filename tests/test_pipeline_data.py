"""The real Snakemake on the shipped samples: data stage, incremental rebuilds, byte-identical reruns."""

import json

import pytest
from conftest import REPO, make_workdir, planned_jobs, snakemake

pytestmark = pytest.mark.pipeline
SOURCES = ["summarization_cnn", "qa_cnn", "sst2", "agnews", "qa_squad", "sebastian"]


def data_files(wd):
    out = {}
    for sub in ("instructions", "curated", "splits"):
        for p in sorted((wd / "data" / sub).rglob("*.json")):
            out[str(p.relative_to(wd))] = p.read_bytes()
    return out


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    wd = make_workdir(tmp_path_factory.mktemp("data"))
    snakemake(wd, "--cores", "2", "split")
    return wd


def test_builds_every_split_then_nothing_to_do(built):
    for s in SOURCES:
        assert (built / f"data/instructions/{s}_instruction_data.json").is_file()
        assert (built / f"data/curated/{s}.json").is_file()
        assert (built / f"data/curated/{s}.dropped.json").is_file()
    for p in ("test", "full/train", "full/val", "small/train", "small/val"):
        assert json.loads((built / f"data/splits/{p}.json").read_text())
    assert planned_jobs(snakemake(built, "-n", "split")) == {}


def test_dropped_records_carry_reasons(built):
    dropped = json.loads((built / "data/curated/qa_cnn.dropped.json").read_text())
    assert dropped and {d["reason"] for d in dropped} == {"noisy_persona"}
    assert all(d["detail"] and d["record"]["id"] for d in dropped)


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


def test_same_config_same_bytes(built, tmp_path):
    wd = make_workdir(tmp_path)
    snakemake(wd, "--cores", "2", "split")
    first = data_files(wd)
    for sub in ("instructions", "curated", "splits"):
        for p in (wd / "data" / sub).rglob("*.json"):
            p.unlink()
    snakemake(wd, "--cores", "2", "split", "--forceall")
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
