"""Small transformers models built on the spot, for tests and the rehearsal's stand-in Hub.

``tiny_llama`` writes a ``from_pretrained`` folder: a 2-layer Llama (grouped-query attention, RoPE,
RMSNorm, SwiGLU, tied head: the architecture of SmolLM2, Llama 3 and Qwen) with GPT-2's tokenizer
(exported from the same offline ranks as tunejudge's GPT-2), optionally a ChatML chat template, and
optionally taught a text first so that it is a "pretrained" base a weights check can pass.
"""

from __future__ import annotations

from pathlib import Path

import torch

CHATML = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + "
          "'<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")


def tiny_llama(folder, *, seed: int = 0, hidden: int = 64, layers: int = 2, chat: bool = False,
               teach: str | None = None, steps: int = 60, context: int = 512) -> Path:
    """A small Llama with GPT-2's tokenizer in ``folder`` (``config.json``, ``model.safetensors``,
    tokenizer files); ``teach``: a text it learns first (``steps`` of AdamW), so its perplexity on
    that text is low; ``chat``: a ChatML template, ``<|im_start|>`` and ``<|im_end|>`` added; ``context``:
    its maximum positions."""
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from tunejudge.models.gpt2.lm import export_tokenizer
    from tunejudge.models.gpt2.tokenizer import get_tokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    export_tokenizer(get_tokenizer(), folder)
    tok = PreTrainedTokenizerFast.from_pretrained(str(folder))
    if chat:
        tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
        tok.chat_template = CHATML
        tok.eos_token = "<|im_end|>"
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=context,
                      bos_token_id=50256, eos_token_id=tok.eos_token_id, pad_token_id=None, tie_word_embeddings=True,
                      rms_norm_eps=1e-5)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(cfg)
        if teach:
            ids = torch.tensor([tok(teach).input_ids])
            opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
            model.train()
            for _ in range(steps):
                opt.zero_grad()
                model(input_ids=ids, labels=ids).loss.backward()
                opt.step()
            model.eval()
    model.generation_config.eos_token_id = tok.eos_token_id
    model.save_pretrained(str(folder))
    tok.save_pretrained(str(folder))
    return folder
