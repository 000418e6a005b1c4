"""Native CPU kernels for the decoding step, compiled on first use with the machine's C compiler.

``decode.c`` holds two: ``skinny_linear``, ``x @ W^T + b`` for at most 8 rows of x, which reads the
weights at close to the memory's speed where BLAS reads them at a third of it, and
``decode_attention``, one new token per sequence attending over only its own cached positions
(a masked attention over a left-padded cache reads the padding too). ``bench/generation.py`` shows
what they are worth. The library is built once per source, compiler and CPU into
``$TUNEJUDGE_KERNEL_CACHE`` (default ``~/.cache/tunejudge/kernels``), checked against torch on small
inputs, and loaded with ctypes: no torch headers, about a second to build.

Everything degrades to torch: no compiler, a failed build, a failed check or
``TUNEJUDGE_NATIVE_KERNELS=0`` make :func:`linear_usable` and :func:`attention_usable` false and the
caller runs torch's ops (one log line says why).
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import logging
import os
import platform
import shutil
import socket
import subprocess
import threading
from pathlib import Path

import torch

from ....run.numerics import KERNELS_ENV as DISABLE_ENV
from ....run.numerics import kernels_disabled

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("decode.c")
CACHE_ENV = "TUNEJUDGE_KERNEL_CACHE"
FLAGS = ("-O3", "-march=native", "-shared", "-fPIC", "-std=gnu11")
MAX_ROWS = 8

_lock = threading.Lock()
_state: dict = {}  # "fn": the loaded function or None, "why": why not


def cache_dir() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "tunejudge" / "kernels"


def _cpu_id() -> str:
    """What -march=native compiles for: the CPU's model and feature flags (a shared cache directory
    on a cluster of mixed nodes keeps one build per kind of CPU)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
        lines = [ln for ln in text.splitlines() if ln.startswith(("model name", "flags", "Features", "CPU part"))]
        return "\n".join(dict.fromkeys(lines))
    except OSError:
        return f"{platform.machine()} {platform.processor()}"


def _compiler() -> str | None:
    cc = os.environ.get("CC") or "cc"
    return shutil.which(cc)


def _build(cc: str) -> Path:
    """The compiled library for this source, compiler and CPU, built if the cache lacks it."""
    version = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30).stdout
    source = SOURCE.read_bytes()
    key = hashlib.sha256(b"\0".join([source, " ".join(FLAGS).encode(), version.encode(), _cpu_id().encode()]))
    out = cache_dir() / f"decode-{key.hexdigest()[:16]}.so"
    if out.is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{socket.gethostname()}.{os.getpid()}.tmp")
    errors = []
    try:
        for extra in (("-fopenmp",), ()):  # without OpenMP (clang lacking libomp): one thread
            cmd = [cc, *FLAGS, *extra, "-o", str(tmp), str(SOURCE), "-lm"]
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
            if done.returncode == 0:
                os.replace(tmp, out)  # atomic: a concurrent build on a shared cache writes the same bytes
                return out
            errors.append(f"{' '.join(cmd)}: {done.stderr.strip()[-400:]}")
    finally:
        tmp.unlink(missing_ok=True)
    raise RuntimeError("; ".join(errors))


def _load():
    if kernels_disabled():
        return None, f"{DISABLE_ENV}={os.environ[DISABLE_ENV]}"
    cc = _compiler()
    if cc is None:
        return None, "no C compiler (cc, or $CC) on PATH"
    try:
        path = _build(cc)
        lib = ctypes.CDLL(str(path))
    except Exception as e:  # compiler errors, timeouts, an unwritable cache: all end in torch's path
        return None, f"build failed ({type(e).__name__}: {str(e)[:500]})"
    linear, attention = lib.skinny_linear, lib.decode_attention
    linear.restype = attention.restype = ctypes.c_int
    linear.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p,
                       ctypes.c_void_p, ctypes.c_int64, ctypes.c_int]
    attention.argtypes = [ctypes.c_void_p] * 4 + [ctypes.c_int64] * 4 + [ctypes.c_void_p, ctypes.c_int64,
                                                                         ctypes.c_float, ctypes.c_int]
    fns = {"linear": linear, "attention": attention}
    bad = _self_check(fns)
    if bad:
        return None, f"{path} computes wrong results ({bad})"
    log.debug("native kernels %s loaded", path)
    return fns, str(path)


def _self_check(fns) -> str | None:
    """Compare with torch: every batch size, shapes with row and column tails, ragged attention."""
    g = torch.Generator().manual_seed(0)
    for rows in range(1, MAX_ROWS + 1):
        for n, k in ((67, 40), (130, 768)):
            x, w, b = (torch.randn(s, generator=g) for s in ((rows, k), (n, k), (n,)))
            y = torch.empty(rows, n)
            if fns["linear"](x.data_ptr(), rows, k, w.data_ptr(), b.data_ptr(), y.data_ptr(), n, 1) != 0:
                return f"skinny_linear: error code at {rows} rows"
            want = torch.nn.functional.linear(x, w, b)
            if not torch.allclose(y, want, rtol=1e-4, atol=1e-4):
                return f"skinny_linear {rows} x {k} @ {n} x {k}: max difference {(y - want).abs().max().item():.3g}"
    for d in (64, 20):
        q = torch.randn(3, 2, 1, d, generator=g)
        k, v = (torch.randn(3, 2, 9, d, generator=g) for _ in range(2))
        starts = torch.tensor([0, 4, 6])
        got = torch.empty_like(q)
        if fns["attention"](q.data_ptr(), k.data_ptr(), v.data_ptr(), got.data_ptr(), 3, 2, d, 9,
                            starts.data_ptr(), 7, d**-0.5, 1) != 0:
            return "decode_attention: error code"
        mask = (torch.arange(7)[None, :] >= starts[:, None])[:, None, None, :]
        want = torch.nn.functional.scaled_dot_product_attention(q, k[:, :, :7], v[:, :, :7], attn_mask=mask)
        if not torch.allclose(got, want, rtol=1e-4, atol=1e-5):
            return f"decode_attention (head size {d}): max difference {(got - want).abs().max().item():.3g}"
    return None


