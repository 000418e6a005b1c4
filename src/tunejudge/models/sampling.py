"""Seeded sampling for every model family: temperature, top-p, k samples per prompt.

Greedy decoding stays the default for answers; sampling is what preference data is made of (k answers
of a model to one prompt, ranked). Every sample draws from a random stream of its own, seeded from the
run's seed, the prompt's tokens and the sample's index: the same prompt gets the same samples whatever
else shares its batch, batched or one prompt at a time, and in any order (a test, both families).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..errors import ConfigError


@dataclass(frozen=True)
class Sampling:
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int = 0

    def __post_init__(self):
        if not self.temperature > 0:
            raise ConfigError(f"sampling: temperature must be above 0 (greedy decoding is the default), got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"sampling: top_p must be in (0, 1], got {self.top_p}")


def stream_seed(seed: int, prompt: list[int], index: int) -> int:
    """The seed of one sample's random stream: the run's seed, the prompt's tokens, the sample's index."""
    h = hashlib.sha256(f"{seed}:{index}:{','.join(map(str, prompt))}".encode()).digest()
    return int.from_bytes(h[:8], "little") & ((1 << 63) - 1)


def generators(sampling: Sampling, prompts: list[list[int]], indices: list[int]) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(stream_seed(sampling.seed, p, i)) for p, i in zip(prompts, indices)]


def pick(logits: torch.Tensor, gens: list[torch.Generator], sampling: Sampling) -> torch.Tensor:
    """One token per row of ``logits`` (B, V): softmax at the temperature, the nucleus of ``top_p`` (the
    most probable tokens until their mass reaches it; the first always), a draw from each row's stream."""
    probs = torch.softmax(logits.float() / sampling.temperature, dim=-1)
    if sampling.top_p < 1.0:
        sorted_p, order = probs.sort(dim=-1, descending=True)
        keep = (sorted_p.cumsum(-1) - sorted_p) < sampling.top_p
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_p * keep)
    probs = probs.cpu()
    toks = [int(torch.multinomial(probs[r], 1, generator=g)) for r, g in enumerate(gens)]
    return torch.tensor(toks, dtype=torch.long, device=logits.device)


def chooser(sampling: Sampling, prompts: list[list[int]], indices: list[int]) -> Callable[[list[int]], Callable]:
    """For a decoder that batches rows of ``prompts`` (by their positions): a function from a batch's rows
    to the step's token picker over that batch's logits."""
    def for_rows(rows: list[int]):
        gens = generators(sampling, [prompts[r] for r in rows], [indices[r] for r in rows])
        return lambda logits: pick(logits, gens, sampling)
    return for_rows


def sample(lm, prompts: list[list[int]], k: int, sampling: Sampling, max_new_tokens: int, *, batch_size: int = 8,
           progress=None) -> list[list[list[int]]]:
    """``k`` sampled continuations (new tokens, without the stop token) of every prompt, through the family's
    own batched decoder (:meth:`CausalLM.generate` with a token picker)."""
    if k < 1:
        raise ConfigError(f"sampling: k must be at least 1, got {k}")
    flat = [p for p in prompts for _ in range(k)]
    index = [j for _ in prompts for j in range(k)]
    new = lm.generate(flat, max_new_tokens, batch_size=batch_size, progress=progress,
                      choose=chooser(sampling, flat, index))
    return [new[i * k:(i + 1) * k] for i in range(len(prompts))]
