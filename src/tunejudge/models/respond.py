"""The responder: a model's answer to each test record (the rule ``respond``)."""

from __future__ import annotations

from ..data.fit import fit_prompt
from ..data.prompt import extract_response
from ..errors import TunejudgeError
from .core import CausalLM, GenerationStats


def respond(lm: CausalLM, records: list[dict], *, max_new_tokens: int, batch_size: int = 8,
            length_policy: str = "truncate_input", progress=None) -> tuple[list[str], GenerationStats]:
    """The model's answer to each record: its prompt in (made to fit the context by the length
    policy, counted), greedy decoding, the text up to the stop token out."""
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
