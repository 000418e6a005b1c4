"""The contract every model family keeps: what the trainer and the responder may ask of a model.

A :class:`CausalLM` is a network plus its tokenizer and its quirks (BOS, EOS, padding, prompt format,
the output head): the trainer and the responder call only these methods, never ``if family == ...``.

- tokens: ``encode`` / ``decode`` / ``encode_with_offsets`` (no special tokens), ``prompt_ids``
  (the prompt the model answers: BOS where the family wants it, the study's Alpaca prompt or the
  tokenizer's chat template) and ``example_ids`` (prompt + answer + the end token the model must learn
  to emit: EOS, or the chat template's end of turn);
- compute: ``loss`` (summed cross-entropy over target positions, the vocabulary projection in
  checkpointed chunks), ``generate`` (greedy, batched, KV-cached, stopping at ``stop_ids``);
- state: ``trainable_state`` / ``load_trainable_state`` (what a resume state holds: every weight for
  full fine-tuning, the adapter for LoRA), ``export`` (a folder ``from_pretrained`` loads).
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..data.prompt import format_example, format_prompt
from ..errors import TunejudgeError

IGNORE = -100


@dataclass
class GenerationStats:
    prompts: int = 0
    truncated: int = 0  # prompts whose input was shortened to fit the context (generation's length policy)
    clipped: int = 0  # prompts left-truncated: even without their input they did not fit
    prompt_tokens: int = 0
    new_tokens: int = 0


def chunked_cross_entropy(hidden: torch.Tensor, targets: torch.Tensor, weight: torch.Tensor, chunk_tokens: int,
                          logits_fn=None) -> torch.Tensor:
    """Summed cross-entropy of ``hidden @ weight.T`` against ``targets`` (rows with a target only),
    ``chunk_tokens`` rows at a time, each chunk's logits recomputed in the backward pass rather than
    kept: the head's peak memory is one chunk, not tokens x vocabulary. ``logits_fn`` post-processes
    a chunk's logits (a family's soft-capping or scaling)."""
    total = hidden.new_zeros((), dtype=torch.promote_types(hidden.dtype, torch.float32))
    for s in range(0, targets.numel(), chunk_tokens):
        hs, ys = hidden[s : s + chunk_tokens], targets[s : s + chunk_tokens]
        if torch.is_grad_enabled():
            total = total + checkpoint(_chunk_ce, hs, weight, ys, logits_fn, use_reentrant=False)
        else:
            total = total + _chunk_ce(hs, weight, ys, logits_fn)
    return total


def chunked_token_logprobs(hidden: torch.Tensor, targets: torch.Tensor, weight: torch.Tensor, chunk_tokens: int,
                           logits_fn=None) -> torch.Tensor:
    """Log-probability of each target (rows with a target only), the vocabulary projection in checkpointed
    chunks as in :func:`chunked_cross_entropy` (one chunk's logits at a time, recomputed backward)."""
    parts = []
    for s in range(0, targets.numel(), chunk_tokens):
        hs, ys = hidden[s : s + chunk_tokens], targets[s : s + chunk_tokens]
        if torch.is_grad_enabled():
            parts.append(checkpoint(_chunk_logp, hs, weight, ys, logits_fn, use_reentrant=False))
        else:
            parts.append(_chunk_logp(hs, weight, ys, logits_fn))
    if not parts:
        return hidden.new_zeros((0,), dtype=torch.promote_types(hidden.dtype, torch.float32))
    return torch.cat(parts)


def _chunk_logp(h, w, y, logits_fn=None):
    logits = F.linear(h, w)
    if logits_fn is not None:
        logits = logits_fn(logits)
    return -F.cross_entropy(logits.to(torch.promote_types(logits.dtype, torch.float32)), y, reduction="none")


def _chunk_ce(h, w, y, logits_fn=None):
    logits = F.linear(h, w)
    if logits_fn is not None:
        logits = logits_fn(logits)
    return F.cross_entropy(logits.to(torch.promote_types(logits.dtype, torch.float32)), y, reduction="sum")


class CausalLM(ABC):
    family: str
    module: nn.Module  # the network the optimizer trains (its parameters with requires_grad)
    context_length: int
    eos_ids: tuple[int, ...]  # the first one ends every training example
    pad_id: int
    prompt_style: str = "alpaca"
    add_bos: bool = False
    bos_id: int | None = None

    # ---------------------------------------------------------------- tokens
    @abstractmethod
    def encode(self, text: str) -> list[int]:
        """Token ids of plain text, no special tokens added."""

    @abstractmethod
    def decode(self, ids: list[int]) -> str:
        """Text of token ids, special tokens left out."""

    @abstractmethod
    def encode_with_offsets(self, text: str) -> tuple[list[int], list[int]]:
        """(ids, the character offset where each token starts in ``text``)."""

    @property
    def stop_ids(self) -> tuple[int, ...]:
        """Tokens that end an answer: EOS, and a chat template's end of turn."""
        return self.eos_ids

    def bos_ids(self) -> list[int]:
        """What every sequence starts with: BOS where the family adds it, else nothing."""
        return [self.bos_id] if self.add_bos and self.bos_id is not None else []

    def prompt_ids(self, record: dict) -> list[int]:
        """What the model is asked: the study's Alpaca prompt (BOS first where the family wants it)."""
        return self.bos_ids() + self.encode(format_prompt(record))

    def example_ids(self, record: dict) -> tuple[list[int], int]:
        """(prompt + answer + EOS, prompt length) of one training example."""
        return self.bos_ids() + self.encode(format_example(record)) + [self.eos_ids[0]], \
            len(self.prompt_ids(record))

    def example_length(self, record: dict) -> int:
        return len(self.example_ids(record)[0])

    # ---------------------------------------------------------------- compute
    @abstractmethod
    def loss(self, x: torch.Tensor, y: torch.Tensor, *, chunk_tokens: int = 4096) -> torch.Tensor:
        """Summed cross-entropy over the positions whose target is not IGNORE."""

    @abstractmethod
    def hidden_and_head(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, object]:
        """(last hidden states (B, T, H), the output head's weight (V, H), a post-processing of the logits or
        None): what :meth:`sequence_logprobs` projects, chunk by chunk."""

    def sequence_logprobs(self, x: torch.Tensor, y: torch.Tensor, *, chunk_tokens: int = 4096) -> torch.Tensor:
        """Per row of ``x`` (B, T), the summed log-probability of its targets ``y`` (positions not IGNORE):
        what preference losses compare (a completion's log-likelihood under the policy or the reference)."""
        hidden, weight, logits_fn = self.hidden_and_head(x)
        keep = y != IGNORE
        rows = torch.arange(y.size(0), device=y.device).unsqueeze(1).expand_as(y)[keep]
        token = chunked_token_logprobs(hidden[keep], y[keep], weight, chunk_tokens, logits_fn)
        return torch.zeros(y.size(0), dtype=token.dtype, device=token.device).index_add(0, rows, token)

    @abstractmethod
    def generate(self, prompts: list[list[int]], max_new_tokens: int, *, batch_size: int = 8, progress=None,
                 stats: GenerationStats | None = None, choose=None) -> list[list[int]]:
        """New tokens (without the stop token) for every prompt, in the order given: greedy, or picked by
        ``choose`` (rows of ``prompts`` in a batch -> the step's picker over their logits: seeded sampling,
        :mod:`.sampling`)."""

    @abstractmethod
    def set_gradient_checkpointing(self, on: bool) -> None: ...

    def shape(self) -> dict:
        """What the training memory estimate needs: vocab, hidden, layers, parameters, trainable."""
        return {"parameters": self.num_parameters(), "trainable": self.num_trainable()}

    # ---------------------------------------------------------------- state
    def num_parameters(self) -> int:
        seen, n = set(), 0
        for p in self.module.parameters():  # tied weights once
            if id(p) not in seen:
                seen.add(id(p))
                n += p.numel()
        return n

    def num_trainable(self) -> int:
        return sum(p.numel() for p in self.module.parameters() if p.requires_grad)

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """The weights training changes (all of them, or the adapter's), for a resume state."""
        return {n: p.detach() for n, p in self.module.named_parameters() if p.requires_grad}

    def load_trainable_state(self, state: dict, where) -> None:
        own = dict(self.module.named_parameters())
        names = {n for n, p in own.items() if p.requires_grad}
        missing, unexpected = sorted(names - set(state)), sorted(set(state) - names)
        if missing or unexpected:
            raise TunejudgeError(f"{where}: the saved weights do not fit this model (missing {missing[:3]}, "
                                 f"unexpected {unexpected[:3]})")
        for n in names:
            if tuple(state[n].shape) != tuple(own[n].shape):
                raise TunejudgeError(f"{where}: tensor {n} has shape {tuple(state[n].shape)}, the model "
                                     f"{tuple(own[n].shape)}")
        with torch.no_grad():
            for n in names:
                own[n].copy_(state[n])

    def blocks(self) -> list[nn.Module]:
        """The network's repeated blocks (transformer layers): what FSDP2 shards one by one."""
        layers = [m for m in self.module.modules() if isinstance(m, nn.ModuleList)]
        if not layers:
            raise TunejudgeError(f"{self.family}: no list of blocks to shard")
        return list(max(layers, key=lambda ml: sum(p.numel() for p in ml.parameters())))

    def reference(self):
        """A context in which the model is the reference of preference tuning: the model before this training.
        Here the weights as they are (correct before the first update); a LoRA family disables its adapter."""
        return contextlib.nullcontext()

    def to(self, device=None, dtype=None) -> CausalLM:
        self.module.to(device=device, dtype=dtype)
        return self

    @property
    def device(self) -> torch.device:
        return next(self.module.parameters()).device

    @abstractmethod
    def export(self, folder, card: dict) -> None:
        """Write a folder that ``AutoModelForCausalLM``/``AutoTokenizer.from_pretrained`` load, with a
        model card (``README.md``) from ``card``."""

    @abstractmethod
    def describe(self) -> dict:
        """The family's facts for logs and model cards: class, parameters, tokenizer's BOS/EOS/pad."""
