"""Batched KV-cached greedy decoding gives exactly the tokens of the naive full-recompute loop."""

import pytest
import torch

from tunejudge.data.records import make_record
from tunejudge.errors import TunejudgeError
from tunejudge.models.gpt2.decode import GenerationStats, greedy_generate, naive_greedy
from tunejudge.models.gpt2.lm import GPT2LM
from tunejudge.models.gpt2.model import GPT2, GPTConfig
from tunejudge.models.respond import respond

CFG = GPTConfig(vocab_size=50257, n_ctx=96, n_embd=64, n_layer=2, n_head=4)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return GPT2(CFG).double().eval()  # float64: no near-tie can flip an argmax between the two paths


def prompts():
    g = torch.Generator().manual_seed(3)
    return [torch.randint(0, 50000, (n,), generator=g).tolist() for n in (5, 17, 1, 40, 9, 23, 2)]


@pytest.mark.parametrize("prefill", ["padded", "packed"])
def test_batched_kv_equals_naive_prompt_by_prompt(model, prefill):
    ps = prompts()
    got = greedy_generate(model, ps, 20, batch_size=3, eos_id=None, prefill=prefill)
    for p, g in zip(ps, got):
        assert g == naive_greedy(model, p, 20, eos_id=None)
        assert len(g) == 20


def test_stop_at_eos_per_sequence(model):
    """Force EOS for one prompt only: that sequence stops, the others go on."""
    ps = prompts()[:3]
    first = greedy_generate(model, ps, 10, eos_id=None)
    eos = first[1][4]  # pretend the 5th token of prompt 1 is the stop token
    got = greedy_generate(model, ps, 10, eos_id=eos, pad_id=0)
    ref = [naive_greedy(model, p, 10, eos_id=eos) for p in ps]
    assert got == ref
    assert len(got[1]) <= 4


@pytest.mark.parametrize("prefill", ["padded", "packed"])
def test_memory_left_dirty_by_earlier_work_changes_no_token(model, prefill, monkeypatch):
    """Freed memory may hold NaN: a cache allocated uninitialised (torch.empty) let it into the
    attention of a packed batch's short rows (the tokens depended on what ran before in the process)."""
    import tunejudge.models.gpt2.model as M

    real_empty = torch.empty
    monkeypatch.setattr(M.torch, "empty", lambda *a, **k: real_empty(*a, **k).fill_(float("nan")))
    ps = prompts()
    got = greedy_generate(model, ps, 8, batch_size=4, eos_id=None, prefill=prefill)
    monkeypatch.undo()
    assert got == [naive_greedy(model, p, 8, eos_id=None) for p in ps]


def test_long_prompt_is_left_truncated_and_counted(model):
    long = list(range(1000, 1000 + 120))
    stats = GenerationStats()
    got = greedy_generate(model, [long, [5, 6]], 16, eos_id=None, stats=stats)
    assert stats.clipped == 1 and stats.prompts == 2
    assert got[0] == naive_greedy(model, long[-(CFG.n_ctx - 16) :], 16, eos_id=None)


def test_bad_bounds(model):
    with pytest.raises(TunejudgeError, match="max_new_tokens"):
        greedy_generate(model, [[1]], CFG.n_ctx)
    with pytest.raises(TunejudgeError, match="empty prompt"):
        greedy_generate(model, [[]], 4)


def test_respond_formats_and_extracts(model, enc):
    recs = [make_record("Name a color.", "", "Red", "s"), make_record("Classify.", "great film", "Positive", "s")]
    answers, stats = respond(GPT2LM(model.float(), enc), recs, max_new_tokens=8, batch_size=2, progress=False)
    model.double()
    assert len(answers) == 2 and all(isinstance(a, str) for a in answers)
    assert stats.prompts == 2 and stats.new_tokens <= 16
