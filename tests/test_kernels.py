"""The native decoding kernels: built with the machine's compiler, equal to torch, and torch when not."""

from __future__ import annotations

import shutil

import pytest
import torch
import torch.nn.functional as F

from tunejudge.models.gpt2 import kernels
from tunejudge.models.gpt2.decode import greedy_generate, naive_greedy
from tunejudge.models.gpt2.model import GPT2, config_for

needs_cc = pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler")


@pytest.fixture
def fresh_kernels(monkeypatch, tmp_path):
    """Kernels loaded anew (own cache directory, environment as the test sets it), then as before."""
    monkeypatch.setenv(kernels.CACHE_ENV, str(tmp_path / "kernels"))
    monkeypatch.delenv(kernels.DISABLE_ENV, raising=False)
    saved = dict(kernels._state)
    kernels._state.clear()
    yield tmp_path / "kernels"
    kernels._state.clear()
    kernels._state.update(saved)


@needs_cc
def test_built_once_into_the_cache_and_reused(fresh_kernels):
    assert kernels.status().startswith("on: ")
    built = list(fresh_kernels.glob("decode-*.so"))
    assert len(built) == 1 and kernels._state["why"] == str(built[0])
    mtime = built[0].stat().st_mtime_ns
    kernels._state.clear()
    assert kernels.status() == f"on: {built[0]}"
    assert built[0].stat().st_mtime_ns == mtime  # loaded, not rebuilt
    assert not [p for p in fresh_kernels.iterdir() if p.name.startswith(".")]  # no temporary file left


@needs_cc
@pytest.mark.parametrize("rows", range(1, kernels.MAX_ROWS + 1))
@pytest.mark.parametrize("bias", [True, False])
def test_skinny_linear_equals_torch(fresh_kernels, rows, bias):
    g = torch.Generator().manual_seed(rows)
    x = torch.randn(rows, 1, 200, generator=g)  # 200: a tail after 12 vectors of 16
    w = torch.randn(301, 200, generator=g)  # 301 rows: tails for every row blocking
    b = torch.randn(301, generator=g) if bias else None
    with torch.no_grad():
        assert kernels.linear_usable(x, w, b)
        got = kernels.skinny_linear(x, w, b)
    assert got.shape == (rows, 1, 301) and got.is_contiguous()
    torch.testing.assert_close(got, F.linear(x, w, b), rtol=1e-5, atol=1e-5)


@needs_cc
def test_decode_attention_reads_each_row_from_its_start(fresh_kernels):
    g = torch.Generator().manual_seed(0)
    b, h, d, max_len, end = 4, 3, 64, 12, 10
    q = torch.randn(b, h, 1, d, generator=g)
    k, v = (torch.randn(b, h, max_len, d, generator=g) for _ in range(2))
    starts = torch.tensor([0, 3, 9, 5])
    mask = (torch.arange(end)[None, :] >= starts[:, None])[:, None, None, :]
    want = F.scaled_dot_product_attention(q, k[:, :, :end], v[:, :, :end], attn_mask=mask)
    k_before = k.clone()
    k[:, :, :3] = float("nan")  # row 0 reads these; the others start later and must not
    with torch.no_grad():
        got = kernels.decode_attention(q, k, v, starts, end)
    assert torch.isnan(got[0]).all()
    torch.testing.assert_close(got[1:], want[1:], rtol=1e-5, atol=1e-6)
    k.copy_(k_before)
    with pytest.raises(RuntimeError, match="failed"):
        kernels.decode_attention(q, k, v, torch.tensor([0, 3, 10, 5]), end)  # a start at the end
    with pytest.raises(ValueError, match="do not fit"):
        kernels.decode_attention(q, k, v, starts[:3], end)


def test_disabled_by_the_environment(fresh_kernels, monkeypatch):
    monkeypatch.setenv(kernels.DISABLE_ENV, "0")
    assert kernels.status() == f"off: {kernels.DISABLE_ENV}=0"
    with torch.no_grad():
        assert not kernels.linear_usable(torch.zeros(2, 8), torch.zeros(4, 8), None)
    assert not fresh_kernels.exists()


def test_no_compiler_means_torch(fresh_kernels, monkeypatch):
    monkeypatch.setenv("CC", "no-such-compiler-tunejudge")
    assert kernels.status() == "off: no C compiler (cc, or $CC) on PATH"


def test_a_failed_build_means_torch_and_says_why(fresh_kernels, monkeypatch, tmp_path):
    cc = tmp_path / "cc"
    cc.write_text("#!/bin/sh\n[ \"$1\" = --version ] && echo fake 1.0 && exit 0\necho 'fatal: broken toolchain' >&2\nexit 1\n")
    cc.chmod(0o755)
    monkeypatch.setenv("CC", str(cc))
    status = kernels.status()
    assert status.startswith("off: build failed") and "broken toolchain" in status
    assert not list(fresh_kernels.iterdir())  # nothing half-written left in the cache


@needs_cc
def test_a_kernel_that_computes_wrong_is_not_used(fresh_kernels, monkeypatch, tmp_path):
    wrong = tmp_path / "decode.c"
    wrong.write_text(kernels.SOURCE.read_text().replace("+ (bias ? bias[n + r] : 0.f)", "+ (bias ? 2 * bias[n + r] : 0.f)"))
    monkeypatch.setattr(kernels, "SOURCE", wrong)
    status = kernels.status()
    assert status.startswith("off: ") and "computes wrong results (skinny_linear" in status
    with torch.no_grad():
        assert not kernels.linear_usable(torch.zeros(2, 8), torch.zeros(4, 8), None)


@needs_cc
def test_greedy_tokens_equal_with_and_without_the_kernels(fresh_kernels, monkeypatch):
    torch.manual_seed(5)
    model = GPT2(config_for("gpt2-tiny")).eval()
    prompts = [[(7 * i + j) % 5000 + 1 for j in range(n)] for i, n in enumerate((30, 4, 17, 9, 22))]
    assert kernels.status().startswith("on: ")
    on = greedy_generate(model, prompts, 24, batch_size=5, eos_id=None, progress=False)
    naive = [naive_greedy(model, p, 24, eos_id=None) for p in prompts]
    with kernels.disabled():
        assert kernels.status() == "off: disabled for a comparison"
        off = greedy_generate(model, prompts, 24, batch_size=5, eos_id=None, progress=False)
    assert kernels.status().startswith("on: ")
    assert on == off == naive
