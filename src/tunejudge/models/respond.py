"""The responder: a model's answer to each test record (the rule ``respond``)."""

from __future__ import annotations

from ..data.fit import fit_prompt
from ..data.prompt import extract_response
from ..errors import TunejudgeError
from .core import CausalLM, GenerationStats


def fit_prompts(lm: CausalLM, records: list[dict], max_new_tokens: int, length_policy: str,
                stats: GenerationStats) -> list[list[int]]:
    """Each record's prompt ids, made to fit the context less ``max_new_tokens`` by the length policy (counted
    in ``stats``)."""
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
    return prompts


def respond(lm: CausalLM, records: list[dict], *, max_new_tokens: int, batch_size: int = 8,
            length_policy: str = "truncate_input", progress=None, engine=None) -> tuple[list[str], GenerationStats]:
    """The model's answer to each record: its prompt in (made to fit the context by the length
    policy, counted), greedy decoding, the text up to the stop token out. ``engine``: another decoder of the
    same prompt ids (:class:`tunejudge.models.vllm.VLLMEngine`), stopping where the model does."""
    stats = GenerationStats()
    prompts = fit_prompts(lm, records, max_new_tokens, length_policy, stats)
    if engine is None:
        new = lm.generate(prompts, max_new_tokens, batch_size=batch_size, progress=progress, stats=stats)
    else:
        new = engine.generate(prompts, max_new_tokens, stop_ids=lm.stop_ids, stats=stats)
    return [extract_response(lm.decode(toks)) for toks in new], stats


def sample_answers(lm: CausalLM, records: list[dict], k: int, sampling, *, max_new_tokens: int, batch_size: int = 8,
                   length_policy: str = "truncate_input", progress=None) -> tuple[list[list[str]], GenerationStats]:
    """``k`` sampled answers of the model to each record (:mod:`.sampling`: seeded, the same batched or one
    prompt at a time), each prompt made to fit as :func:`respond` does."""
    from .sampling import sample

    stats = GenerationStats()
    prompts = fit_prompts(lm, records, max_new_tokens, length_policy, stats)
    stats.prompts += len(prompts)
    new = sample(lm, prompts, k, sampling, max_new_tokens, batch_size=batch_size, progress=progress)
    return [[extract_response(lm.decode(toks)) for toks in row] for row in new], stats
