"""GPT-2 in PyTorch, written for tunejudge.

Causal attention through ``scaled_dot_product_attention``, tied input/output embeddings, a
preallocated KV cache for decoding, optional activation checkpointing, and a loss that computes
logits only where there is a target, in chunks (the vocabulary projection dominates memory).
The network only: checkpoints and the Hub's weights are :mod:`.weights`, decoding :mod:`.decode`,
the device :mod:`tunejudge.models.device`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from ...errors import TunejudgeError
from . import kernels


@dataclass(frozen=True)
class GPTConfig:
    vocab_size: int = 50257
    n_ctx: int = 1024
    n_embd: int = 768
    n_layer: int = 12
    n_head: int = 12
    dropout: float = 0.0
    layer_norm_eps: float = 1e-5

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head


SIZES: dict[str, GPTConfig] = {
    "gpt2": GPTConfig(n_embd=768, n_layer=12, n_head=12),
    "gpt2-medium": GPTConfig(n_embd=1024, n_layer=24, n_head=16),
    "gpt2-large": GPTConfig(n_embd=1280, n_layer=36, n_head=20),
    "gpt2-xl": GPTConfig(n_embd=1600, n_layer=48, n_head=25),
    # small GPT-2-shaped model for the offline default and tests (real vocabulary and tokenizer)
    "gpt2-tiny": GPTConfig(n_embd=128, n_layer=4, n_head=4, n_ctx=512),
}


def config_for(size: str, **overrides) -> GPTConfig:
    if size not in SIZES:
        raise TunejudgeError(f"unknown GPT-2 size {size!r} (known: {', '.join(SIZES)})")
    return replace(SIZES[size], **overrides)


_SKINNY_ROWS = 32


def _linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.linear``, fast for the handful of rows decoding feeds on a CPU.

    Up to 8 rows in float32: tunejudge's native kernel (:mod:`tunejudge.models.gpt2.kernels`), which reads the
    weights at close to the memory's speed. Up to 32 rows (or without the kernel): ``(W @ x^T)^T``,
    since CPU BLAS (MKL) runs the short-and-wide ``x @ W^T`` several times slower than the
    tall-and-skinny ``W @ x^T`` (2.6x for GPT-2's output head). Same numbers up to float rounding;
    the result is contiguous (a transposed view would send attention to its slow path).
    """
    rows = x.numel() // x.shape[-1]
    if x.device.type != "cpu" or rows > _SKINNY_ROWS or torch.is_grad_enabled():
        return F.linear(x, weight, bias)
    if kernels.linear_usable(x, weight, bias):
        return kernels.skinny_linear(x, weight, bias)
    x2 = x.reshape(rows, x.shape[-1])
    y = (torch.addmm(bias[:, None], weight, x2.t()) if bias is not None else weight @ x2.t()).t().contiguous()
    return y.reshape(*x.shape[:-1], weight.shape[0])


