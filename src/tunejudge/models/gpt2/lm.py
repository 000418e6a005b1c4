"""tunejudge's GPT-2 (:mod:`tunejudge.models.gpt2.model`) as a :class:`~.core.CausalLM`: tiktoken's GPT-2 encoding,
<|endoftext|> as EOS and padding, the Alpaca prompt, the native decoding kernels, and an export in
the layout of ``openai-community/gpt2`` that ``GPT2LMHeadModel`` and ``AutoTokenizer`` load.
"""

from __future__ import annotations

import base64
import json
import tempfile
from pathlib import Path

import torch

from ...data.fit import TiktokenText
from ...errors import TunejudgeError
from ..core import CausalLM, GenerationStats
from ..export import write_card
from .decode import greedy_generate
from .model import GPT2, GPTConfig, config_for
from .tokenizer import EOT, EOT_ID, GPT2_PAT, get_tokenizer
from .weights import load_model, tunejudge_to_hub

CONFIG = "config.json"


class GPT2LM(CausalLM):
    family = "gpt2"

    def __init__(self, net: GPT2, enc=None):
        self.net = self.module = net
        self.enc = enc if enc is not None else get_tokenizer()
        self.context_length = net.cfg.n_ctx
        self.eos_ids = (EOT_ID,)
        self.pad_id = EOT_ID

    # ---------------------------------------------------------------- tokens
    def encode(self, text: str) -> list[int]:
        return self.enc.encode(text, disallowed_special=())

    def decode(self, ids: list[int]) -> str:
        return self.enc.decode_bytes([i for i in ids if i != EOT_ID]).decode("utf-8", errors="ignore")

    def encode_with_offsets(self, text: str) -> tuple[list[int], list[int]]:
        return TiktokenText(self.enc).encode_with_offsets(text)

    # ---------------------------------------------------------------- compute
    def loss(self, x, y, *, chunk_tokens: int = 4096):
        return self.net.loss(x, y, reduction="sum", chunk_tokens=chunk_tokens)

    def hidden_and_head(self, x):
        return self.net.hidden_states(x), self.net.wte.weight, None  # the head is tied to the embeddings

    def generate(self, prompts, max_new_tokens, *, batch_size=8, progress=None, stats: GenerationStats | None = None,
                 choose=None):
        return greedy_generate(self.net, prompts, max_new_tokens, batch_size=batch_size, eos_id=EOT_ID, pad_id=EOT_ID,
                               progress=progress, stats=stats, choose=choose)

    def set_gradient_checkpointing(self, on: bool) -> None:
        self.net.gradient_checkpointing = on

    def shape(self) -> dict:
        c = self.net.cfg
        return {**super().shape(), "vocab": c.vocab_size, "hidden": c.n_embd, "layers": c.n_layer}

    def describe(self) -> dict:
        c = self.net.cfg
        return {"family": self.family, "class": "tunejudge GPT2", "parameters": self.num_parameters(),
                "layers": c.n_layer, "hidden": c.n_embd, "context": c.n_ctx, "vocab": c.vocab_size,
                "bos": None, "eos": [EOT], "pad": EOT, "prompt": "alpaca"}

    # ---------------------------------------------------------------- export
    def export(self, folder, card: dict) -> None:
        """``openai-community/gpt2``'s layout: ``GPT2LMHeadModel`` config, Hub-keyed safetensors (Conv1D
        orientation), the GPT-2 tokenizer as ``tokenizer.json`` (converted from the same tiktoken
        ranks, token for token) and a model card."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        c = self.net.cfg
        state = {k: v.detach().to(torch.float32).contiguous().cpu() for k, v in self.net.state_dict().items()}
        save_file(tunejudge_to_hub(state, c), str(folder / "model.safetensors"), metadata={"format": "pt"})
        (folder / CONFIG).write_text(json.dumps(hf_config(c), indent=2) + "\n")
        (folder / "generation_config.json").write_text(json.dumps(
            {"bos_token_id": EOT_ID, "eos_token_id": EOT_ID, "pad_token_id": EOT_ID, "do_sample": False}, indent=2) + "\n")
        export_tokenizer(self.enc, folder, c.n_ctx)
        write_card(folder, card, self.describe())


def hf_config(c: GPTConfig) -> dict:
    """transformers' GPT2Config for this network (tanh-approximated GELU = gelu_new, tied head)."""
    return {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": c.vocab_size,
            "n_positions": c.n_ctx, "n_ctx": c.n_ctx, "n_embd": c.n_embd, "n_layer": c.n_layer, "n_head": c.n_head,
            "n_inner": None, "activation_function": "gelu_new", "resid_pdrop": 0.0, "embd_pdrop": 0.0,
            "attn_pdrop": 0.0, "layer_norm_epsilon": c.layer_norm_eps, "initializer_range": 0.02,
            "bos_token_id": EOT_ID, "eos_token_id": EOT_ID, "tie_word_embeddings": True, "dtype": "float32"}


def config_from_hf(path: Path) -> GPTConfig:
    try:
        d = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise TunejudgeError(f"{path}: not a readable GPT-2 config ({e})") from None
    if d.get("model_type") != "gpt2":
        raise TunejudgeError(f"{path}: model_type {d.get('model_type')!r}, not gpt2: load it as a transformers base")
    return GPTConfig(vocab_size=d["vocab_size"], n_ctx=d["n_positions"], n_embd=d["n_embd"], n_layer=d["n_layer"],
                     n_head=d["n_head"], layer_norm_eps=d.get("layer_norm_epsilon", 1e-5))


def export_tokenizer(enc, folder: Path, max_length: int = 1024) -> None:
    """The tiktoken GPT-2 encoding as a transformers fast tokenizer (the ranks' merges recovered by
    transformers' TikTokenConverter; <|endoftext|> as BOS, EOS and UNK, as GPT-2's own tokenizer)."""
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import TikTokenConverter

    with tempfile.TemporaryDirectory() as tmp:
        ranks = Path(tmp) / "gpt2.tiktoken"
        ranks.write_text("".join(f"{base64.b64encode(t).decode()} {r}\n"
                                 for t, r in sorted(enc._mergeable_ranks.items(), key=lambda kv: kv[1])))
        tok = TikTokenConverter(vocab_file=str(ranks), pattern=GPT2_PAT,
                                extra_special_tokens={EOT: EOT_ID}).converted()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=EOT, eos_token=EOT, unk_token=EOT,
                                   model_max_length=max_length, clean_up_tokenization_spaces=False)
    fast.save_pretrained(str(folder))


def load_gpt2(path, *, size: str | None = None, device="cpu", dtype=torch.float32, enc=None) -> GPT2LM:
    """A GPT-2 from a tunejudge checkpoint, the Hub's safetensors (``size`` names its shape) or an
    exported folder (its ``config.json``)."""
    path = Path(path)
    if path.is_dir():
        cfg = config_from_hf(path / CONFIG)
        net = load_model(path / "model.safetensors", cfg, device=device, dtype=dtype)
    else:
        net = load_model(path, config_for(size) if size else None, device=device, dtype=dtype)
    return GPT2LM(net, enc)