def native_fn():
    """The loaded kernel, or None (and why, logged once)."""
    if "fn" not in _state:
        with _lock:
            if "fn" not in _state:
                fn, why = _load()
                if fn is None:
                    log.info("native decoding kernel off: %s; decoding uses torch's matmul", why)
                _state.update(fn=fn, why=why)
    return _state["fn"]


def _loaded() -> dict:
    fns = native_fn()
    if fns is None:
        raise RuntimeError(f"native kernels are off: {_state['why']}")
    return fns


@contextlib.contextmanager
def disabled():
    """Torch's ops only inside the block (a benchmark's or a test's comparison), as before after."""
    native_fn()
    saved = dict(_state)
    _state.update(fn=None, why="disabled for a comparison")
    try:
        yield
    finally:
        _state.clear()
        _state.update(saved)


def path(device: torch.device, dtype: torch.dtype) -> str:
    """The decoding path a GPT-2 on ``device`` in ``dtype`` takes here: ``native`` (these kernels) or
    ``torch`` (torch's ops): recorded in every answers file (greedy answers may differ in the last bits)."""
    return "native" if device.type == "cpu" and dtype == torch.float32 and native_fn() is not None else "torch"


def status() -> str:
    """Where the kernel came from (its library's path) or why it is off, for logs and benchmarks."""
    native_fn()
    return ("on: " if _state["fn"] is not None else "off: ") + _state["why"]


def linear_usable(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> bool:
    rows = x.numel() // x.shape[-1]
    return (
        rows <= MAX_ROWS and x.device.type == "cpu" and x.dtype == torch.float32 == weight.dtype
        and weight.dim() == 2 and weight.shape[1] == x.shape[-1] and weight.is_contiguous()
        and (bias is None or (bias.dtype == torch.float32 and bias.is_contiguous()))
        and not torch.is_grad_enabled() and native_fn() is not None
    )


def skinny_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.linear(x, weight, bias)`` by the native kernel; the caller checks :func:`linear_usable`."""
    k, n = x.shape[-1], weight.shape[0]
    x2 = x.reshape(-1, k).contiguous()
    y = torch.empty(x2.shape[0], n, dtype=x.dtype)
    rc = _loaded()["linear"](x2.data_ptr(), x2.shape[0], k, weight.data_ptr(),
                                bias.data_ptr() if bias is not None else None, y.data_ptr(), n,
                                torch.get_num_threads())
    if rc != 0:
        raise RuntimeError(f"skinny_linear failed on {tuple(x.shape)} @ {tuple(weight.shape)}")
    return y.reshape(*x.shape[:-1], n)


def attention_usable(q: torch.Tensor, k_cache: torch.Tensor) -> bool:
    return (
        q.device.type == "cpu" and q.dtype == torch.float32 == k_cache.dtype and q.shape[2] == 1
        and k_cache.is_contiguous() and not torch.is_grad_enabled() and native_fn() is not None
    )


def decode_attention(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, starts: torch.Tensor,
                     end: int) -> torch.Tensor:
    """Attention of one new token per row over positions ``[starts[b], end)`` of its cache row.

    ``q``: (B, H, 1, D); ``k_cache``, ``v_cache``: one layer, (B, H, max_len, D), contiguous;
    ``starts``: (B,) int64. The caller checks :func:`attention_usable`.
    """
    b, h, _, d = q.shape
    if (starts.dtype != torch.int64 or starts.shape != (b,) or k_cache.shape != v_cache.shape
            or k_cache.shape[:2] != (b, h) or k_cache.shape[3] != d
            or not (k_cache.is_contiguous() and v_cache.is_contiguous())
            or not q.dtype == k_cache.dtype == v_cache.dtype == torch.float32):
        raise ValueError(f"decode_attention: starts {tuple(starts.shape)} {starts.dtype}, caches "
                         f"{tuple(k_cache.shape)} {tuple(v_cache.shape)} do not fit q {tuple(q.shape)}")
    q, starts = q.contiguous(), starts.contiguous()
    out = torch.empty_like(q)
    rc = _loaded()["attention"](q.data_ptr(), k_cache.data_ptr(), v_cache.data_ptr(), out.data_ptr(), b, h, d,
                                   k_cache.shape[2], starts.data_ptr(), end, d**-0.5, torch.get_num_threads())
    if rc != 0:
        raise RuntimeError(f"decode_attention failed (code {rc}) on {tuple(q.shape)} over {end} positions")
    return out
