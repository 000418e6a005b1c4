"""QLoRA (finetune: qlora): the base in 4-bit NF4 (bitsandbytes, double quantization, bf16 compute) under a
LoRA adapter trains on the real path -- bitsandbytes 0.50 quantizes on CPUs as well as CUDA -- and its export
is a bf16 from_pretrained folder (the dequantized base with the adapter merged in) that transformers alone
loads, with the adapter alone beside it. Where 4 bits cannot be had, the load stops at once, naming the base
and what is missing."""

import sys

import pytest
import torch

from tunejudge.data.records import make_record
from tunejudge.errors import ConfigError, TunejudgeError


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    from tunejudge_dev.testing.tiny import tiny_llama

    return tiny_llama(tmp_path_factory.mktemp("llama") / "model", seed=0, hidden=64)


def records(n):
    return [make_record(f"Repeat item {i}.", "alpha beta " * (i % 4 + 1), f"item {i}", "t") for i in range(n)]


def test_a_qlora_training_exports_a_bf16_merged_model_that_transformers_loads(llama, tmp_path):
    from transformers import AutoModelForCausalLM

    from tunejudge.models.bases import LORA_DEFAULTS
    from tunejudge.models.fourbit import four_bit_missing
    from tunejudge.models.hf import load_hf
    from tunejudge.training.trainer import TrainConfig, train

    if four_bit_missing("cpu"):
        pytest.fail(f"bitsandbytes is in the lock and runs 4-bit on CPUs: {four_bit_missing('cpu')}")
    lm = load_hf(llama, quantize="nf4")
    assert lm.quantized and type(lm.core.model.layers[0].self_attn.q_proj).__name__ == "Linear4bit"
    lm.add_lora({**LORA_DEFAULTS, "r": 4, "dropout": 0.0}, seed=1)
    before = {k: v.clone() for k, v in lm.trainable_state().items()}
    tc = TrainConfig.from_dict({"epochs": 2, "batch_size": 4, "micro_batch_size": 2, "lr": 1e-2, "eval_every": 2,
                                "device": "cpu", "dtype": "bfloat16", "seed": 0})
    res = train(lm, records(8), records(2), tc, progress=False)
    assert res.completed and res.history["final_val_loss"] is not None
    assert any(not torch.equal(before[k], v) for k, v in lm.trainable_state().items())  # the adapter learned
    ids = torch.tensor([lm.prompt_ids(records(1)[0])])
    lm.module.eval()
    with torch.no_grad():
        trained = lm.module(input_ids=ids).logits.float()
    out = tmp_path / "export"
    ft = {"method": "qlora", **LORA_DEFAULTS, "r": 4, "dropout": 0.0, "quantize": "nf4"}
    lm.export(out, {"model": "q", "base": "tiny llama", "finetune": ft})
    assert "4-bit NF4" in (out / "README.md").read_text()
    assert (out / "adapter" / "adapter_config.json").is_file() and (out / "model.safetensors").is_file()
    assert "quantization_config" not in (out / "config.json").read_text()
    merged = AutoModelForCausalLM.from_pretrained(str(out))
    assert merged.dtype == torch.bfloat16 and type(merged.model.layers[0].self_attn.q_proj) is torch.nn.Linear
    with torch.no_grad():
        exported = merged(input_ids=ids).logits.float()
    # the same function as the trained 4-bit model: NF4 weights dequantized exactly, the adapter folded in;
    # bf16 rounding of the merged weights only
    assert (exported.argmax(-1) == trained.argmax(-1)).float().mean() > 0.9
    torch.testing.assert_close(exported, trained, rtol=0.05, atol=0.15)


def test_without_bitsandbytes_the_load_stops_naming_the_base_and_the_package(llama, monkeypatch):
    from tunejudge.models.fourbit import four_bit_missing
    from tunejudge.models.hf import load_hf

    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # import bitsandbytes -> ImportError
    assert "bitsandbytes is not installed" in four_bit_missing("cpu")
    with pytest.raises(TunejudgeError, match=rf"{llama}: finetune qlora loads this base in 4 bits, and bitsandbytes "
                                             r"is not installed \(pip install 'tunejudge\[qlora\]'\)"):
        load_hf(llama, quantize="nf4")


def test_qlora_is_for_transformers_bases():
    from tunejudge.models.bases import finetune_of

    cfg = {"models": {"q": {"experiment": "full", "finetune": "qlora"}}, "gpt2": {"size": "gpt2", "weights": "pretrained"},
           "seed": 1}
    with pytest.raises(ConfigError, match="finetune: qlora needs a transformers base"):
        finetune_of(cfg, "q")
