"""Memory-lean instruction tuning of GPT-2 (the recipe of LLMs from Scratch ch. 7, made to fit).

Effective batch = micro-batch x gradient-accumulation steps; length-grouped batches keep padding
small; the loss reaches the vocabulary projection only at target positions, in checkpointed chunks;
bf16 autocast on CUDA; optional activation checkpointing. Every ``checkpoint_every`` steps the full
training state goes to ``resume_dir`` so an interrupted run resumes and ends with the same weights.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from .errors import ConfigError, TunejudgeError
from .io import atomic_path
from .model import GPT2, load_state, pick_device
from .prompt import format_example, format_prompt
from .tokenizer import EOT_ID

log = logging.getLogger(__name__)
IGNORE = -100


@dataclass
class TrainConfig:
    epochs: int = 2
    batch_size: int = 8                 # effective batch (records per optimizer step)
    micro_batch_size: int | str = 8     # records per forward pass, or "auto" (from memory_budget_gb)
    memory_budget_gb: float | None = None
    lr: float = 5e-5
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.999)
    grad_clip: float | None = None
    warmup_steps: int = 0
    seed: int = 123
    eval_every: int = 5                 # optimizer steps between evaluations
    checkpoint_every: int = 20          # optimizer steps between resume states
    max_length: int | None = None       # tokens per example; default: the model's context
    truncation: str = "truncate"        # truncate | drop (examples over max_length)
    mask_prompt: bool = False           # the study trained on prompt tokens too
    length_grouped: bool = True
    group_multiplier: int = 50          # micro-batches per length-sorted mega-batch
    gradient_checkpointing: bool = False
    dtype: str = "auto"                 # auto (bf16 autocast on CUDA) | float32 | bfloat16
    device: str = "auto"
    chunk_tokens: int = 4096            # tokens per chunk of the vocabulary projection

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"train: unknown key {sorted(unknown)[0]!r}")
        d = dict(d)
        if "betas" in d:
            d["betas"] = tuple(d["betas"])
        cfg = cls(**d)
        if cfg.truncation not in ("truncate", "drop"):
            raise ConfigError(f"train.truncation: {cfg.truncation!r} (truncate or drop)")
        if cfg.micro_batch_size != "auto" and (int(cfg.micro_batch_size) < 1 or cfg.batch_size % int(cfg.micro_batch_size)):
            raise ConfigError(f"train.micro_batch_size {cfg.micro_batch_size} must divide batch_size {cfg.batch_size}")
        return cfg


# ----------------------------------------------------------------------------- data


@dataclass
class Example:
    ids: list[int]      # prompt + answer + <|endoftext|>
    prompt_len: int


def encode_examples(records: list[dict], enc, max_length: int, policy: str) -> tuple[list[Example], dict]:
    out, counts = [], {"truncated": 0, "dropped": 0}
    for rec in records:
        ids = enc.encode(format_example(rec), disallowed_special=()) + [EOT_ID]
        prompt_len = len(enc.encode(format_prompt(rec), disallowed_special=()))
        if len(ids) > max_length + 1:  # inputs are ids[:-1]
            if policy == "drop":
                counts["dropped"] += 1
                continue
            ids = ids[: max_length + 1]
            counts["truncated"] += 1
        out.append(Example(ids, prompt_len))
    return out, counts


def collate(examples: list[Example], mask_prompt: bool, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded inputs and targets; padding (and, with mask_prompt, the prompt) is IGNORE."""
    longest = max(len(e.ids) for e in examples) - 1
    x = torch.full((len(examples), longest), EOT_ID, dtype=torch.long)
    y = torch.full((len(examples), longest), IGNORE, dtype=torch.long)
    for r, e in enumerate(examples):
        n = len(e.ids) - 1
        x[r, :n] = torch.tensor(e.ids[:-1])
        y[r, :n] = torch.tensor(e.ids[1:])
        if mask_prompt:
            y[r, : max(e.prompt_len - 1, 0)] = IGNORE
    return x.to(device), y.to(device)


