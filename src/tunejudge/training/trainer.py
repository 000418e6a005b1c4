"""Memory-lean instruction tuning of any model family (the recipe of LLMs from Scratch ch. 7, made to fit).

The trainer sees only the :class:`~tunejudge.models.CausalLM` contract, so GPT-2 from scratch and a
transformers model, fully or through a LoRA adapter, train on the same loop. Effective batch =
micro-batch x gradient-accumulation steps; length-grouped batches keep padding small; the loss
reaches the vocabulary projection only at target positions, in checkpointed chunks; bf16 autocast on
CUDA; optional activation checkpointing. Examples longer than ``max_length`` in the model's own
tokens get the curation's length policy (input truncated, or dropped), counted. Every
``checkpoint_every`` steps the training state (the weights that train: all, or the adapter's; the
optimizer; the RNGs) goes to ``resume_dir``, so an interrupted run resumes and ends with the same
weights as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import random
import resource
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from ..data.fit import check_policy, fit_example
from ..errors import ConfigError, TunejudgeError
from ..io import atomic_path
from ..models.core import IGNORE, CausalLM
from .preference import PairExample

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    epochs: int = 2
    batch_size: int = 8                 # effective batch (records per optimizer step)
    micro_batch_size: int | str = 8     # records per forward pass, or "auto" (from memory_budget_gb)
    micro_batch_tokens: int | None = None  # at most this many (padded) tokens per forward pass: long records
                                        # go in smaller passes; bounds activation memory, same update
    memory_budget_gb: float | None = None
    lr: float = 5e-5
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.999)
    grad_clip: float | None = None
    warmup_steps: int = 0
    seed: int = 123
    eval_every: int = 5                 # optimizer steps between evaluations
    checkpoint_every: int = 20          # optimizer steps between resume states
    max_length: int | None = None       # tokens per example (the model's own); default: the model's context
    truncation: str = "truncate_input"  # truncate_input | drop: examples over max_length (curation's policy)
    mask_prompt: bool = False           # the study trained on prompt tokens too
    length_grouped: bool = True
    group_multiplier: int = 50          # micro-batches per length-sorted mega-batch
    gradient_checkpointing: bool = False
    dtype: str = "auto"                 # auto (bf16 autocast where native: CUDA, AVX512-BF16/AMX CPUs) | float32 | bfloat16
    device: str = "auto"
    chunk_tokens: int = 4096            # tokens per chunk of the vocabulary projection
    processes: int = 1                  # processes of one training (torchrun / srun; one per GPU)
    parallel: str = "auto"              # auto (DDP) | ddp | fsdp (FSDP2: fully_shard per block)

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
        if cfg.truncation == "truncate":
            raise ConfigError("train.truncation: truncate cut an example's end, its answer and EOS with it (a model "
                              "that never learns to stop): use truncate_input (the input is shortened) or drop")
        check_policy(cfg.truncation, "train.truncation")
        if cfg.micro_batch_size != "auto" and (int(cfg.micro_batch_size) < 1 or cfg.batch_size % int(cfg.micro_batch_size)):
            raise ConfigError(f"train.micro_batch_size {cfg.micro_batch_size} must divide batch_size {cfg.batch_size}")
        return cfg


# ----------------------------------------------------------------------------- data


@dataclass
class Example:
    ids: list[int]      # prompt + answer + the end token (EOS, or a chat template's end of turn)
    prompt_len: int


def encode_examples(records: list[dict], lm: CausalLM, max_length: int, policy: str,
                    mask_prompt: bool = False) -> tuple[list[Example], dict]:
    """Every record as token ids of the model, fitted to ``max_length + 1`` tokens (inputs are
    ``ids[:-1]``) by the length policy; counts of truncated and dropped records. With ``mask_prompt``
    a record left with nothing to learn beyond the end token stops the run, named."""
    out, counts = [], {"truncated": 0, "dropped": 0}
    for rec in records:
        got = fit_example(lm, rec, max_length + 1, policy)
        if got is None:
            counts["dropped"] += 1
            continue
        ids, prompt_len, how = got
        counts["truncated"] += how == "truncated"
        if mask_prompt and len(ids) - prompt_len < 2:
            raise TunejudgeError(
                f"record {rec.get('id')} ({rec.get('source')}): with train.mask_prompt its answer has no token to "
                f"learn ({len(ids)} tokens, {prompt_len} of them prompt): the loss would silently be zero. Check the "
                "prompt format of the base (chat template) or train without mask_prompt")
        out.append(Example(ids, prompt_len))
    return out, counts


def collate(examples: list[Example], mask_prompt: bool, device, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded inputs and targets. Padding is IGNORE by position, never by token id: the end
    token (EOS, often also the padding token) stays a target, so the model learns to stop."""
    longest = max(len(e.ids) for e in examples) - 1
    x = torch.full((len(examples), longest), pad_id, dtype=torch.long)
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


