"""Any causal LM of the transformers ecosystem as a :class:`~.core.CausalLM`, full or LoRA (peft).

Family quirks live here, nowhere else:

- **EOS**: the model's config (and generation config) name it; a tokenizer converted from GGUF may not
  (SmolLM2's says ``<|im_start|>``): the config wins, and the prepared folder's tokenizer is fixed.
- **BOS**: added when the base says ``add_bos: true`` (a GGUF-converted Gemma tokenizer drops it), else
  as the tokenizer itself does.
- **Chat template** (``prompt: chat``): the prompt is the template with the generation prompt; an
  example ends with the template's end-of-turn token, which also stops generation.
- **Output head**: the loss runs the backbone, then the head in checkpointed chunks; soft-capped
  (Gemma 2/3) or scaled (Granite, Cohere) logits are applied per chunk.
- **GGUF**: transformers dequantizes it to float32 and marks the model as GGUF-quantized, which
  ``save_pretrained`` refuses; the marker is dropped once the weights are plain tensors.
- **QLoRA**: the base loads in 4-bit NF4 (bitsandbytes, double quantization, bf16 compute) under a LoRA
  adapter; the export dequantizes the 4-bit weights to bf16 -- the weights the adapter was trained against --
  and merges the adapter into them, and keeps the adapter alone beside it.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from tqdm import tqdm

from ..data.prompt import format_prompt, user_turn
from ..errors import TunejudgeError
from ..run.telemetry import disable_telemetry
from .core import IGNORE, CausalLM, GenerationStats, chunked_cross_entropy
from .export import write_card

disable_telemetry()
log = logging.getLogger(__name__)

SENTINEL = "Tunejudge-sentinel-answer."


def _ids(value) -> list[int]:
    if value is None:
        return []
    return [int(v) for v in (value if isinstance(value, (list, tuple)) else [value])]


def chat_messages(record: dict) -> list[dict]:
    """The record as one user turn: the instruction, then its input."""
    return [{"role": "user", "content": user_turn(record)}]


class HFCausalLM(CausalLM):
    family = "transformers"

    def __init__(self, model, tokenizer, *, prompt: str = "alpaca", add_bos: bool | None = None):
        self.model = model  # a transformers PreTrainedModel, or a peft PeftModel around one
        self.module = model
        self.quantized = getattr(model, "is_loaded_in_4bit", False)
        self.tok = tokenizer
        self.prompt_style = prompt
        core = self.core
        cfg = core.config
        gen = getattr(core, "generation_config", None)
        eos = _ids(getattr(cfg, "eos_token_id", None)) + _ids(getattr(gen, "eos_token_id", None)) \
            + _ids(tokenizer.eos_token_id)
        self.eos_ids = tuple(dict.fromkeys(eos))
        if not self.eos_ids:
            raise TunejudgeError(f"{cfg.name_or_path}: neither the config nor the tokenizer names an EOS token")
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos_ids[0]
        self.bos_id = getattr(cfg, "bos_token_id", None)
        if self.bos_id is None:
            self.bos_id = tokenizer.bos_token_id
        probe = tokenizer("a").input_ids
        adds = bool(probe) and self.bos_id is not None and probe[0] == self.bos_id
        self.add_bos = adds if add_bos is None else bool(add_bos)
        self.context_length = int(getattr(cfg, "max_position_embeddings", None) or tokenizer.model_max_length or 2048)
        self.end_of_turn = self._end_of_turn() if prompt == "chat" else None
        if prompt == "chat" and self.end_of_turn is None:
            raise TunejudgeError(f"{cfg.name_or_path}: prompt: chat needs a chat template whose assistant turn ends with "
                                 "a special token (none found); use prompt: alpaca")

    @property
    def core(self):
        """The transformers model (inside peft's wrapper when LoRA is on)."""
        return self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model

    # ---------------------------------------------------------------- tokens
    def encode(self, text: str) -> list[int]:
        return self.tok(text, add_special_tokens=False).input_ids

    def decode(self, ids: list[int]) -> str:
        return self.tok.decode([i for i in ids if i not in self.stop_ids], skip_special_tokens=True,
                               clean_up_tokenization_spaces=False)

    def encode_with_offsets(self, text: str) -> tuple[list[int], list[int]]:
        enc = self.tok(text, add_special_tokens=False, return_offsets_mapping=True)
        return enc.input_ids, [a for a, _ in enc.offset_mapping]

    @property
    def stop_ids(self) -> tuple[int, ...]:
        return tuple(dict.fromkeys((*self.eos_ids, *([self.end_of_turn] if self.end_of_turn is not None else []))))

    def _chat(self, messages, generation_prompt: bool) -> list[int]:
        out = self.tok.apply_chat_template(messages, add_generation_prompt=generation_prompt, tokenize=True)
        return list(out["input_ids"] if isinstance(out, dict) or hasattr(out, "keys") else out)

    def _end_of_turn(self) -> int | None:
        """The special token the chat template writes right after an assistant's answer."""
        if not getattr(self.tok, "chat_template", None):
            return None
        text = self.tok.apply_chat_template([{"role": "user", "content": "Hi"},
                                             {"role": "assistant", "content": SENTINEL}], tokenize=False)
        after = text.split(SENTINEL, 1)[1] if SENTINEL in text else ""
        ids = self.encode(after)
        special = set(self.tok.all_special_ids) | {i for i, t in self.tok.added_tokens_decoder.items() if t.special}
        return ids[0] if ids and ids[0] in special else None

    def prompt_ids(self, record: dict) -> list[int]:
        if self.prompt_style == "chat":
            return self._chat(chat_messages(record), True)
        return self.bos_ids() + self.encode(format_prompt(record))

    def example_ids(self, record: dict) -> tuple[list[int], int]:
        if self.prompt_style != "chat":
            return super().example_ids(record)
        prompt = self.prompt_ids(record)
        full = self._chat(chat_messages(record) + [{"role": "assistant", "content": record["output"]}], False)
        if full[: len(prompt)] != prompt:
            raise TunejudgeError(f"record {record.get('id')}: the chat template does not write the answer after the "
                                 "generation prompt (the prompt is not a prefix of the whole turn); use prompt: alpaca")
        end = max((i for i, t in enumerate(full) if t == self.end_of_turn), default=None)
        return (full[: end + 1] if end is not None and end >= len(prompt) else full + [self.end_of_turn]), len(prompt)

    # ---------------------------------------------------------------- compute
    def _logits_fn(self):
        cfg = self.core.config
        cap = getattr(cfg, "final_logit_softcapping", None)
        scale = getattr(cfg, "logits_scaling", None)  # Granite: logits / scaling
        mult = getattr(cfg, "logit_scale", None)  # Cohere: logits * scale
        if not (cap or scale or mult):
            return None

        def fn(logits):
            if mult:
                logits = logits * mult
            if scale:
                logits = logits / scale
            if cap:
                logits = torch.tanh(logits / cap) * cap
            return logits

        return fn

    def hidden_and_head(self, x):
        core = self.core
        hidden = core.base_model(input_ids=x, use_cache=False).last_hidden_state  # (B, T, H) through LoRA layers
        head = core.get_output_embeddings()
        if getattr(head, "bias", None) is not None:
            raise TunejudgeError(f"{core.config.name_or_path}: an output head with a bias is not supported by the "
                                 "chunked loss")
        return hidden, head.weight, self._logits_fn()

    def loss(self, x, y, *, chunk_tokens: int = 4096):
        core = self.core
        hidden = core.base_model(input_ids=x, use_cache=False).last_hidden_state  # (B, T, H) through LoRA layers
        keep = y != IGNORE
        head = core.get_output_embeddings()
        if getattr(head, "bias", None) is not None:
            raise TunejudgeError(f"{core.config.name_or_path}: an output head with a bias is not supported by the "
                                 "chunked loss")
        return chunked_cross_entropy(hidden[keep], y[keep], head.weight, chunk_tokens, self._logits_fn())

    def set_gradient_checkpointing(self, on: bool) -> None:
        core = self.core
        if on:
            core.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        elif getattr(core, "is_gradient_checkpointing", False):
            core.gradient_checkpointing_disable()
        core.config.use_cache = not on

    @torch.no_grad()
    def generate(self, prompts, max_new_tokens, *, batch_size=8, progress=None, stats: GenerationStats | None = None,
                 choose=None):
        """Greedy, batched (left-padded, prompts of similar length together), KV-cached, through
        transformers' ``generate`` with an explicit greedy configuration (no sampling, no repetition
        penalty a model's own generation config might carry). With ``choose`` (seeded sampling,
        :mod:`.sampling`) a logits processor leaves each row only the token its own stream draws."""
        from transformers import GenerationConfig

        stats = stats if stats is not None else GenerationStats()
        core = self.core
        was_training = core.training
        core.eval()
        config = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
                                  eos_token_id=list(self.stop_ids), pad_token_id=self.pad_id, use_cache=True)
        order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
        out: list[list[int] | None] = [None] * len(prompts)
        device = self.device
        bar = tqdm(total=len(prompts), desc="generate", unit="prompt", file=progress, disable=progress is False)
        for s in range(0, len(order), batch_size):
            idx = order[s : s + batch_size]
            batch = [prompts[i] for i in idx]
            longest = max(len(p) for p in batch)
            ids = torch.full((len(batch), longest), self.pad_id, dtype=torch.long)
            mask = torch.zeros((len(batch), longest), dtype=torch.long)
            for r, p in enumerate(batch):
                if not p:
                    raise TunejudgeError("an empty prompt cannot be continued")
                ids[r, longest - len(p):] = torch.tensor(p)
                mask[r, longest - len(p):] = 1
            extra = {"logits_processor": [_Picked(choose(idx))]} if choose is not None else {}
            gen = core.generate(input_ids=ids.to(device), attention_mask=mask.to(device), generation_config=config, **extra)
            for r, i in enumerate(idx):
                new = gen[r, longest:].tolist()
                cut = next((k for k, t in enumerate(new) if t in self.stop_ids), len(new))
                out[i] = new[:cut]
                stats.new_tokens += cut
            stats.prompt_tokens += sum(len(p) for p in batch)
            bar.update(len(idx))
        bar.close()
        stats.prompts += len(prompts)
        if was_training:
            core.train()
        return out  # type: ignore[return-value]

    def shape(self) -> dict:
        cfg = self.core.config
        return {**super().shape(), "vocab": cfg.vocab_size, "hidden": cfg.hidden_size,
                "layers": cfg.num_hidden_layers}

    # ---------------------------------------------------------------- LoRA
    def add_lora(self, settings: dict, seed: int) -> None:
        """Wrap the model in a peft LoRA adapter (rank, alpha, dropout, target modules); the adapter's
        random init is drawn from ``seed``."""
        from peft import LoraConfig, get_peft_model

        targets = settings["target_modules"]
        config = LoraConfig(r=int(settings["r"]), lora_alpha=settings["alpha"], lora_dropout=settings["dropout"],
                            target_modules=targets if isinstance(targets, str) else list(targets),
                            task_type="CAUSAL_LM", bias="none")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.model = self.module = get_peft_model(self.model, config)

    def to(self, device=None, dtype=None) -> HFCausalLM:
        if self.quantized:  # bitsandbytes' 4-bit weights stay where and as they were loaded
            if device is not None and torch.device(device) != self.device:
                raise TunejudgeError(f"a 4-bit base loaded on {self.device} cannot move to {device}")
            return self
        return super().to(device, dtype)

    @property
    def is_lora(self) -> bool:
        return hasattr(self.model, "peft_config")

    def reference(self):
        """The model before this training: with a LoRA adapter, the adapter disabled (no second copy)."""
        return self.model.disable_adapter() if self.is_lora else super().reference()

    # ---------------------------------------------------------------- export
    def describe(self) -> dict:
        core = self.core
        t = self.tok
        return {"family": self.family, "class": type(core).__name__, "model_type": core.config.model_type,
                "parameters": self.num_parameters(), "trainable": self.num_trainable(), "lora": self.is_lora,
                "vocab": core.config.vocab_size, "context": self.context_length, "prompt": self.prompt_style,
                "bos": t.convert_ids_to_tokens(self.bos_id) if self.add_bos and self.bos_id is not None else None,
                "eos": t.convert_ids_to_tokens(list(self.eos_ids)), "pad": t.convert_ids_to_tokens(self.pad_id),
                "end_of_turn": t.convert_ids_to_tokens(self.end_of_turn) if self.end_of_turn is not None else None}

    def export(self, folder, card: dict) -> None:
        """The merged model (LoRA folded into the weights) and tokenizer, as ``from_pretrained`` reads
        them; with LoRA the adapter alone in ``adapter/`` (``PeftModel.from_pretrained(base, ...)``)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        facts = self.describe()
        model = self.model
        if self.is_lora:
            model.save_pretrained(str(folder / "adapter"))
            if self.quantized:  # 4-bit -> bf16 (the weights the adapter saw), the adapter folded in
                model = _merge_four_bit(model)
                self.quantized = False
            else:
                model = model.merge_and_unload()
            self.model = self.module = model
        model.generation_config.eos_token_id = list(self.stop_ids) if len(self.stop_ids) > 1 else self.stop_ids[0]
        model.generation_config.pad_token_id = self.pad_id
        model.save_pretrained(str(folder))
        self.tok.save_pretrained(str(folder))
        write_card(folder, card, facts)


def _merge_four_bit(peft_model):
    """A QLoRA model as a plain bf16 one: each adapted 4-bit layer becomes a Linear whose weight is the NF4
    weight dequantized plus the adapter's delta (peft's own merge would quantize the sum to 4 bits again);
    the layers no adapter touched are dequantized as they are."""
    from peft.tuners.lora import LoraLayer
    from peft.utils.integrations import dequantize_bnb_weight

    adapter = peft_model.active_adapter
    for name, module in list(peft_model.base_model.model.named_modules()):
        if not isinstance(module, LoraLayer):
            continue
        base = module.get_base_layer()
        weight = dequantize_bnb_weight(base.weight, getattr(base, "state", None)).float()
        weight = weight + module.get_delta_weight(adapter).float()
        linear = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=base.bias is not None,
                                 device=weight.device, dtype=torch.bfloat16)
        with torch.no_grad():
            linear.weight.copy_(weight)
            if base.bias is not None:
                linear.bias.copy_(base.bias)
        parent_name, _, child = name.rpartition(".")
        setattr(peft_model.base_model.model.get_submodule(parent_name) if parent_name else peft_model.base_model.model,
                child, linear)
    model = peft_model.base_model.model
    if any(type(m).__name__ == "Linear4bit" for m in model.modules()):
        model.dequantize(dtype=torch.bfloat16)  # what no adapter touched; drops the quantization config
    else:
        model.hf_quantizer.remove_quantization_config(model)
    return model.to(torch.bfloat16)


# ---------------------------------------------------------------- loading
class _Picked:
    """A transformers logits processor: every row keeps only the token ``pick`` draws for it, so greedy
    decoding follows the sample (transformers' own sampling shares one random stream across the batch)."""

    def __init__(self, pick):
        self.pick = pick

    def __call__(self, input_ids, scores):
        tok = self.pick(scores)
        return torch.full_like(scores, float("-inf")).scatter_(1, tok[:, None], 0.0)


def _drop_gguf_marker(model) -> None:
    """A model loaded from GGUF is plain float tensors, but carries transformers' GGUF quantization
    marker, which makes ``save_pretrained`` refuse it."""
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config


def fix_tokenizer(model, tok) -> None:
    """Make the tokenizer name the EOS the model's config names (a GGUF conversion may not), and give
    it a padding token (EOS: padding is masked by position, never by id)."""
    eos = _ids(getattr(model.config, "eos_token_id", None))
    if eos and tok.eos_token_id != eos[0]:
        log.info("tokenizer EOS %r -> %r (the model config's)", tok.eos_token, tok.convert_ids_to_tokens(eos[0]))
        tok.eos_token = tok.convert_ids_to_tokens(eos[0])
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token


def load_source(*, hub: dict | None = None, path: str | None = None, gguf: Path | None = None,
                dtype=torch.float32):
    """(model, tokenizer) from a Hub repository (offline, from the cache the download filled), a
    ``from_pretrained`` folder, or a GGUF file (dequantized)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if gguf is not None:
        kw = {"gguf_file": gguf.name}
        where = str(gguf.parent)
    elif hub is not None:
        kw = {"revision": hub.get("revision")}
        where = hub["repo"]
    else:
        kw, where = {}, str(path)
    try:
        tok = AutoTokenizer.from_pretrained(where, **kw)
        model = AutoModelForCausalLM.from_pretrained(where, dtype=dtype, **kw)
    except (OSError, ValueError) as e:
        raise TunejudgeError(f"cannot load {where}{' (' + gguf.name + ')' if gguf else ''} as a transformers causal LM "
                             f"({type(e).__name__}: {str(e)[:300]})") from None
    _drop_gguf_marker(model)
    fix_tokenizer(model, tok)
    return model, tok


def load_hf(folder, *, prompt: str = "alpaca", add_bos: bool | None = None, device="cpu",
            dtype=torch.float32, quantize: str | None = None, weights: bool = True) -> HFCausalLM:
    """A prepared base or an exported model: a ``from_pretrained`` folder; ``quantize="nf4"``: in 4 bits
    (QLoRA's NF4, double quantization, bf16 compute; bitsandbytes), ready for a LoRA adapter; ``weights=False``:
    the architecture on the meta device, no weight read (its tokenizer and stop rules, for another engine)."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise TunejudgeError(f"{folder}: not a from_pretrained folder (no config.json)")
    tok = AutoTokenizer.from_pretrained(str(folder))
    if not weights:
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(str(folder)))
        from transformers import GenerationConfig

        try:
            model.generation_config = GenerationConfig.from_pretrained(str(folder))
        except OSError:
            pass
    elif quantize:
        from .fourbit import four_bit_missing

        missing = four_bit_missing(device)
        if missing:
            raise TunejudgeError(f"{folder}: finetune qlora loads this base in 4 bits, and {missing}")
        from peft import prepare_model_for_kbit_training
        from transformers import BitsAndBytesConfig

        q = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=quantize, bnb_4bit_use_double_quant=True,
                               bnb_4bit_compute_dtype=torch.bfloat16)
        model = AutoModelForCausalLM.from_pretrained(str(folder), quantization_config=q, dtype=torch.bfloat16,
                                                     device_map={"": str(torch.device(device))})
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    else:
        model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=dtype).to(device)
    fix_tokenizer(model, tok)
    return HFCausalLM(model, tok, prompt=prompt, add_bos=add_bos)


def save_prepared(model, tok, folder, source: dict) -> None:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(folder))
    tok.save_pretrained(str(folder))
    (folder / "source.json").write_text(json.dumps(source, indent=2, sort_keys=True) + "\n")
