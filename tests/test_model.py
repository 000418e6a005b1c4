"""GPT-2 parity with transformers' GPT2LMHeadModel (test-only dependency) and checkpoint handling."""

import pytest
import torch

from tunejudge.errors import TunejudgeError
from tunejudge.models.gpt2.model import GPT2, GPTConfig, config_for
from tunejudge.models.gpt2.weights import load_model, save_checkpoint

CFG = GPTConfig(vocab_size=50257, n_ctx=64, n_embd=64, n_layer=3, n_head=4)


@pytest.fixture(scope="module")
def hub_checkpoint(tmp_path_factory):
    """Random weights of a small config saved in the Hub's format by transformers itself."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    hf_cfg = transformers.GPT2Config(
        vocab_size=CFG.vocab_size, n_positions=CFG.n_ctx, n_embd=CFG.n_embd, n_layer=CFG.n_layer,
        n_head=CFG.n_head, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, activation_function="gelu_new",
    )
    hf = transformers.GPT2LMHeadModel(hf_cfg).eval()
    d = tmp_path_factory.mktemp("hub")
    hf.save_pretrained(d, safe_serialization=True)
    return hf, d / "model.safetensors"


def test_logits_match_transformers_with_padding(hub_checkpoint):
    hf, path = hub_checkpoint
    ours = load_model(path, CFG).eval()
    torch.manual_seed(1)
    ids = torch.randint(0, CFG.vocab_size, (3, 12))
    mask = torch.ones_like(ids)
    mask[0, :5] = 0  # left padding
    mask[1, :2] = 0
    ids = ids.masked_fill(mask == 0, 50256)
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        ref = hf(input_ids=ids, attention_mask=mask, position_ids=pos).logits
        got = ours(ids, attention_mask=mask, position_ids=pos)
    real = mask.bool()
    assert (got[real] - ref[real]).abs().max().item() <= 1e-4
    # no padding at all: the plain causal path
    with torch.no_grad():
        assert (ours(ids[2:]) - hf(input_ids=ids[2:]).logits).abs().max().item() <= 1e-4


def test_roundtrip_own_checkpoint(tmp_path):
    torch.manual_seed(0)
    m = GPT2(CFG)
    save_checkpoint(m, tmp_path / "m.safetensors", {"label": "test"})
    m2 = load_model(tmp_path / "m.safetensors")
    assert m2.cfg == CFG
    for (k, a), (_, b) in zip(m.state_dict().items(), m2.state_dict().items()):
        assert torch.equal(a, b), k


def test_shape_mismatch_names_both_shapes(hub_checkpoint):
    _, path = hub_checkpoint
    with pytest.raises(TunejudgeError, match=r"wte.weight has shape \(50257, 64\) .* expects \(50257, 128\)"):
        load_model(path, config_for("gpt2-tiny", n_ctx=64, n_layer=3))


def test_unknown_size_and_bad_file(tmp_path):
    with pytest.raises(TunejudgeError, match="unknown GPT-2 size 'gpt3'"):
        config_for("gpt3")
    bad = tmp_path / "x.safetensors"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(TunejudgeError, match="not a readable safetensors checkpoint"):
        load_model(bad, CFG)


def test_chunked_loss_equals_full_cross_entropy():
    torch.manual_seed(0)
    m = GPT2(CFG).double()
    ids = torch.randint(0, CFG.vocab_size, (2, 10))
    tgt = torch.randint(0, CFG.vocab_size, (2, 10))
    tgt[0, :4] = -100
    full = torch.nn.functional.cross_entropy(m(ids).flatten(0, 1), tgt.flatten(), ignore_index=-100)
    chunked = m.loss(ids, tgt, chunk_tokens=3)
    assert torch.allclose(full, chunked)
    chunked.backward()
    g1 = m.wte.weight.grad.clone()
    m.zero_grad()
    full.backward()
    assert torch.allclose(g1, m.wte.weight.grad)