def token_bounded(examples: list, cap: int | None) -> list[list]:
    """A micro-batch split into forward passes of at most ``cap`` padded tokens (longest first); one
    example longer than ``cap`` is a pass of its own. The update is the same: every pass's loss is
    summed and the step divides by its target count."""
    if not cap:
        return [examples]
    out, part, longest = [], [], 0
    for e in sorted(examples, key=lambda e: -len(e.ids)):
        n = len(e.ids) - 1
        if part and (len(part) + 1) * max(longest, n) > cap:
            out.append(part)
            part, longest = [], 0
        part.append(e)
        longest = max(longest, n)
    return out + ([part] if part else [])


def padding_fraction(batches: list[list[int]], lengths: list[int]) -> float:
    real = sum(lengths[i] for b in batches for i in b)
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    return 1.0 - real / padded if padded else 0.0


@dataclass(frozen=True)
class SFT:
    """The objective of instruction tuning (the study's): the summed cross-entropy of every target token,
    divided by the step's target count. :class:`tunejudge.training.preference.Preference` is the other."""

    mask_prompt: bool = False
    name: str = "sft"
    needs_reference = False

    def describe(self) -> dict:
        return {"objective": self.name}

    def encode(self, records, lm, max_tokens, policy):
        return encode_examples(records, lm, max_tokens - 1, policy, self.mask_prompt)

    def length(self, ex: Example) -> int:
        return len(ex.ids) - 1

    def units(self, examples: list[Example]) -> int:
        return sum(max(len(e.ids) - 1 - ((e.prompt_len - 1) if self.mask_prompt else 0), 0) for e in examples)

    def tokens(self, examples: list[Example]) -> int:
        return sum(len(e.ids) - 1 for e in examples)

    def bounded(self, examples, cap):
        return token_bounded(examples, cap)

    def loss(self, lm, part, device, chunk_tokens: int):
        x, y = collate(part, self.mask_prompt, device, lm.pad_id)
        return lm.loss(x, y, chunk_tokens=chunk_tokens)

    def prepare(self, *args, **kwargs) -> None:
        return None

    def eval_sums(self, run, lm, examples, micro, device, autocast, chunk_tokens, cap) -> dict:
        return evaluation_sums(run, lm, examples, micro, self.mask_prompt, device, autocast, chunk_tokens, cap)

    def summarize(self, sums: dict) -> dict:
        return {"loss": sums["loss_sum"] / max(sums["units"], 1)}

    def state(self, examples) -> dict:
        return {}

    def load_state(self, state, examples, where) -> None:
        return None


# ----------------------------------------------------------------------------- memory


def estimate_step_bytes(shape: dict, micro: int, seq_len: int, *, act_bytes: int, checkpointing: bool,
                        chunk_tokens: int) -> int:
    """Rough peak of one training step: weights (fp32), and for the weights that train their grads and
    AdamW moments; activations.

    ``shape``: :meth:`CausalLM.shape` (parameters, trainable, vocab, hidden, layers). Activations per
    token and layer follow Korthikanti et al. (2022) with fused attention (no T^2 term): ~34 h values;
    checkpointing keeps one layer's and each layer's input.
    """
    h, layers = shape["hidden"], shape["layers"]
    states = 4 * shape["parameters"] + 12 * shape["trainable"]
    tokens = micro * seq_len
    per_layer = 34 * h * tokens * act_bytes // 2
    acts = (per_layer + layers * h * tokens * act_bytes) if checkpointing else layers * per_layer
    head = 3 * min(chunk_tokens, tokens) * shape["vocab"] * 4
    return states + acts + head