class KVCache:
    """Preallocated keys and values for every layer: (layers, batch, heads, max_len, head_dim).

    ``starts`` (optional, int64 (batch,)): where each row's real tokens begin, the positions before
    being left padding. With it a decoding step on a CPU attends over each row's own positions only
    (:func:`tunejudge.models.gpt2.kernels.decode_attention`) instead of masking the padding.
    """

    def __init__(self, cfg: GPTConfig, batch: int, max_len: int, device, dtype, starts: torch.Tensor | None = None):
        shape = (cfg.n_layer, batch, cfg.n_head, max_len, cfg.head_dim)
        self.k = torch.empty(shape, device=device, dtype=dtype)
        self.v = torch.empty(shape, device=device, dtype=dtype)
        # positions are written before they are read, except a packed row's padding before its start,
        # which a masked attention still multiplies by zero: a NaN left there in freed memory would
        # poison its output (0 x NaN), so the padding is zeroed (all of it when starts are unknown)
        for r, start in enumerate(starts.tolist() if starts is not None else [max_len] * batch):
            self.k[:, r, :, :start] = 0
            self.v[:, r, :, :start] = 0
        self.length = 0
        self.max_len = max_len
        self.starts = starts

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t = k.shape[2]
        end = self.length + t
        if end > self.max_len:
            raise TunejudgeError(f"KV cache full: {end} positions > {self.max_len}")
        self.k[layer, :, :, self.length : end] = k
        self.v[layer, :, :, self.length : end] = v
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]

    def attend(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask) -> torch.Tensor:
        """Store the new keys and values, then attend: the native kernel for one new token per row
        when the rows' starts are known, else SDPA with ``mask``."""
        end = self.length + k.shape[2]
        if self.starts is not None and kernels.attention_usable(q, self.k):
            self.update(layer, k, v)
            return kernels.decode_attention(q, self.k[layer], self.v[layer], self.starts, end)
        k, v = self.update(layer, k, v)  # no mask: a first chunk (nothing cached before), causal
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None)

    def packed(self, rows: list[tuple[int, int, int]]) -> _PackedPrefill:
        """A cache for prompts concatenated into one sequence: ``rows`` lists, per prompt, its cache
        row, the offset of its first token in that row and its length (prompts in sequence order)."""
        return _PackedPrefill(self, rows)


class _PackedPrefill:
    """Prefill without padding: all prompts as one sequence, so every matrix product runs once on
    all their tokens; each prompt attends causally to itself only and its keys and values go to its
    own cache row at its own offset."""

    def __init__(self, cache: KVCache, rows: list[tuple[int, int, int]]):
        self.cache, self.rows, self.length = cache, rows, 0

    def attend(self, layer, q, k, v, mask=None):
        c, out, a = self.cache, torch.empty_like(q), 0
        for r, offset, n in self.rows:
            kk, vv = k[:, :, a : a + n], v[:, :, a : a + n]
            c.k[layer, r : r + 1, :, offset : offset + n] = kk
            c.v[layer, r : r + 1, :, offset : offset + n] = vv
            out[:, :, a : a + n] = F.scaled_dot_product_attention(q[:, :, a : a + n], kk, vv, is_causal=True)
            a += n
        return out


class Attention(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.cfg = cfg
        self.c_attn = nn.Linear(cfg.n_embd, 3 * cfg.n_embd)
        self.c_proj = nn.Linear(cfg.n_embd, cfg.n_embd)
        self.resid_drop = nn.Dropout(cfg.dropout)

    def forward(self, x, mask=None, cache: KVCache | None = None, layer: int = 0):
        b, t, c = x.shape
        h, d = self.cfg.n_head, self.cfg.head_dim
        q, k, v = _linear(x, self.c_attn.weight, self.c_attn.bias).split(c, dim=2)
        q, k, v = (z.view(b, t, h, d).transpose(1, 2) for z in (q, k, v))
        drop = self.cfg.dropout if self.training else 0.0
        if cache is not None:
            y = cache.attend(layer, q, k, v, mask)
        elif mask is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=drop)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=drop)
        y = y.transpose(1, 2).contiguous().view(b, t, c)
        return self.resid_drop(_linear(y, self.c_proj.weight, self.c_proj.bias))


class MLP(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(cfg.n_embd, 4 * cfg.n_embd)
        self.c_proj = nn.Linear(4 * cfg.n_embd, cfg.n_embd)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x):
        h = F.gelu(_linear(x, self.c_fc.weight, self.c_fc.bias), approximate="tanh")
        return self.drop(_linear(h, self.c_proj.weight, self.c_proj.bias))


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.n_embd, eps=cfg.layer_norm_eps)
        self.attn = Attention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.n_embd, eps=cfg.layer_norm_eps)
        self.mlp = MLP(cfg)

    def forward(self, x, mask=None, cache=None, layer=0):
        x = x + self.attn(self.ln_1(x), mask, cache, layer)
        return x + self.mlp(self.ln_2(x))


