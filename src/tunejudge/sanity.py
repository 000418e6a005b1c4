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

from .errors import TunejudgeError

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
def perplexity(model, ids: list[int]) -> float:
    x = torch.tensor([ids], dtype=torch.long)
    loss = model.loss(x[:, :-1], x[:, 1:])
    return float(math.exp(loss.item()))


def check_weights(path, size: str, max_perplexity: float | None, tokenizer: str = "auto") -> dict:
    """Load the Hub checkpoint at ``path`` as ``size``; its perplexity on :data:`PARAGRAPH`.

    Fails when it exceeds ``max_perplexity`` (None: measured and reported only).
    """
    from .model import config_for, load_model
    from .tokenizer import get_tokenizer

    model = load_model(path, config_for(size)).eval()
    ids = get_tokenizer(tokenizer).encode(PARAGRAPH)
    ppl = perplexity(model, ids)
    result = {"weights": str(path), "size": size, "tokens": len(ids), "perplexity": round(ppl, 3),
              "max_perplexity": max_perplexity}
    log.info("%s (%s): perplexity %.1f on %d tokens of plain English (limit %s)", path, size, ppl, len(ids),
             max_perplexity)
    if max_perplexity is not None and not ppl <= max_perplexity:
        raise TunejudgeError(
            f"{path}: perplexity {ppl:.0f} on a plain English paragraph, above gpt2.max_perplexity "
            f"{max_perplexity}: these weights were not read as GPT-2 (a wrong or corrupt file, or a "
            f"mis-mapped checkpoint). Delete the file and download it again, or check gpt2.size."
        )
    return result
