"""Outputs are written atomically and get the permissions the umask gives, as open() would."""

import os
import stat

import pytest

from tunejudge.io import atomic_path, write_json


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_outputs_get_the_umasks_permissions(tmp_path, umask, mode):
    from tunejudge.models.gpt2.weights import init_random, save_checkpoint

    old = os.umask(umask)
    try:
        write_json(tmp_path / "a.json", {"x": 1})
        save_checkpoint(init_random("gpt2-tiny", 0), tmp_path / "model.safetensors")
        with open(tmp_path / "plain.txt", "w") as f:  # what open() gives, for comparison
            f.write("x")
    finally:
        os.umask(old)
    for name in ("a.json", "model.safetensors", "plain.txt"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == mode, name
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_a_failed_write_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "out.json") as tmp:
        tmp.write_text("partial")
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600)])
def test_exports_and_prepared_bases_get_the_umasks_permissions(tmp_path, umask, mode):
    """transformers' and peft's save_pretrained (safetensors) write weights 0600: every folder of weights
    passes through atomic_folder (rules train and prepare_base), which gives everything in it what open()
    and mkdir() would. A LoRA export (merged weights, adapter/), a GPT-2 export and a prepared base."""
    from tunejudge_dev.testing.tiny import tiny_llama

    from tunejudge.io import atomic_folder
    from tunejudge.models.gpt2.lm import GPT2LM
    from tunejudge.models.gpt2.weights import init_random
    from tunejudge.models.hf import load_hf, load_source, save_prepared

    llama = tiny_llama(tmp_path / "llama", hidden=32)
    card = {"model": "m", "base": "b", "experiment": "e", "finetune": {"method": "full"}, "train": {},
            "final_val_loss": 1.0}
    old = os.umask(umask)
    try:
        lora = load_hf(llama)
        lora.add_lora({"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": "all-linear"}, seed=0)
        with atomic_folder(tmp_path / "out" / "lora") as tmp:
            lora.export(tmp, card)
        with atomic_folder(tmp_path / "out" / "gpt2") as tmp:
            GPT2LM(init_random("gpt2-tiny", 0)).export(tmp, card)
        with atomic_folder(tmp_path / "out" / "base") as tmp:
            save_prepared(*load_source(path=str(llama)), tmp, {"where": str(llama)})
    finally:
        os.umask(old)
    files = [p for p in (tmp_path / "out").rglob("*") if p.is_file()]
    assert {"lora/model.safetensors", "lora/adapter/adapter_model.safetensors", "gpt2/model.safetensors",
            "base/model.safetensors"} <= {p.relative_to(tmp_path / "out").as_posix() for p in files}
    assert {p.relative_to(tmp_path / "out").as_posix(): oct(stat.S_IMODE(p.stat().st_mode))
            for p in files if stat.S_IMODE(p.stat().st_mode) != mode} == {}
    folders = [p for p in (tmp_path / "out").rglob("*") if p.is_dir()]
    assert all(stat.S_IMODE(p.stat().st_mode) == mode | (mode >> 2 & 0o111) | 0o100 for p in folders)
    assert [p.name for p in (tmp_path / "out").iterdir()] and not list((tmp_path / "out").glob(".*.tmp"))


def test_a_failed_folder_write_leaves_nothing(tmp_path):
    from tunejudge.io import atomic_folder

    with pytest.raises(RuntimeError), atomic_folder(tmp_path / "hf") as tmp:
        (tmp / "model.safetensors").write_text("partial")
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []
