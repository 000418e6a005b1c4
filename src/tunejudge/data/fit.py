"""The length policy, in any tokenizer's tokens: curation applies it in GPT-2 tokens, training and
generation again in the tokens of the model that reads the record.

``truncate_input`` cuts a record's input at a token boundary so the whole example fits a budget (an
extractive record, with ``meta.answer_start``, keeps a window of its input around the answer);
``drop`` leaves the record out. What cannot be made to fit is dropped either way, and counted.

A tokenizer here is anything with ``encode_with_offsets(text) -> (ids, character starts)``: tiktoken's
GPT-2 (:class:`TiktokenText`) or a model family (:class:`tunejudge.models.CausalLM`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ..errors import ConfigError

if TYPE_CHECKING:
    import tiktoken

LENGTH_POLICIES = ("drop", "truncate_input")


def check_policy(policy: str, where: str) -> str:
    if policy not in LENGTH_POLICIES:
        raise ConfigError(f"{where}: {policy!r} (one of {', '.join(LENGTH_POLICIES)})")
    return policy


def _piece(text: str, starts: list[int], lo: int, k: int) -> str:
    end = starts[lo + k] if lo + k < len(starts) else len(text)
    return text[starts[lo]:end]


def _window(text: str, starts: list[int], start: int, length: int, k: int) -> str | None:
    """``k`` tokens of ``text`` around the characters [start, start + length), the answer placed as near
    the window's middle as the text's ends allow; None when the answer alone needs more."""
    first = max((i for i, o in enumerate(starts) if o <= start), default=0)
    last = max((i for i, o in enumerate(starts) if o < start + length), default=0)
    if last - first + 1 > k:
        return None
    lo = max(0, min(first - (k - (last - first + 1)) // 2, len(starts) - k))
    piece = _piece(text, starts, lo, k).strip()
    return piece if text[start:start + length] in piece else None


def truncate_input(rec: dict, tok, max_tokens: int, length_of: Callable[[dict], int]) -> dict | None:
    """The record with its input cut to the most tokens that keep ``length_of(record) <= max_tokens``;
    None if even one token of input (or, extractive, the window holding the answer) is too many."""
    text = rec.get("input") or ""
    if not text:
        return None
    ids, starts = tok.encode_with_offsets(text)
    answer_start = (rec.get("meta") or {}).get("answer_start")

    def cut(k: int) -> dict | None:
        if answer_start is None:
            piece = _piece(text, starts, 0, k).rstrip()
        else:
            piece = _window(text, starts, answer_start, len(rec["output"]), k)
            if piece is None:
                return None
        out = dict(rec, input=piece)
        if answer_start is not None:
            out["meta"] = dict(rec["meta"], answer_start=piece.find(rec["output"]))
        return out

    def fits(k: int) -> dict | None:
        out = cut(k)
        return out if out is not None and length_of(out) <= max_tokens else None

    lo, hi, best = 1, len(ids), None  # the largest k that fits (the length grows with k)
    while lo <= hi:
        mid = (lo + hi) // 2
        out = fits(mid)
        if out is not None:
            best, lo = out, mid + 1
        else:
            hi = mid - 1
    return best


def fit_example(lm, rec: dict, max_tokens: int, policy: str) -> tuple[list[int], int, str] | None:
    """(ids, prompt length, "kept" | "truncated") of a training example within ``max_tokens`` of the
    model's own tokens, or None when the policy drops it."""
    ids, prompt_len = lm.example_ids(rec)
    if len(ids) <= max_tokens:
        return ids, prompt_len, "kept"
    if policy == "truncate_input":
        cut = truncate_input(rec, lm, max_tokens, lm.example_length)
        if cut is not None:
            ids, prompt_len = lm.example_ids(cut)
            return ids, prompt_len, "truncated"
    return None


def fit_prompt(lm, rec: dict, max_tokens: int, policy: str) -> tuple[list[int], str]:
    """(prompt ids within ``max_tokens``, "kept" | "truncated" | "clipped"). A prompt the policy cannot
    fit is still answered: its last ``max_tokens`` tokens (clipped), so every test item has an answer."""
    ids = lm.prompt_ids(rec)
    if len(ids) <= max_tokens:
        return ids, "kept"
    if policy == "truncate_input":
        cut = truncate_input(rec, lm, max_tokens, lambda r: len(lm.prompt_ids(r)))
        if cut is not None:
            return lm.prompt_ids(cut), "truncated"
    return ids[-max_tokens:], "clipped"


class TiktokenText:
    """A tiktoken encoding with the few methods the length policy needs (this module)."""

    def __init__(self, enc: tiktoken.Encoding):
        self.enc = enc

    def encode_with_offsets(self, text: str) -> tuple[list[int], list[int]]:
        ids = self.enc.encode(text, disallowed_special=())
        return ids, (self.enc.decode_with_offsets(ids)[1] if ids else [])
