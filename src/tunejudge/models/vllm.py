"""Answers through vLLM's offline engine (``generation.engine: vllm``): continuous batching and paged attention
for thousands of long answers, on the job's GPUs (tensor parallelism over ``generation.gpus``).

The same prompts as the default engine -- the token ids :func:`tunejudge.models.respond.fit_prompts` makes
from each record by the length policy, in the model's own tokens -- greedy (temperature 0), at most
``max_new_tokens``, stopping at the model's stop tokens (EOS and, for chat prompts, the end of turn), decoded
and cut as the default engine's are. A LoRA model answers as its base with the adapter applied at run time
(``LoRARequest``: nothing merged); a fully fine-tuned one from its export.

vLLM's wheels need CUDA and tunejudge does not pin it: install it on the GPU machine (``pip install vllm``
matching its torch). Without it, or without a GPU, the job stops before loading anything, saying which."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from ..errors import TunejudgeError
from .core import GenerationStats

ENGINES = ("native", "vllm")


def vllm_missing() -> str | None:
    """Why vLLM cannot answer here (None: it can)."""
    if importlib.util.find_spec("vllm") is None:
        return ("vLLM is not installed: `pip install vllm` on a machine with a CUDA GPU (its wheels need CUDA; "
                "tunejudge does not pin it)")
    import torch

    if not torch.cuda.is_available():
        return "vLLM needs a CUDA GPU and none is visible here"
    return None


def lora_rank(adapter: Path) -> int:
    return int(json.loads((Path(adapter) / "adapter_config.json").read_text())["r"])


class VLLMEngine:
    """vLLM's ``LLM`` over a from_pretrained folder, with a LoRA adapter (``adapter``) applied per request."""

    def __init__(self, folder, *, adapter=None, gpus: int = 1, dtype: str = "auto", seed: int = 0,
                 max_model_len: int | None = None):
        missing = vllm_missing()
        if missing:
            raise TunejudgeError(f"generation.engine: vllm: {missing}")
        try:
            from vllm import LLM
        except ImportError as e:  # vllm_missing found it: a broken install
            raise TunejudgeError(f"generation.engine: vllm: vLLM cannot be imported ({e})") from None

        self.adapter = Path(adapter) if adapter else None
        kw = {"enable_lora": True, "max_lora_rank": max(8, lora_rank(self.adapter))} if self.adapter else {}
        self.llm = LLM(model=str(folder), tokenizer=str(folder), tensor_parallel_size=gpus, dtype=dtype, seed=seed,
                       max_model_len=max_model_len, **kw)

    def generate(self, prompts: list[list[int]], max_new_tokens: int, *, stop_ids, stats: GenerationStats | None = None):
        """The new tokens of each prompt, greedy, up to (not including) a stop token."""
        try:
            from vllm import SamplingParams
            from vllm.inputs import TokensPrompt
            from vllm.lora.request import LoRARequest
        except ImportError as e:
            raise TunejudgeError(f"generation.engine: vllm: vLLM cannot be imported ({e})") from None

        stats = stats if stats is not None else GenerationStats()
        params = SamplingParams(temperature=0.0, max_tokens=max_new_tokens, stop_token_ids=list(stop_ids),
                                skip_special_tokens=False, detokenize=False)
        lora = None
        if self.adapter is not None:
            lora = LoRARequest("adapter", 1, str(self.adapter))
        outs = self.llm.generate([TokensPrompt(prompt_token_ids=p) for p in prompts], params, lora_request=lora,
                                 use_tqdm=False)
        new = []
        for out in outs:
            toks = list(out.outputs[0].token_ids)
            cut = next((k for k, t in enumerate(toks) if t in stop_ids), len(toks))
            new.append(toks[:cut])
            stats.new_tokens += cut
        stats.prompt_tokens += sum(len(p) for p in prompts)
        stats.prompts += len(prompts)
        return new


def engine_for(family: str, label: str, weights, base_weights=None, gpus: int = 1) -> VLLMEngine:
    """vLLM over a run's weights, refused by name before any weight is read where it cannot run; a LoRA export
    answers as the weights it was trained on (``base_weights``) plus its adapter."""
    if family != "transformers":
        raise TunejudgeError(f"generation.engine: vllm answers with transformers-family models; {label} is built on "
                             "tunejudge's GPT-2 (family gpt2): use generation.engine native")
    missing = vllm_missing()
    if missing:
        raise TunejudgeError(f"generation.engine: vllm ({label}): {missing}")
    adapter = Path(weights) / "adapter"
    if adapter.is_dir() and base_weights:
        return VLLMEngine(base_weights, adapter=adapter, gpus=gpus)
    return VLLMEngine(weights, gpus=gpus)
