"""The stand-in Hub (olah over git repositories in the Hub's layouts) read by the real libraries, the
download rules (localrules) against it, jobs offline afterwards, and what bad input says.

olah lives in its own environment (.venv-hub, `make hub-setup`; `make test` builds it).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from conftest import REPO, SNAKEMAKE
from tunejudge_dev.rehearsal.corpora import export_samples, read_corpora
from tunejudge_dev.rehearsal.servers import FileServer, LocalHub, free_port
from tunejudge_dev.rehearsal.standin import build_gpt2_repo, build_mirror

OLAH = os.environ.get("TUNEJUDGE_OLAH", str(REPO / ".venv-hub/bin/olah-cli"))
SAMPLES = REPO / "data" / "samples"


def jsonl(name):
    return [json.loads(line) for line in (SAMPLES / name).read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    if not Path(OLAH).exists():
        pytest.fail(f"{OLAH} missing: run `make hub-setup` (make test does)")
    root = tmp_path_factory.mktemp("hub")
    corpora = export_samples(SAMPLES, root / "corpora")
    build_mirror(read_corpora(corpora), root / "mirrors")
    torch.manual_seed(0)
    build_gpt2_repo("gpt2-tiny", root / "mirrors", root / "scratch", repo="tunejudge-test/gpt2-tiny")
    with LocalHub(OLAH, root / "mirrors", root / "olah") as h:
        yield h, root


def _inherited() -> dict:
    """This process's environment without the offline switches: a module that ran earlier on the
    same worker may have set them (sentence-transformers' loader sets HF_HUB_OFFLINE in-process),
    and these tests go online to the stand-in first."""
    return {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")}


def _python(code: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)


def test_corpora_load_from_the_stand_in_in_their_hub_schema_then_offline(hub):
    """datasets.load_dataset(<hub id>, <config>, split=...) over HTTP, as in paper.yaml; then the same
    calls with the Hub offline and the endpoint closed, from the cache (what compute jobs do)."""
    h, root = hub
    env = {**_inherited(), "HF_ENDPOINT": h.endpoint, "HF_HOME": str(root / "hf-home")}
    code = """
import json, datasets
out = {}
for path, name, split in [("abisee/cnn_dailymail", "3.0.0", "test"), ("abisee/cnn_dailymail", "3.0.0", "train"),
                          ("stanfordnlp/sst2", None, "train"), ("fancyzhx/ag_news", None, "test"),
                          ("rajpurkar/squad", None, "validation")]:
    ds = datasets.load_dataset(path, name, split=split)
    out[f"{path}:{split}"] = {"rows": ds.to_list(), "features": str(ds.features)}
print(json.dumps(out))
"""
    online = _python(code, env)
    assert online.returncode == 0, online.stderr[-3000:]
    got = json.loads(online.stdout.splitlines()[-1])
    cnn, sst, ag, squad = jsonl("cnn_dailymail.jsonl"), jsonl("sst2.jsonl"), jsonl("ag_news.jsonl"), jsonl("squad.jsonl")
    assert got["abisee/cnn_dailymail:test"]["rows"] == [r for i, r in enumerate(cnn) if i % 3 == 2]
    assert got["abisee/cnn_dailymail:train"]["rows"] == [r for i, r in enumerate(cnn) if i % 3 != 2]
    assert [(r["sentence"], r["label"]) for r in got["stanfordnlp/sst2:train"]["rows"]] == \
        [(r["sentence"], r["label"]) for r in sst[0::2]]
    assert "ClassLabel(names=['negative', 'positive'])" in got["stanfordnlp/sst2:train"]["features"]
    assert got["fancyzhx/ag_news:test"]["rows"] == ag[1::2]  # text = title + " " + description, label 0-3
    assert "Sci/Tech" in got["fancyzhx/ag_news:test"]["features"]
    # SQuAD's JSON groups questions by article and paragraph: same rows, grouped; answers a dict of lists
    assert sorted(got["rajpurkar/squad:validation"]["rows"], key=lambda r: r["id"]) == \
        sorted(squad[1::2], key=lambda r: r["id"])
    offline = _python(code, {**env, "HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_OFFLINE": "1",
                             "HF_DATASETS_OFFLINE": "1"})
    assert offline.returncode == 0, offline.stderr[-3000:]
    assert json.loads(offline.stdout.splitlines()[-1]) == got


def test_weights_in_the_hubs_layout_load_through_hf_hub_download(hub, tmp_path):
    from huggingface_hub import hf_hub_download
    from safetensors import safe_open

    from tunejudge.models.gpt2.model import config_for
    from tunejudge.models.gpt2.weights import init_random, load_model

    h, _ = hub
    env = {**_inherited(), "HF_ENDPOINT": h.endpoint, "HF_HOME": str(tmp_path / "hf")}
    proc = _python("from huggingface_hub import hf_hub_download as d; "
                   f"print(d('tunejudge-test/gpt2-tiny', 'model.safetensors', local_dir={str(tmp_path)!r}))", env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    path = proc.stdout.split()[-1]
    assert hf_hub_download  # the real client did the fetch above, in a process with HF_ENDPOINT set
    with safe_open(path, framework="pt") as f:
        keys = set(f.keys())
        assert "h.0.attn.c_attn.weight" in keys and "h.0.attn.bias" in keys
        assert not any(k.startswith("transformer.") for k in keys)
        assert tuple(f.get_tensor("h.0.attn.c_attn.weight").shape) == (128, 384)  # Conv1D: (in, out)
    torch.manual_seed(0)
    original = init_random("gpt2-tiny", 0)  # build_gpt2_repo's seed
    loaded = load_model(path, config_for("gpt2-tiny"))
    x = torch.tensor([[464, 3290, 318, 257, 1332]])
    assert torch.allclose(original.eval()(x), loaded.eval()(x), atol=1e-5)


# --- download rules (localrules) on paper.yaml + rehearsal.yaml, and bad input ---------------------

def _workdir(tmp_path, override: dict) -> tuple[Path, list[str]]:
    wd = tmp_path / "wd"
    (wd / "config").mkdir(parents=True)
    (wd / "config/config.yaml").write_text((REPO / "config/config.yaml").read_text())
    (wd / "bad.yaml").write_text(yaml.safe_dump(override))
    return wd, ["--configfile", str(REPO / "config/paper.yaml"), str(REPO / "config/rehearsal.yaml"), str(wd / "bad.yaml")]


def _snakemake(wd, target, cfgs, env) -> subprocess.CompletedProcess:
    return subprocess.run([SNAKEMAKE, target, "--snakefile", str(REPO / "Snakefile"), "--cores", "1", *cfgs],
                          cwd=wd, capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.parametrize("override, target, message", [
    ({"sources": {"sst2": {"loader": {"path": "stanfordnlp/sst-2", "split": "train"}}}},
     "data/hub/stanfordnlp--sst-2--default--train.json",
     "sources.sst2.loader.path = 'stanfordnlp/sst-2': no such dataset on the Hub"),
    ({"sources": {"summarization_cnn": {"loader": {"path": "abisee/cnn_dailymail", "name": "9.9.9", "split": "train"}}}},
     "data/hub/abisee--cnn_dailymail--9.9.9--train.json",
     "sources.summarization_cnn.loader.name = '9.9.9': abisee/cnn_dailymail has no such config; available: ['3.0.0']"),
    ({"sources": {"sst2": {"loader": {"path": "stanfordnlp/sst2", "split": "dev"}}}},
     "data/hub/stanfordnlp--sst2--default--dev.json",
     "sources.sst2.loader.split = 'dev': stanfordnlp/sst2 has no such split; available: ['train', 'validation']"),
], ids=["dataset-id", "config-name", "split"])
def test_bad_hub_loader_stops_with_one_line(hub, tmp_path, override, target, message):
    h, root = hub
    wd, cfgs = _workdir(tmp_path, override)
    proc = _snakemake(wd, target, cfgs, {**_inherited(), "HF_ENDPOINT": h.endpoint, "HF_HOME": str(tmp_path / "hf")})
    assert proc.returncode != 0
    log = next((wd / "results/logs/download_corpus").glob("*.log")).read_text()
    errors = [line for line in log.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and message in errors[0], log[-2000:]
    assert not (wd / target).exists() and not list((wd / "data/hub").glob("*"))


def test_download_rule_fetches_a_corpus_then_compute_jobs_read_it_offline(hub, tmp_path):
    h, _ = hub
    wd, cfgs = _workdir(tmp_path, {})
    env = {**_inherited(), "HF_ENDPOINT": h.endpoint, "HF_HOME": str(tmp_path / "hf")}
    manifest = wd / "data/hub/stanfordnlp--sst2--default--train.json"
    proc = _snakemake(wd, str(manifest.relative_to(wd)), cfgs, env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    m = json.loads(manifest.read_text())
    assert m["num_rows"] == 20 and m["revision"] and m["fingerprint"] and m["loader"]["path"] == "stanfordnlp/sst2"
    # the Hub is gone: the builder (a compute job) reads the cache the download filled
    proc = _snakemake(wd, "data/instructions/sst2_instruction_data.json", cfgs,
                      {**env, "HF_ENDPOINT": "http://127.0.0.1:9"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = json.loads((wd / "data/instructions/sst2_instruction_data.json").read_text())
    assert 10 <= len(records) <= 12 and {r["output"] for r in records} <= {"Positive", "Negative"}


def test_raschka_file_whose_sha256_differs_is_refused_and_not_kept(tmp_path):
    """paper.yaml pins the public file's sha256; the bundled sample served at that URL differs."""
    wd, cfgs = _workdir(tmp_path, {})
    paper = yaml.safe_load((REPO / "config/paper.yaml").read_text())["sources"]["sebastian"]["download"]
    cfgs = cfgs[:-1]  # paper.yaml + rehearsal.yaml ...
    stand_in = yaml.safe_load((REPO / "config/rehearsal.yaml").read_text())["sources"]["sebastian"]["download"]
    port = free_port()  # not the rehearsal's 18081: tests/test_rehearsal.py may run beside this one
    (wd / "pin.yaml").write_text(yaml.safe_dump({"sources": {"sebastian": {"download": {
        **stand_in, "url": stand_in["url"].replace("127.0.0.1:18081", f"127.0.0.1:{port}"),
        "sha256": paper["sha256"]}}}}))
    cfgs.append(str(wd / "pin.yaml"))  # ... with paper's pin back
    www = tmp_path / "www"
    dest = www / "rasbt/LLMs-from-scratch/main/ch07/01_main-chapter-code/instruction-data.json"
    dest.parent.mkdir(parents=True)
    dest.write_bytes((SAMPLES / "instruction-data.json").read_bytes())
    with FileServer(www, port):
        proc = _snakemake(wd, "data/raw/sebastian/instruction-data.json", cfgs, _inherited())
    assert proc.returncode != 0
    log = (wd / "results/logs/download_source/sebastian/instruction-data.json.log").read_text()
    errors = [line for line in log.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and f"is not the pinned {paper['sha256']}" in errors[0], log
    assert not list((wd / "data/raw/sebastian").glob("*"))  # nothing partial, no temporary file