class GPT2(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.cfg = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.wpe = nn.Embedding(cfg.n_ctx, cfg.n_embd)
        self.drop = nn.Dropout(cfg.dropout)
        self.h = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.n_embd, eps=cfg.layer_norm_eps)
        self.gradient_checkpointing = False
        self.apply(self._init_weights)
        for name, p in self.named_parameters():  # GPT-2's scaled init of residual projections
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layer))

    @staticmethod
    def _init_weights(m):
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())  # wte counted once: the head is tied

    def hidden_states(self, idx, attention_mask=None, position_ids=None, cache: KVCache | None = None):
        """Final hidden states (after ln_f). ``attention_mask``: (B, S) 1 = real token, over cache + new."""
        b, t = idx.shape
        past = cache.length if cache is not None else 0
        if past + t > self.cfg.n_ctx and position_ids is None:
            raise TunejudgeError(f"sequence of {past + t} tokens is longer than the context ({self.cfg.n_ctx})")
        if position_ids is None:
            position_ids = torch.arange(past, past + t, device=idx.device).unsqueeze(0)
        x = self.drop(self.wte(idx) + self.wpe(position_ids))
        mask = None
        if attention_mask is not None or past > 0:
            mask = _attn_mask(attention_mask, b, t, past, idx.device)
        for i, block in enumerate(self.h):
            if self.gradient_checkpointing and self.training and cache is None:
                x = checkpoint(block, x, mask, use_reentrant=False)
            else:
                x = block(x, mask, cache, i)
        if cache is not None:
            cache.length += t
        return self.ln_f(x)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return _linear(hidden, self.wte.weight)  # tied output head

    def forward(self, idx, attention_mask=None, position_ids=None, cache: KVCache | None = None):
        return self.logits(self.hidden_states(idx, attention_mask, position_ids, cache))

    def loss(self, idx, targets, attention_mask=None, chunk_tokens: int = 4096, reduction: str = "mean"):
        """Cross-entropy over positions whose target is not -100, logits computed per chunk.

        Only target positions reach the vocabulary projection (padding never does), and each
        chunk's logits are recomputed in the backward pass instead of being kept: peak memory of
        the head is one chunk, not batch x length x vocabulary.
        """
        h = self.hidden_states(idx, attention_mask)
        keep = targets != -100
        h, y = h[keep], targets[keep]
        total = h.new_zeros((), dtype=torch.promote_types(h.dtype, torch.float32))
        for s in range(0, y.numel(), chunk_tokens):
            hs, ys = h[s : s + chunk_tokens], y[s : s + chunk_tokens]
            if torch.is_grad_enabled():
                total = total + checkpoint(_chunk_ce, hs, self.wte.weight, ys, use_reentrant=False)
            else:
                total = total + _chunk_ce(hs, self.wte.weight, ys)
        if reduction == "sum":
            return total
        return total / max(y.numel(), 1)


def _chunk_ce(h, w, y):
    logits = F.linear(h, w)
    return F.cross_entropy(logits.to(torch.promote_types(logits.dtype, torch.float32)), y, reduction="sum")


def _attn_mask(attention_mask, b, t, past, device):
    """Boolean (B, 1, T, S) mask: causal, padding keys hidden; a padding query sees itself."""
    s = past + t
    q_pos = torch.arange(past, s, device=device).unsqueeze(1)
    k_pos = torch.arange(s, device=device).unsqueeze(0)
    causal = (k_pos <= q_pos).unsqueeze(0).unsqueeze(0)  # (1, 1, T, S)
    if attention_mask is None:
        return causal.expand(b, 1, t, s)
    keys = attention_mask[:, None, None, :s].bool()
    mask = causal & keys
    return mask | (k_pos == q_pos).unsqueeze(0).unsqueeze(0)  # rows of pure padding stay finite