def epoch_batches(lengths: list[int], micro: int, seed: int, epoch: int, grouped: bool, multiplier: int) -> list[list[int]]:
    """Micro-batches of indices for one epoch, a pure function of (seed, epoch).

    Length-grouped: shuffle, cut into mega-batches of ``micro * multiplier``, sort each by length,
    cut into micro-batches, shuffle the micro-batches. Otherwise: shuffle and cut.
    """
    rng = random.Random(f"{seed}:{epoch}")
    idx = list(range(len(lengths)))
    rng.shuffle(idx)
    if not grouped:
        return [idx[i : i + micro] for i in range(0, len(idx), micro)]
    mega = micro * max(multiplier, 1)
    batches = []
    for s in range(0, len(idx), mega):
        chunk = sorted(idx[s : s + mega], key=lambda i: (-lengths[i], i))
        batches += [chunk[j : j + micro] for j in range(0, len(chunk), micro)]
    rng.shuffle(batches)
    return batches


def padding_fraction(batches: list[list[int]], lengths: list[int]) -> float:
    real = sum(lengths[i] for b in batches for i in b)
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    return 1.0 - real / padded if padded else 0.0


# ----------------------------------------------------------------------------- memory


def estimate_step_bytes(cfg, micro: int, seq_len: int, *, act_bytes: int, checkpointing: bool, chunk_tokens: int) -> int:
    """Rough peak of one training step: weights, grads, AdamW moments (fp32) and activations.

    Activations per token and layer follow Korthikanti et al. (2022) with fused attention (no
    T^2 term): ~34 h values; checkpointing keeps one layer's and each layer's input.
    """
    n_params = cfg.vocab_size * cfg.n_embd + cfg.n_ctx * cfg.n_embd + cfg.n_layer * 12 * cfg.n_embd**2
    states = 16 * n_params
    tokens = micro * seq_len
    per_layer = 34 * cfg.n_embd * tokens * act_bytes // 2
    acts = (per_layer + cfg.n_layer * cfg.n_embd * tokens * act_bytes) if checkpointing else cfg.n_layer * per_layer
    head = 3 * min(chunk_tokens, tokens) * cfg.vocab_size * 4
    return states + acts + head


def choose_micro_batch(cfg, tc: TrainConfig, seq_len: int, act_bytes: int) -> int:
    if tc.micro_batch_size != "auto":
        return int(tc.micro_batch_size)
    if not tc.memory_budget_gb:
        raise ConfigError("train.micro_batch_size: auto needs train.memory_budget_gb")
    budget = tc.memory_budget_gb * 2**30
    for micro in sorted((d for d in range(1, tc.batch_size + 1) if tc.batch_size % d == 0), reverse=True):
        if estimate_step_bytes(cfg, micro, seq_len, act_bytes=act_bytes, checkpointing=tc.gradient_checkpointing,
                               chunk_tokens=tc.chunk_tokens) <= budget:
            return micro
    raise ConfigError(
        f"train.memory_budget_gb = {tc.memory_budget_gb}: even a micro-batch of 1 at {seq_len} tokens is "
        "estimated above it; enable gradient_checkpointing or lower max_length"
    )


# ----------------------------------------------------------------------------- training


@dataclass
class TrainResult:
    history: dict
    steps: int
    completed: bool
    stats: dict = field(default_factory=dict)


