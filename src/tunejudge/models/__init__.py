"""Model families behind one contract (:class:`~.core.CausalLM`): tunejudge's GPT-2
(:mod:`.gpt2`) and any transformers causal LM, full or LoRA (:mod:`.hf`).

``open_lm`` is the one door: a base or a trained model's folder in, a CausalLM out. The trainer
(:mod:`tunejudge.train`) and the responder (:func:`respond`) see nothing else.
"""

from __future__ import annotations

import logging

import torch

from ..bases import BaseSpec
from ..errors import TunejudgeError
from .core import CausalLM, GenerationStats

log = logging.getLogger(__name__)

__all__ = ["CausalLM", "GenerationStats", "open_lm", "respond"]


def open_lm(spec: BaseSpec, path, *, device="cpu", dtype=torch.float32, tokenizer: str = "auto") -> CausalLM:
    """The model at ``path`` (a base's weights, or a fine-tuned model's exported folder) as a
    CausalLM of ``spec``'s family, with ``spec``'s prompt style and BOS rule (``tokenizer``: where
    GPT-2's encoding comes from, :func:`tunejudge.tokenizer.get_tokenizer`)."""
    if spec.family == "gpt2":
        from ..tokenizer import get_tokenizer
        from .gpt2 import load_gpt2

        return load_gpt2(path, size=spec.size, device=device, dtype=dtype, enc=get_tokenizer(tokenizer))
    if spec.family == "transformers":
        from .hf import load_hf

        return load_hf(path, prompt=spec.prompt, add_bos=spec.add_bos, device=device, dtype=dtype)
    raise TunejudgeError(f"unknown model family {spec.family!r}")


def respond(lm: CausalLM, records: list[dict], *, max_new_tokens: int, batch_size: int = 8,
            length_policy: str = "truncate_input", progress=None) -> tuple[list[str], GenerationStats]:
    """The model's answer to each record: its prompt in (made to fit the context by the length
    policy, counted), greedy decoding, the text up to the stop token out."""
    from ..fit import fit_prompt
    from ..prompt import extract_response

    stats = GenerationStats()
    limit = lm.context_length - max_new_tokens
    if max_new_tokens < 1 or limit < 1:
        raise TunejudgeError(f"max_new_tokens must be between 1 and {lm.context_length - 1} (the context), "
                             f"got {max_new_tokens}")
    prompts = []
    for rec in records:
        ids, how = fit_prompt(lm, rec, limit, length_policy)
        stats.truncated += how == "truncated"
        stats.clipped += how == "clipped"
        prompts.append(ids)
    new = lm.generate(prompts, max_new_tokens, batch_size=batch_size, progress=progress, stats=stats)
    return [extract_response(lm.decode(toks)) for toks in new], stats
