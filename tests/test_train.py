"""Training: loss bookkeeping, batching, resume to identical weights, refusing bad resume states."""

import json

import pytest
import torch

from tunejudge.errors import ConfigError, TunejudgeError
from tunejudge.model import GPT2, GPTConfig
from tunejudge.records import make_record
from tunejudge.train import (
    IGNORE,
    TrainConfig,
    collate,
    encode_examples,
    epoch_batches,
    padding_fraction,
    train,
)

CFG = GPTConfig(vocab_size=50257, n_ctx=128, n_embd=32, n_layer=2, n_head=2)


def records(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        words = int(torch.randint(1, 30, (1,), generator=g))
        out.append(make_record(f"Repeat item {i}.", " ".join(["alpha", "beta"] * words), f"item {i} done", "t"))
    return out


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return GPT2(CFG)


TC = dict(epochs=2, batch_size=8, micro_batch_size=4, lr=1e-3, eval_every=2, checkpoint_every=3, device="cpu")


def test_epoch_batches_are_a_function_of_seed_and_epoch():
    lengths = [5, 50, 7, 48, 6, 52, 9, 47] * 10
    a = epoch_batches(lengths, 4, 1, 0, True, 5)
    assert a == epoch_batches(lengths, 4, 1, 0, True, 5)
    assert a != epoch_batches(lengths, 4, 1, 1, True, 5)
    assert sorted(i for b in a for i in b) == list(range(len(lengths)))
    plain = epoch_batches(lengths, 4, 1, 0, False, 5)
    assert padding_fraction(a, lengths) < padding_fraction(plain, lengths) / 2


def test_collate_masks_padding_and_optionally_the_prompt(enc):
    ex, _ = encode_examples(records(3), enc, 128, "truncate")
    x, y = collate(ex, mask_prompt=False, device="cpu")
    for r, e in enumerate(ex):
        n = len(e.ids) - 1
        assert (y[r, n:] == IGNORE).all() and (y[r, :n] != IGNORE).all()
        assert y[r, n - 1] == 50256  # the model learns to stop
    _, ym = collate(ex, mask_prompt=True, device="cpu")
    for r, e in enumerate(ex):
        assert (ym[r, : e.prompt_len - 1] == IGNORE).all() and (ym[r, e.prompt_len - 1 :][: 2] != IGNORE).all()


def test_truncate_or_drop_long_examples(enc):
    recs = [make_record("Say it.", "word " * 200, "ok", "t"), make_record("Hi.", "", "Hello", "t")]
    ex, c = encode_examples(recs, enc, 64, "truncate")
    assert c["truncated"] == 1 and len(ex[0].ids) == 65
    ex, c = encode_examples(recs, enc, 64, "drop")
    assert c["dropped"] == 1 and len(ex) == 1


def test_accumulation_equals_one_big_batch(enc):
    """micro-batch 2 x 4 accumulation steps gives the same update as one batch of 8."""
    recs = records(8)
    m1, m2 = tiny_model(), tiny_model()
    base = dict(TC, epochs=1, length_grouped=False)
    train(m1, recs, [], enc, TrainConfig.from_dict(dict(base, micro_batch_size=8)), progress=False)
    train(m2, recs, [], enc, TrainConfig.from_dict(dict(base, micro_batch_size=2)), progress=False)
    for (k, a), (_, b) in zip(m1.state_dict().items(), m2.state_dict().items()):
        assert torch.allclose(a, b, atol=1e-6), k


def test_val_loss_falls(enc):
    res = train(tiny_model(), records(32), records(8, seed=1), enc, TrainConfig.from_dict(dict(TC, epochs=3)),
                progress=False)
    vals = [e["val_loss"] for e in res.history["evaluations"]]
    assert vals[-1] < vals[0]
    assert res.history["final_val_loss"] == vals[-1]
    ev = res.history["evaluations"]
    assert [e["step"] for e in ev] == sorted(e["step"] for e in ev) and ev[-1]["epoch"] == 3.0
    assert all(b["tokens_seen"] > a["tokens_seen"] for a, b in zip(ev, ev[1:]))


def test_resume_gives_identical_weights(enc, tmp_path):
    recs, val = records(40), records(8, seed=1)
    tc = TrainConfig.from_dict(TC)
    whole = tiny_model()
    ref = train(whole, recs, val, enc, tc, resume_dir=tmp_path / "a", progress=False)

    interrupted = tiny_model()
    part = train(interrupted, recs, val, enc, tc, resume_dir=tmp_path / "b", progress=False, stop_after_steps=4)
    assert not part.completed and (tmp_path / "b" / "state.pt").exists()  # state of step 3 kept
    resumed = tiny_model()  # a fresh process: new model, state from disk
    res = train(resumed, recs, val, enc, tc, resume_dir=tmp_path / "b", progress=False)
    assert res.completed
    for (k, a), (_, b) in zip(whole.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), k
    assert json.dumps(res.history) == json.dumps(ref.history)


def interrupted_state(enc, tmp_path, recs):
    train(tiny_model(), recs, [], enc, TrainConfig.from_dict(TC), resume_dir=tmp_path, progress=False,
          stop_after_steps=4)
    return tmp_path / "state.pt"


def test_corrupt_resume_state_stops_and_is_kept(enc, tmp_path):
    recs = records(40)
    state = interrupted_state(enc, tmp_path, recs)
    state.write_bytes(state.read_bytes()[:1000])
    with pytest.raises(TunejudgeError, match="resume state cannot be read.*left in place"):
        train(tiny_model(), recs, [], enc, TrainConfig.from_dict(TC), resume_dir=tmp_path, progress=False)
    assert state.stat().st_size == 1000


def test_shape_mismatched_resume_state_names_shapes(enc, tmp_path):
    recs = records(40)
    state = interrupted_state(enc, tmp_path, recs)
    saved = torch.load(state, weights_only=True)
    saved["model"]["wpe.weight"] = torch.zeros(64, 32)
    torch.save(saved, state)
    with pytest.raises(TunejudgeError, match=r"wpe.weight has shape \(64, 32\) .* expects \(128, 32\)"):
        train(tiny_model(), recs, [], enc, TrainConfig.from_dict(TC), resume_dir=tmp_path, progress=False)
    assert state.exists()


def test_resume_state_of_other_data_is_refused(enc, tmp_path):
    interrupted_state(enc, tmp_path, records(40))
    with pytest.raises(TunejudgeError, match="belongs to another training set-up"):
        train(tiny_model(), records(41), [], enc, TrainConfig.from_dict(TC), resume_dir=tmp_path, progress=False)


def test_config_errors():
    with pytest.raises(ConfigError, match="micro_batch_size 3 must divide"):
        TrainConfig.from_dict({"micro_batch_size": 3})
    with pytest.raises(ConfigError, match="unknown key 'learning_rate'"):
        TrainConfig.from_dict({"learning_rate": 1})
    with pytest.raises(ConfigError, match="needs train.memory_budget_gb"):
        from tunejudge.train import choose_micro_batch

        choose_micro_batch(CFG, TrainConfig.from_dict({"micro_batch_size": "auto"}), 100, 4)


def test_auto_micro_batch_fits_the_budget():
    from tunejudge.model import config_for
    from tunejudge.train import choose_micro_batch, estimate_step_bytes

    cfg = config_for("gpt2-medium")
    tc = TrainConfig.from_dict({"micro_batch_size": "auto", "memory_budget_gb": 8, "gradient_checkpointing": True})
    micro = choose_micro_batch(cfg, tc, 1024, 2)
    assert 1 <= micro <= 8 and 8 % micro == 0
    assert estimate_step_bytes(cfg, micro, 1024, act_bytes=2, checkpointing=True, chunk_tokens=4096) <= 8 * 2**30
