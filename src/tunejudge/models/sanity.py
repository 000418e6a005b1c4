"""A check that pretrained weights were read right: perplexity on a short English paragraph.

A GPT-2 whose checkpoint was mapped wrongly (a Conv1D weight left untransposed, layers swapped)
still loads when the shapes agree, and then writes fluent-looking noise; its perplexity on plain
English is in the thousands, where GPT-2 124M scores tens. Random weights score about the
vocabulary size (50,257).
"""

from __future__ import annotations

import logging
import math

import torch

from ..errors import TunejudgeError

log = logging.getLogger(__name__)

# Plain, common English, written for this check.
PARAGRAPH = (
    "The city council met on Tuesday evening to discuss the new budget for the coming year. "
    "Most of the money will go to schools, roads and public transport, and the mayor said that "
    "the plan would not raise taxes. Several residents spoke at the meeting. One of them asked why "
    "the library would close earlier on weekends, and another wanted to know when the park near "
    "the river would be finished. The council will vote on the budget next month, after a second "
    "public hearing."
)


@torch.no_grad()
def perplexity(lm, text: str = PARAGRAPH) -> tuple[float, int]:
    """(perplexity, tokens) of a model (:class:`tunejudge.models.CausalLM`) on ``text``: its own
    tokens, BOS first where the family adds one."""
    ids = lm.bos_ids() + lm.encode(text)
    x = torch.tensor([ids], dtype=torch.long, device=lm.device)
    was = lm.module.training
    lm.module.eval()
    loss = lm.loss(x[:, :-1], x[:, 1:]) / (len(ids) - 1)
    lm.module.train(was)
    return float(math.exp(loss.item())), len(ids)


def check_perplexity(lm, name: str, max_perplexity: float | None, setting: str) -> dict:
    """The weights check of one base: its perplexity on :data:`PARAGRAPH`; above ``max_perplexity``
    (the config key ``setting``; None: measured and reported only) it stops, naming the base."""
    ppl, n = perplexity(lm)
    result = {"base": name, "tokens": n, "perplexity": round(ppl, 3), "max_perplexity": max_perplexity}
    log.info("%s: perplexity %.1f on %d tokens of plain English (limit %s)", name, ppl, n, max_perplexity)
    if max_perplexity is not None and not ppl <= max_perplexity:
        raise TunejudgeError(
            f"{name}: perplexity {ppl:.0f} on a plain English paragraph, above {setting} = {max_perplexity}: these "
            "weights were not read as the model they claim to be (a wrong or corrupt file, a mis-mapped checkpoint, "
            "or a tokenizer converted wrongly). Fix or replace the weights; raise the limit only if you know why."
        )
    return result


def check_weights(path, size: str, max_perplexity: float | None, tokenizer: str = "auto") -> dict:
    """Load the Hub GPT-2 checkpoint at ``path`` as ``size``; its perplexity on :data:`PARAGRAPH`.

    Fails when it exceeds ``max_perplexity`` (None: measured and reported only).
    """
    from .gpt2.lm import load_gpt2
    from .gpt2.tokenizer import get_tokenizer

    lm = load_gpt2(path, size=size, enc=get_tokenizer(tokenizer))
    result = check_perplexity(lm, f"{path} ({size})", max_perplexity, "gpt2.max_perplexity")
    return {"weights": str(path), "size": size, **{k: v for k, v in result.items() if k != "base"}}
