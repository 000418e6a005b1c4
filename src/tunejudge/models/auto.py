"""The one door to a model: a base or a trained model's folder in, a :class:`~.core.CausalLM` of the
base's family out (as transformers' ``Auto*`` classes pick the architecture behind a name)."""

from __future__ import annotations

import torch

from ..errors import TunejudgeError
from .bases import BaseSpec
from .core import CausalLM


def open_lm(spec: BaseSpec, path, *, device="cpu", dtype=torch.float32, tokenizer: str = "auto",
            quantize: str | None = None, weights: bool = True) -> CausalLM:
    """The model at ``path`` (a base's weights, or a fine-tuned model's exported folder) as a
    CausalLM of ``spec``'s family, with ``spec``'s prompt style and BOS rule (``tokenizer``: where
    GPT-2's encoding comes from, :func:`tunejudge.models.gpt2.tokenizer.get_tokenizer`); ``quantize``: the
    weights in 4 bits (QLoRA; transformers bases); ``weights=False``: no weight read (transformers bases: the
    tokenizer and stop rules another engine decodes with)."""
    if spec.family == "gpt2":
        if quantize:
            raise TunejudgeError(f"base {spec.name}: 4-bit loading (finetune qlora) is for transformers bases")
        from .gpt2.lm import load_gpt2
        from .gpt2.tokenizer import get_tokenizer

        return load_gpt2(path, size=spec.size, device=device, dtype=dtype, enc=get_tokenizer(tokenizer))
    if spec.family == "transformers":
        from .hf import load_hf

        return load_hf(path, prompt=spec.prompt, add_bos=spec.add_bos, device=device, dtype=dtype, quantize=quantize,
                       weights=weights)
    raise TunejudgeError(f"unknown model family {spec.family!r}")