def choose_micro_batch(shape: dict, tc: TrainConfig, seq_len: int, act_bytes: int) -> int:
    if tc.micro_batch_size != "auto":
        return int(tc.micro_batch_size)
    if not tc.memory_budget_gb:
        raise ConfigError("train.micro_batch_size: auto needs train.memory_budget_gb")
    budget = tc.memory_budget_gb * 2**30
    for micro in sorted((d for d in range(1, tc.batch_size + 1) if tc.batch_size % d == 0), reverse=True):
        if estimate_step_bytes(shape, micro, seq_len, act_bytes=act_bytes, checkpointing=tc.gradient_checkpointing,
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
    full_state: dict | None = None  # FSDP2: the trained weights gathered whole (the model holds a shard)


def _fingerprint(tc: TrainConfig, lm: CausalLM, train: list[dict], val: list[dict], base_id: str) -> str:
    keep = {k: v for k, v in asdict(tc).items() if k not in ("eval_every", "checkpoint_every", "device")}
    payload = json.dumps([keep, lm.family, lm.shape(), [r["id"] for r in train], [r["id"] for r in val], base_id],
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


def load_resume(path: Path, fingerprint: str, engine, optimizer, processes: int = 1) -> dict:
    """Read a resume state; any problem stops with a message and leaves the file where it is."""
    keep = "It was left in place: delete it to start this model's training over."
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise TunejudgeError(f"{path}: resume state cannot be read ({type(e).__name__}: {str(e)[:200]}). {keep}") from None
    for key in ("fingerprint", "model", "optimizer", "step", "history", "rng"):
        if not isinstance(state, dict) or key not in state:
            raise TunejudgeError(f"{path}: resume state lacks '{key}' (corrupt or from another program). {keep}")
    if state.get("world_size", 1) != processes:
        raise TunejudgeError(f"{path}: the resume state was written by a training in {state.get('world_size', 1)} "
                             f"processes, this one runs in {processes}: resume it with train.processes = "
                             f"{state.get('world_size', 1)}. {keep}")
    if state["fingerprint"] != fingerprint:
        raise TunejudgeError(
            f"{path}: resume state belongs to another training set-up (data, base weights or settings changed "
            f"since it was written: {state['fingerprint']} != {fingerprint}). {keep}"
        )
    try:
        engine.load(state["model"], optimizer, state["optimizer"], path)
    except (ValueError, KeyError, RuntimeError) as e:
        raise TunejudgeError(f"{path}: optimizer state does not fit this model ({e}). {keep}") from None
    return state


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory of this process's training: CUDA's allocator peak, else the process's max RSS."""
    if getattr(device, "type", str(device)) == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024


def native_bf16(device: torch.device) -> bool:
    """Whether bf16 autocast runs natively here: CUDA, or a CPU with AVX512-BF16 or AMX (a LoRA step
    of SmolLM2-135M: 1.35x the float32 rate on a 2-core AMD EPYC). Elsewhere bf16 is emulated, slower.
    The CPU probe is :func:`tunejudge.run.numerics.cpu_bf16`, the one rule ``train``'s parameters use."""
    from ..run.numerics import cpu_bf16

    if device.type == "cuda":
        return True
    return device.type == "cpu" and cpu_bf16()


def compute_dtype(tc: TrainConfig, device: torch.device) -> str:
    """What a training computes in on ``device``: ``bfloat16`` (autocast) or ``float32``."""
    if tc.dtype not in ("auto", "float32", "bfloat16"):
        raise ConfigError(f"train.dtype: {tc.dtype!r} (auto, float32 or bfloat16)")
    return "bfloat16" if tc.dtype == "bfloat16" or (tc.dtype == "auto" and native_bf16(device)) else "float32"


def _lr_at(tc: TrainConfig, step: int) -> float:
    if tc.warmup_steps and step < tc.warmup_steps:
        return tc.lr * (step + 1) / tc.warmup_steps
    return tc.lr


@torch.no_grad()
def evaluation_sums(run, lm: CausalLM, examples, micro, mask_prompt, device, autocast, chunk_tokens: int = 4096,
                    micro_tokens: int | None = None) -> dict:
    """The summed loss and the target count over ``examples``, the model run through ``run`` (an engine)."""
    lm.module.eval()
    total, n = 0.0, 0
    order = sorted(range(len(examples)), key=lambda i: -len(examples[i].ids))
    for s in range(0, len(order), micro):
        for part in token_bounded([examples[i] for i in order[s : s + micro]], micro_tokens):
            x, y = collate(part, mask_prompt, device, lm.pad_id)
            with autocast():
                total += float(run(lambda m, x=x, y=y: m.loss(x, y, chunk_tokens=chunk_tokens)))
            n += int((y != IGNORE).sum())
    lm.module.train()
    return {"loss_sum": total, "units": n}


@dataclass
class Setup:
    """What a training resolved before its first step: where it runs, its examples, its batching, its
    optimizer. Built once by :func:`setup`; every other piece of the loop reads it."""

    tc: TrainConfig
    lm: CausalLM
    objective: object
    world: object
    device: torch.device
    bf16: bool
    engine: object
    params: list                 # the weights that train (the engine's: FSDP2 shards them)
    optimizer: torch.optim.Optimizer
    train_ex: list
    val_ex: list
    counts: dict                 # length policy: {"train": {...}, "val": {...}}
    lengths: list[int]
    max_len: int
    micro: int
    accum: int
    steps_per_epoch: int
    total_steps: int
    fingerprint: str

    def autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16)

    @property
    def dtype(self) -> str:
        """The dtype the training computes in: bfloat16 (autocast) or float32."""
        return "bfloat16" if self.bf16 else "float32"


@dataclass
class State:
    """What a resume restores: the step, tokens seen, the loss window since the last evaluation, the history."""

    step: int = 0
    tokens_seen: int = 0
    window_loss: float = 0.0
    window_tokens: int = 0
    history: dict = field(default_factory=lambda: {"evaluations": [], "final_val_loss": None})


def setup(lm: CausalLM, train_records: list[dict], val_records: list[dict], tc: TrainConfig, *, base_id: str = "",
          objective=None) -> Setup:
    """Check the settings, place the model, encode the examples, size the batches, build the optimizer."""
    from .distributed import Engine, rank_device, world

    w = world()
    if w.active and tc.processes not in (1, w.size):
        raise ConfigError(f"train.processes = {tc.processes}, but this training runs in {w.size} processes")
    device = rank_device(tc.device, w)
    bf16 = compute_dtype(tc, device) == "bfloat16"  # checks train.dtype before anything is placed
    torch.manual_seed(tc.seed)
    random.seed(tc.seed)
    lm.to(device)
    lm.module.train()
    lm.set_gradient_checkpointing(tc.gradient_checkpointing)
    max_len = min(tc.max_length or lm.context_length, lm.context_length)
    objective = objective or SFT(tc.mask_prompt)
    train_ex, tcounts = objective.encode(train_records, lm, max_len + 1, tc.truncation)
    val_ex, vcounts = objective.encode(val_records, lm, max_len + 1, tc.truncation)
    if not train_ex:
        raise TunejudgeError(f"no training examples left (every record was over train.max_length = {max_len} tokens "
                             f"of the model, policy {tc.truncation})")
    lengths = [objective.length(e) for e in train_ex]
    seqs = 2 if isinstance(train_ex[0], PairExample) else 1  # a pair is two sequences per forward pass
    micro = choose_micro_batch(lm.shape(), tc, seqs * max(lengths), 2 if bf16 else 4)
    accum = math.ceil(tc.batch_size / micro)
    steps_per_epoch = math.ceil(math.ceil(len(train_ex) / micro) / accum)
    engine = Engine(lm, w, tc.parallel)  # one process, DDP or FSDP2 (it shards the weights in place)
    params = engine.parameters()
    optimizer = torch.optim.AdamW(
        [{"params": [p for p in params if p.dim() >= 2], "weight_decay": tc.weight_decay},
         {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}],
        lr=tc.lr, betas=tc.betas, fused=device.type == "cuda",
    )
    fingerprint = _fingerprint(tc, lm, train_records, val_records,
                               base_id if objective.name == "sft" else f"{base_id}:{json.dumps(objective.describe(), sort_keys=True)}")
    return Setup(tc, lm, objective, w, device, bf16, engine, params, optimizer, train_ex, val_ex,
                 {"train": tcounts, "val": vcounts}, lengths, max_len, micro, accum, steps_per_epoch,
                 steps_per_epoch * tc.epochs, fingerprint)


def resume(s: Setup, resume_path: Path | None) -> State:
    """The state to start from: the resume state at ``resume_path`` (weights, optimizer and RNGs
    restored in place), or a fresh one."""
    if resume_path is None or not resume_path.exists():
        return State()
    st = load_resume(resume_path, s.fingerprint, s.engine, s.optimizer, s.world.size)
    window_loss, window_tokens = st.get("window", (0.0, 0))
    _set_rng_state(st["rng"] if not s.world.active else st["rng_ranks"][s.world.rank])
    s.objective.load_state(st.get("objective"), s.train_ex + s.val_ex, resume_path)
    if s.world.main:
        log.info("resuming from %s at step %d of %d", resume_path, st["step"], s.total_steps)
    return State(st["step"], st["tokens_seen"], window_loss, window_tokens, st["history"])


def _log_setup(s: Setup) -> None:
    tc, w = s.tc, s.world
    log.info(
        "device %s, %s, %s parameters (%s trained), effective batch %d = micro-batch %d x %d accumulation steps, "
        "%d train / %d val examples, %d steps (%d epochs), max length %d",
        s.device, "bf16 autocast" if s.bf16 else "float32", f"{s.lm.num_parameters():,}", f"{s.lm.num_trainable():,}",
        s.micro * s.accum, s.micro, s.accum, len(s.train_ex), len(s.val_ex), s.total_steps, tc.epochs, s.max_len,
    )
    if w.active:
        log.info("%d processes (%s): each step's forward passes dealt to the ranks in turn", w.size, s.engine.mode)
        if s.accum < w.size:
            log.warning("a step has %d forward passes of %d records and %d processes take them: %d wait at each "
                        "step; make batch_size / micro_batch_size a multiple of train.processes", s.accum, s.micro,
                        w.size, w.size - s.accum)
    for name, c in s.counts.items():
        if c["truncated"] or c["dropped"]:
            log.warning("%s: %d examples with their input truncated, %d dropped at max_length %d (%s)", name,
                        c["truncated"], c["dropped"], s.max_len, tc.truncation)


class EpochOrder:
    """The micro-batches of each epoch (:func:`epoch_batches`, a pure function of seed and epoch),
    computed once per epoch rather than at every step."""

    def __init__(self, s: Setup):
        self.s, self.epoch, self.batches = s, None, []

    def step_examples(self, step: int) -> list[list]:
        """The micro-batches of examples optimizer step ``step`` accumulates over."""
        s = self.s
        epoch, in_epoch = divmod(step, s.steps_per_epoch)
        if epoch != self.epoch:
            self.epoch = epoch
            self.batches = epoch_batches(s.lengths, s.micro, s.tc.seed, epoch, s.tc.length_grouped,
                                         s.tc.group_multiplier)
        group = self.batches[in_epoch * s.accum : (in_epoch + 1) * s.accum]
        return [[s.train_ex[i] for i in b] for b in group]


def train_step(s: Setup, st: State, examples: list[list]) -> tuple[float, int]:
    """One optimizer step over ``examples`` (micro-batches): every forward pass's summed loss over the
    step's target count, dealt to the ranks in turn. Returns (the step's summed loss, its target count)."""
    tc, w, objective = s.tc, s.world, s.objective
    n_targets = sum(objective.units(mb) for mb in examples)
    for g in s.optimizer.param_groups:
        g["lr"] = _lr_at(tc, st.step)
    s.optimizer.zero_grad(set_to_none=True)
    if n_targets == 0:
        raise TunejudgeError(f"step {st.step}: no target token in the batch: the loss would silently be zero")
    passes = [part for group in examples for part in objective.bounded(group, tc.micro_batch_tokens)]
    st.tokens_seen += sum(objective.tokens(mb) for mb in passes)
    mine = passes[w.rank :: w.size] if w.active else passes
    # DDP and FSDP2 average the ranks' gradients: N x the rank's share is the sum. A rank short of passes
    # (fewer than ranks; under FSDP2, fewer than the busiest rank) runs passes that add nothing, so that
    # every rank takes part in each collective
    weights = [float(w.size)] * len(mine)
    pad = s.engine.passes_per_rank(len(passes)) - len(mine)
    mine, weights = mine + [passes[0]] * pad, weights + [0.0] * pad
    step_loss = 0.0
    for i, (mb, weight) in enumerate(zip(mine, weights)):
        with s.engine.no_sync(last=i == len(mine) - 1), s.autocast():
            loss_sum = s.engine(lambda m, mb=mb: objective.loss(m, mb, s.device, tc.chunk_tokens))
        ((loss_sum / max(n_targets, 1)) if not w.active else (loss_sum * weight / max(n_targets, 1))).backward()
        step_loss += float(loss_sum.detach()) * (weight > 0)
    if w.active:
        step_loss = w.sum([step_loss])[0]
    if tc.grad_clip:
        torch.nn.utils.clip_grad_norm_(s.params, tc.grad_clip)
    s.optimizer.step()
    st.step += 1
    st.window_loss += step_loss
    st.window_tokens += n_targets
    return step_loss, n_targets


def evaluate(s: Setup, st: State, rate: float) -> dict:
    """The validation metrics now, with the train loss since the last evaluation: one history entry."""
    w, val = s.world, {}
    if s.val_ex:
        with s.engine.lockstep(s.device):
            sums = s.objective.eval_sums(s.engine, s.lm, s.val_ex[w.rank :: w.size] if w.active else s.val_ex,
                                         s.micro, s.device, s.autocast, s.tc.chunk_tokens, s.tc.micro_batch_tokens)
        keys = sorted(sums)
        val = s.objective.summarize(dict(zip(keys, w.sum([sums[k] for k in keys]))))
    val_loss = val.get("loss")
    entry = {"step": st.step, "epoch": round(st.step / s.steps_per_epoch, 4), "tokens_seen": st.tokens_seen,
             "train_loss": round(st.window_loss / max(st.window_tokens, 1), 6),
             "val_loss": None if val_loss is None else round(val_loss, 6),
             **{f"val_{k}": round(v, 6) for k, v in val.items() if k != "loss"}}
    st.history["evaluations"].append(entry)
    st.window_loss, st.window_tokens = 0.0, 0
    if w.main:
        log.info("step %d/%d epoch %.2f: train loss %.4f, val loss %s, %d tokens seen, %.0f tokens/s",
                 st.step, s.total_steps, entry["epoch"], entry["train_loss"],
                 "n/a" if val_loss is None else f"{val_loss:.4f}", st.tokens_seen, rate)
    return entry


def checkpoint(s: Setup, st: State, resume_path: Path) -> None:
    """The resume state (trainable weights, optimizer, every rank's RNGs, the loop's state), written by rank 0."""
    w = s.world
    model_state, optim_state = s.engine.trainable_state(), s.engine.optimizer_state(s.optimizer)  # collectives
    rngs = w.gather(_rng_state())
    if w.main:
        save_resume(resume_path, {
            "fingerprint": s.fingerprint, "model": model_state, "optimizer": optim_state,
            "step": st.step, "tokens_seen": st.tokens_seen, "history": st.history, "rng": rngs[0],
            "rng_ranks": rngs, "world_size": w.size,
            "window": (st.window_loss, st.window_tokens), "objective": s.objective.state(s.train_ex + s.val_ex),
        })
    w.barrier()


def _final_history(s: Setup, st: State) -> dict:
    tc, evals = s.tc, st.history["evaluations"]
    return {**st.history, "final_val_loss": evals[-1]["val_loss"] if evals else None,
            "steps": s.total_steps, "epochs": tc.epochs, "effective_batch": s.micro * s.accum,
            "micro_batch": s.micro, "accumulation": s.accum, "train_examples": len(s.train_ex),
            "val_examples": len(s.val_ex), "max_length": s.max_len, "train": asdict(tc), "length_policy": s.counts,
            **({} if s.objective.name == "sft" else {"objective": s.objective.describe()}),
            "parameters": s.lm.num_parameters(), "trainable_parameters": s.lm.num_trainable()}


def train(lm: CausalLM, train_records: list[dict], val_records: list[dict], tc: TrainConfig, *,
          resume_dir: Path | None = None, base_id: str = "", progress=None, stop_after_steps: int | None = None,
          track=None, objective=None) -> TrainResult:
    """Fine-tune ``lm`` in place (the weights that require grad: all of them, or a LoRA adapter's):
    :func:`setup`, :func:`resume`, then :func:`train_step` after step, :func:`evaluate` every ``eval_every``
    steps and at each epoch's end, :func:`checkpoint` every ``checkpoint_every`` steps.

    ``stop_after_steps`` simulates an interruption (tests). ``track``: ``resume_step -> Tracker``
    (tunejudge.training.trackers), opened once the starting step is known; it gets every step's loss, learning
    rate, tokens/s and peak memory, every evaluation, and at the end the settings and final metrics.
    ``objective``: what a step minimises over what examples -- :class:`SFT` (the default: instruction records)
    or :class:`tunejudge.training.preference.Preference` (preference rows: DPO, SimPO)."""
    from .trackers import Tracker

    s = setup(lm, train_records, val_records, tc, base_id=base_id, objective=objective)
    resume_path = Path(resume_dir) / "state.pt" if resume_dir else None
    st = resume(s, resume_path)
    with s.engine.lockstep(s.device):
        s.objective.prepare(s.engine, lm, s.train_ex + s.val_ex, s.micro, s.device, s.autocast, tc.chunk_tokens,
                            tc.micro_batch_tokens, s.world)
    if s.world.main:
        _log_setup(s)
    bar = tqdm(total=s.total_steps, initial=st.step, desc="train", unit="step", file=progress,
               disable=progress is False or not s.world.main)
    t0, tok0, order, completed = time.perf_counter(), st.tokens_seen, EpochOrder(s), True
    with contextlib.closing(track(st.step) if track and s.world.main else Tracker()) as tracker:
        while st.step < s.total_steps:
            step_loss, n_targets = train_step(s, st, order.step_examples(st.step))
            rate = (st.tokens_seen - tok0) / max(time.perf_counter() - t0, 1e-9)
            bar.set_postfix(loss=f"{step_loss / max(n_targets, 1):.3f}", tok_s=f"{rate:.0f}")
            bar.update(1)
            tracker.step(st.step, {"loss": step_loss / max(n_targets, 1), "lr": s.optimizer.param_groups[0]["lr"],
                                   "tokens_per_s": rate, "peak_memory_mb": peak_memory_mb(s.device)})
            if st.step % tc.eval_every == 0 or st.step % s.steps_per_epoch == 0 or st.step == s.total_steps:
                entry = evaluate(s, st, rate)
                tracker.evaluation(st.step, {"val_loss": entry["val_loss"], "train_loss": entry["train_loss"],
                                             "tokens_seen": st.tokens_seen})
            if resume_path is not None and st.step % tc.checkpoint_every == 0 and st.step < s.total_steps:
                checkpoint(s, st, resume_path)
            if stop_after_steps is not None and stop_after_steps <= st.step < s.total_steps:
                completed = False
                break
        bar.close()
        if completed:
            st.history = _final_history(s, st)
            tracker.finish({"lr": tc.lr, "epochs": tc.epochs, "seed": tc.seed, "effective_batch": s.micro * s.accum,
                            "max_length": s.max_len, "trainable_parameters": lm.num_trainable()},
                           {"final_val_loss": st.history["final_val_loss"]})
    elapsed = time.perf_counter() - t0
    stats = {"seconds": elapsed, "tokens_per_s": (st.tokens_seen - tok0) / max(elapsed, 1e-9), "device": str(s.device),
             "dtype": s.dtype, "processes": s.world.size, "parallel": s.engine.mode}
    # FSDP2 left each rank a shard: the whole trainable weights, gathered, for rank 0's export
    full = s.engine.trainable_state() if s.engine.mode == "fsdp" and completed else None
    return TrainResult(history=st.history, steps=st.step, completed=completed, stats=stats, full_state=full)


def clear_resume(resume_dir: Path) -> None:
    """After a completed run the resume state is spent; remove it so a later run starts fresh."""
    if resume_dir and Path(resume_dir).exists():
        shutil.rmtree(resume_dir)
