"""One training in several processes (torchrun, gloo on the CPU): DDP and FSDP2, full, LoRA and DPO, take the steps one
process takes -- the same weights to within float rounding -- a 2-process run killed mid-epoch resumes to where an
uninterrupted one ends, and the export of a 2-process training loads with transformers alone."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tunejudge.data.records import make_record

RANK = r'''
import json, sys, torch
from pathlib import Path
from tunejudge.training import distributed
from tunejudge.training.trainer import TrainConfig, train

spec = json.loads(Path(sys.argv[1]).read_text())
sys.path.insert(0, spec["tests"])
from test_distributed import model_for, pairs, records  # noqa: E402

with distributed.initialized():
    w = distributed.world()
    lm = model_for(spec["family"], spec["llama"])
    tc = TrainConfig.from_dict({**spec["train"], "processes": w.size, "parallel": spec["parallel"]})
    data, extra = (records(24), records(spec.get("val", 6), 1)), {}
    if spec.get("dpo"):
        from tunejudge.training.preference import Preference
        data, extra = (pairs(24), pairs(spec.get("val", 6), 1)), {"objective": Preference(loss_type="sigmoid", beta=0.5)}
    res = train(lm, *data, tc, resume_dir=spec.get("resume"), progress=False, stop_after_steps=spec.get("stop"),
                **extra)
    if res.full_state is not None:
        state = res.full_state
    else:  # FSDP2 gathers the whole weights of a completed run only; a stopped one has its resume state
        state = {} if spec["parallel"] == "fsdp" and w.active else lm.trainable_state()
    if w.main:
        torch.save({"state": {k: v.detach().cpu() for k, v in state.items()}, "history": res.history,
                    "completed": res.completed, "stats": res.stats}, spec["out"])
'''

TRAIN = {"epochs": 2, "batch_size": 4, "micro_batch_size": 2, "lr": 1e-3, "eval_every": 2, "checkpoint_every": 2,
         "device": "cpu", "seed": 3, "dtype": "float32", "weight_decay": 0.0}


def records(n, seed=0):
    return [make_record(f"Repeat item {i + 100 * seed}.", "alpha beta " * (i % 5 + 1), f"item {i}", "t") for i in range(n)]


def pairs(n, seed=0):
    """Preference rows of the records above: chosen the record's answer, rejected another's, of other lengths."""
    recs = records(n + 1, seed)
    return [{"prompt": r["instruction"], "chosen": r["output"], "rejected": recs[i + 1]["output"] + " wrong" * (i % 3),
             "id": r["id"], "source": r["source"], "instruction": r["instruction"], "input": r["input"], "margin": 1.0}
            for i, r in enumerate(recs[:n])]


def model_for(family: str, llama: str):
    from tunejudge.models.bases import LORA_DEFAULTS
    from tunejudge.models.gpt2.lm import GPT2LM
    from tunejudge.models.gpt2.model import GPT2, GPTConfig
    from tunejudge.models.hf import load_hf

    if family == "gpt2-full":
        torch.manual_seed(0)
        return GPT2LM(GPT2(GPTConfig(n_ctx=256, n_embd=64, n_layer=2, n_head=2)))
    lm = load_hf(llama)
    if family == "llama-lora":
        lm.add_lora({**LORA_DEFAULTS, "r": 4, "dropout": 0.0}, seed=7)
    return lm


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    from tunejudge_dev.testing.tiny import tiny_llama

    return str(tiny_llama(tmp_path_factory.mktemp("llama") / "model", seed=0, hidden=32))


def run(tmp_path, family, llama, processes, parallel="auto", **extra):
    spec = {"family": family, "llama": llama, "parallel": parallel, "train": TRAIN, "tests": str(Path(__file__).parent),
            "out": str(tmp_path / f"out-{processes}-{parallel}.pt"), **extra}
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    (tmp_path / "rank.py").write_text(RANK)
    cmd = [sys.executable, str(tmp_path / "rank.py"), str(tmp_path / "spec.json")]
    if processes > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}", *cmd[1:]]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(
        [str(Path(__file__).parents[1] / "src"), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)  # a hang fails, not blocks
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return torch.load(spec["out"], weights_only=False)


# LoRA under FSDP2 with uneven shares: 3 passes a step over 2 ranks, 5 val records. Every FSDP2 pass is a
# collective, so the rank with fewer passes runs idle ones (a hang before)
UNEVEN = {"train": {**TRAIN, "batch_size": 6}, "val": 5}


@pytest.mark.parametrize("family, parallel, extra", [("llama-lora", "ddp", {}), ("gpt2-full", "fsdp", {}),
                                                     ("llama-lora", "fsdp", UNEVEN)], ids=["llama-lora-ddp",
                                                     "gpt2-full-fsdp", "llama-lora-fsdp-uneven"])
def test_two_processes_take_the_steps_one_process_takes(tmp_path, llama, family, parallel, extra):
    one = run(tmp_path / "one", family, llama, 1, **extra)
    two = run(tmp_path / "two", family, llama, 2, parallel, **extra)
    assert two["stats"]["processes"] == 2 and two["stats"]["parallel"] == parallel
    a, b = one["state"], two["state"]
    assert a.keys() == b.keys() and a
    for k in a:  # float32; the ranks' gradients are summed in another order: rounding only
        torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-6, msg=k)
    ea, eb = one["history"]["evaluations"], two["history"]["evaluations"]
    assert [e["step"] for e in ea] == [e["step"] for e in eb] and [e["tokens_seen"] for e in ea] == [e["tokens_seen"] for e in eb]
    for x, y in zip(ea, eb):
        assert y["val_loss"] == pytest.approx(x["val_loss"], rel=1e-4) and y["train_loss"] == pytest.approx(x["train_loss"], rel=1e-4)


def test_dpo_in_two_fsdp_processes_takes_the_steps_one_process_takes(tmp_path, llama):
    """Preference tuning's reference pass before the first step runs on each rank's share of the pairs (29
    pairs: 15 and 14, in passes of 2) and is gathered; evaluations too: the ranks' FSDP2 collectives line up
    (a hang before), and the adapter is one process's."""
    one = run(tmp_path / "one", "llama-lora", llama, 1, dpo=True, val=5)
    two = run(tmp_path / "two", "llama-lora", llama, 2, "fsdp", dpo=True, val=5)
    assert one["state"].keys() == two["state"].keys() and one["state"]
    for k in one["state"]:
        torch.testing.assert_close(two["state"][k], one["state"][k], rtol=1e-4, atol=1e-6, msg=k)
    ea, eb = one["history"]["evaluations"], two["history"]["evaluations"]
    assert len(ea) == len(eb) > 0 and ea[-1]["val_reward_accuracy"] == eb[-1]["val_reward_accuracy"]
    for x, y in zip(ea, eb):
        assert y["val_loss"] == pytest.approx(x["val_loss"], rel=1e-4)