def _fingerprint(tc: TrainConfig, model_cfg, train: list[dict], val: list[dict], base_id: str) -> str:
    keep = {k: v for k, v in asdict(tc).items() if k not in ("eval_every", "checkpoint_every", "device")}
    payload = json.dumps([keep, asdict(model_cfg), [r["id"] for r in train], [r["id"] for r in val], base_id],
                         sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _rng_state() -> dict:
    st = {"torch": torch.get_rng_state(), "python": list(random.getstate()[1]), "python_pos": random.getstate()[2]}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def _set_rng_state(st: dict) -> None:
    torch.set_rng_state(st["torch"])
    random.setstate((3, tuple(st["python"]), st["python_pos"]))
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


def save_resume(path: Path, state: dict) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_resume(path: Path, fingerprint: str, model: GPT2, optimizer) -> dict:
    """Read a resume state; any problem stops with a message and leaves the file where it is."""
    keep = "It was left in place: delete it to start this model's training over."
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise TunejudgeError(f"{path}: resume state cannot be read ({type(e).__name__}: {str(e)[:200]}). {keep}") from None
    for key in ("fingerprint", "model", "optimizer", "step", "history", "rng"):
        if not isinstance(state, dict) or key not in state:
            raise TunejudgeError(f"{path}: resume state lacks '{key}' (corrupt or from another program). {keep}")
    if state["fingerprint"] != fingerprint:
        raise TunejudgeError(
            f"{path}: resume state belongs to another training set-up (data, base weights or settings changed "
            f"since it was written: {state['fingerprint']} != {fingerprint}). {keep}"
        )
    load_state(model, state["model"], path)
    try:
        optimizer.load_state_dict(state["optimizer"])
    except (ValueError, KeyError, RuntimeError) as e:
        raise TunejudgeError(f"{path}: optimizer state does not fit this model ({e}). {keep}") from None
    return state


def _lr_at(tc: TrainConfig, step: int) -> float:
    if tc.warmup_steps and step < tc.warmup_steps:
        return tc.lr * (step + 1) / tc.warmup_steps
    return tc.lr


@torch.no_grad()
def evaluate(model, examples, micro, mask_prompt, device, autocast) -> float:
    model.eval()
    total, n = 0.0, 0
    order = sorted(range(len(examples)), key=lambda i: -len(examples[i].ids))
    for s in range(0, len(order), micro):
        x, y = collate([examples[i] for i in order[s : s + micro]], mask_prompt, device)
        with autocast():
            total += float(model.loss(x, y, reduction="sum"))
        n += int((y != IGNORE).sum())
    model.train()
    return total / max(n, 1)


def train(
    model: GPT2,
    train_records: list[dict],
    val_records: list[dict],
    enc,
    tc: TrainConfig,
    *,
    resume_dir: Path | None = None,
    base_id: str = "",
    progress=None,
    stop_after_steps: int | None = None,
) -> TrainResult:
    """Fine-tune ``model`` in place. ``stop_after_steps`` simulates an interruption (tests)."""
    device = pick_device(tc.device)
    use_bf16 = tc.dtype == "bfloat16" or (tc.dtype == "auto" and device.type == "cuda")
    if tc.dtype not in ("auto", "float32", "bfloat16"):
        raise ConfigError(f"train.dtype: {tc.dtype!r} (auto, float32 or bfloat16)")

    def autocast():
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16)

    torch.manual_seed(tc.seed)
    random.seed(tc.seed)
    model.to(device).train()
    model.gradient_checkpointing = tc.gradient_checkpointing
    max_len = min(tc.max_length or model.cfg.n_ctx, model.cfg.n_ctx)
    train_ex, tcounts = encode_examples(train_records, enc, max_len, tc.truncation)
    val_ex, vcounts = encode_examples(val_records, enc, max_len, tc.truncation)
    if not train_ex:
        raise TunejudgeError("no training examples left (every record was over train.max_length)")
    lengths = [len(e.ids) - 1 for e in train_ex]
    micro = choose_micro_batch(model.cfg, tc, max(lengths), 2 if use_bf16 else 4)
    accum = math.ceil(tc.batch_size / micro)
    batches_per_epoch = math.ceil(len(train_ex) / micro)
    steps_per_epoch = math.ceil(batches_per_epoch / accum)
    total_steps = steps_per_epoch * tc.epochs

    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": tc.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=tc.lr, betas=tc.betas, fused=device.type == "cuda",
    )
    fingerprint = _fingerprint(tc, model.cfg, train_records, val_records, base_id)
    history = {"evaluations": [], "final_val_loss": None}
    step, tokens_seen = 0, 0
    window_loss, window_tokens = 0.0, 0
    resume_path = Path(resume_dir) / "state.pt" if resume_dir else None
    if resume_path is not None and resume_path.exists():
        state = load_resume(resume_path, fingerprint, model, optimizer)
        step, tokens_seen, history = state["step"], state["tokens_seen"], state["history"]
        window_loss, window_tokens = state.get("window", (0.0, 0))
        _set_rng_state(state["rng"])
        log.info("resuming from %s at step %d of %d", resume_path, step, total_steps)

    log.info(
        "device %s, %s, %s parameters, effective batch %d = micro-batch %d x %d accumulation steps, "
        "%d train / %d val examples, %d steps (%d epochs), max length %d",
        device, "bf16 autocast" if use_bf16 else "float32", f"{model.num_parameters():,}", micro * accum, micro, accum,
        len(train_ex), len(val_ex), total_steps, tc.epochs, max_len,
    )
    for name, c in (("train", tcounts), ("val", vcounts)):
        if c["truncated"] or c["dropped"]:
            log.warning("%s: %d examples truncated, %d dropped at max_length %d", name, c["truncated"], c["dropped"], max_len)

    bar = tqdm(total=total_steps, initial=step, desc="train", unit="step", file=progress, disable=progress is False)
    t0, tok0 = time.perf_counter(), tokens_seen
    completed = True
    while step < total_steps:
        epoch, in_epoch = divmod(step, steps_per_epoch)
        batches = epoch_batches(lengths, micro, tc.seed, epoch, tc.length_grouped, tc.group_multiplier)
        group = batches[in_epoch * accum : (in_epoch + 1) * accum]
        examples = [[train_ex[i] for i in b] for b in group]
        n_targets = sum(
            sum(max(len(e.ids) - 1 - ((e.prompt_len - 1) if tc.mask_prompt else 0), 0) for e in mb) for mb in examples
        )
        for g in optimizer.param_groups:
            g["lr"] = _lr_at(tc, step)
        optimizer.zero_grad(set_to_none=True)
        step_loss = 0.0
        for mb in examples:
            x, y = collate(mb, tc.mask_prompt, device)
            with autocast():
                loss_sum = model.loss(x, y, reduction="sum", chunk_tokens=tc.chunk_tokens)
            (loss_sum / max(n_targets, 1)).backward()
            step_loss += float(loss_sum.detach())
            tokens_seen += sum(len(e.ids) - 1 for e in mb)
        if tc.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
        optimizer.step()
        step += 1
        window_loss += step_loss
        window_tokens += n_targets
        rate = (tokens_seen - tok0) / max(time.perf_counter() - t0, 1e-9)
        bar.set_postfix(loss=f"{step_loss / max(n_targets, 1):.3f}", tok_s=f"{rate:.0f}")
        bar.update(1)
        end_of_epoch = step % steps_per_epoch == 0
        if step % tc.eval_every == 0 or end_of_epoch or step == total_steps:
            val_loss = evaluate(model, val_ex, micro, tc.mask_prompt, device, autocast) if val_ex else None
            entry = {"step": step, "epoch": round(step / steps_per_epoch, 4), "tokens_seen": tokens_seen,
                     "train_loss": round(window_loss / max(window_tokens, 1), 6),
                     "val_loss": None if val_loss is None else round(val_loss, 6)}
            history["evaluations"].append(entry)
            window_loss, window_tokens = 0.0, 0
            log.info("step %d/%d epoch %.2f: train loss %.4f, val loss %s, %d tokens seen, %.0f tokens/s",
                     step, total_steps, entry["epoch"], entry["train_loss"],
                     "n/a" if val_loss is None else f"{val_loss:.4f}", tokens_seen, rate)
        if resume_path is not None and step % tc.checkpoint_every == 0 and step < total_steps:
            save_resume(resume_path, {
                "fingerprint": fingerprint, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "step": step, "tokens_seen": tokens_seen, "history": history, "rng": _rng_state(),
                "window": (window_loss, window_tokens),
            })
        if stop_after_steps is not None and step >= stop_after_steps and step < total_steps:
            completed = False
            break
    bar.close()
    if completed:
        evals = history["evaluations"]
        history["final_val_loss"] = evals[-1]["val_loss"] if evals else None
        history.update({"steps": total_steps, "epochs": tc.epochs, "effective_batch": micro * accum,
                        "micro_batch": micro, "accumulation": accum, "train_examples": len(train_ex),
                        "val_examples": len(val_ex), "max_length": max_len, "train": asdict(tc)})
    elapsed = time.perf_counter() - t0
    stats = {"seconds": elapsed, "tokens_per_s": (tokens_seen - tok0) / max(elapsed, 1e-9), "device": str(device)}
    return TrainResult(history=history, steps=step, completed=completed, stats=stats)


def clear_resume(resume_dir: Path) -> None:
    """After a completed run the resume state is spent; remove it so a later run starts fresh."""
    if resume_dir and Path(resume_dir).exists():
        shutil.rmtree(resume_dir)