@pytest.mark.parametrize("parallel", ["fsdp"])  # DDP resumes through the one-process path
def test_a_two_process_run_killed_mid_epoch_resumes_where_an_uninterrupted_one_ends(tmp_path, llama, parallel):
    one_epoch = {**TRAIN, "epochs": 1}  # 6 steps, a resume state every 2
    whole = run(tmp_path / "whole", "llama-lora", llama, 2, parallel, resume=str(tmp_path / "whole" / "resume"),
                train=one_epoch)
    part = run(tmp_path / "part", "llama-lora", llama, 2, parallel, resume=str(tmp_path / "part" / "resume"), stop=3,
               train=one_epoch)
    assert not part["completed"] and (tmp_path / "part" / "resume" / "state.pt").exists()
    shutil.copytree(tmp_path / "part" / "resume", tmp_path / "other" / "resume")  # for 1 process, below
    resumed = run(tmp_path / "part", "llama-lora", llama, 2, parallel, resume=str(tmp_path / "part" / "resume"),
                  train=one_epoch)
    assert resumed["completed"] and resumed["history"]["evaluations"] == whole["history"]["evaluations"]
    for k, v in whole["state"].items():
        assert torch.equal(resumed["state"][k], v), k
    with pytest.raises(AssertionError, match="written by a training in 2 processes"):  # N on N, said so
        run(tmp_path / "other", "llama-lora", llama, 1, resume=str(tmp_path / "other" / "resume"), train=one_epoch)


LOADS = r'''
import json, sys, torch
from transformers import AutoModelForCausalLM, AutoTokenizer
folder = sys.argv[1]
model, tok = AutoModelForCausalLM.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)
with torch.no_grad():
    logits = model(**tok("Classify the sentiment: a fine film.", return_tensors="pt")).logits
print(json.dumps({"finite": bool(torch.isfinite(logits).all()), "class": type(model).__name__}))
'''


@pytest.mark.pipeline
def test_a_two_process_fsdp_training_through_snakemake_exports_what_transformers_alone_loads(default_data, tmp_path):
    """The user's path: train.processes 2 makes rule train launch torchrun (gloo here) and ask for 2 GPUs;
    rank 0 exports the gathered weights; the folder loads in a bare interpreter with transformers."""
    from conftest import copy_workdir, snakemake

    lora = {"r": 8, "alpha": 16, "dropout": 0.0, "target_modules": "all-linear"}
    wd = copy_workdir(default_data, tmp_path / "wd", {
        "split.test.size": 12, "experiments.small.size": 18,
        "models": {"base": {"base": "smollm2"},
                   "dist": {"base": "smollm2", "experiment": "small", "finetune": "lora", "lora": lora,
                            "train": {"processes": 2, "parallel": "fsdp", "epochs": 1}}},
        "analysis.pairs": [["dist", "base"]]})
    # (targets after a flag: --configfile, which the helper passes last, takes every argument after it)
    dry = snakemake(wd, "-n", "results/models/dist/hf", "--cores", "2", "--resources", "gpu=2")
    assert "gpu=2" in dry.stdout + dry.stderr  # the job asks for its 2 GPUs
    snakemake(wd, "--cores", "2", "results/models/dist/hf", "--resources", "gpu=2")
    history = json.loads((wd / "results/models/dist/history.json").read_text())
    assert history["processes"] == 2 and history["parallel"] == "fsdp" and history["final_val_loss"] is not None
    log = (wd / "results/logs/train/dist.log").read_text()
    assert "launching 2 processes" in log and "torch.distributed.run --standalone --nproc-per-node=2" in log
    card = (wd / "results/models/dist/hf/README.md").read_text()
    assert "2 processes" in card
    assert (wd / "results/models/dist/hf/adapter/adapter_config.json").is_file()
    bare = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    proc = subprocess.run([sys.executable, "-c", LOADS, str(wd / "results/models/dist/hf")], capture_output=True,
                          text=True, timeout=300, env=bare, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {"finite": True, "class": "LlamaForCausalLM"}
