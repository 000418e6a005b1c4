"""One training in several processes: torch.distributed's DDP or FSDP2 (``fully_shard`` per block), over
NCCL on GPUs and gloo on CPUs, launched by torchrun (one machine) or srun + torchrun (a SLURM allocation).

The trainer sees one :class:`Engine`: the forward passes of a step are dealt to the ranks in order (rank r
takes passes r, r + N, ...), each rank's loss is scaled so that the averaged gradient is the sum one
process would have (``N x loss / the step's units``), and DDP all-reduces (or FSDP2 reduce-scatters) it.
Everything else -- the data order, length grouping, accumulation, ``micro_batch_tokens``, the units a step
divides by -- is computed identically on every rank from the same seed, so N processes take the steps one
process takes (a test: the same weights, DDP and FSDP2, full and LoRA). Rank 0 logs, tracks and writes.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import sys
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import ConfigError

MODES = ("auto", "ddp", "fsdp")
# torchrun, from this interpreter (a venv's torchrun need not be on PATH)
TORCHRUN = [sys.executable, "-m", "torch.distributed.run"]


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.size > 1

    def barrier(self) -> None:
        if self.active:
            torch.distributed.barrier()

    def sum(self, values: list[float]) -> list[float]:
        """Each value summed over the ranks (float64 on the CPU: gloo and NCCL alike via the process group)."""
        if not self.active:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=_collective_device())
        torch.distributed.all_reduce(t)
        return t.tolist()

    def gather(self, obj) -> list:
        if not self.active:
            return [obj]
        out = [None] * self.size
        torch.distributed.all_gather_object(out, obj)
        return out


def world() -> World:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return World(torch.distributed.get_rank(), torch.distributed.get_world_size(),
                     int(os.environ.get("LOCAL_RANK", 0)))
    return World()


def rank_device(setting: str, w: World) -> torch.device:
    """The device of this rank: ``train.device`` as :func:`~tunejudge.models.device.pick_device` resolves it,
    and on CUDA the GPU of the rank's local rank."""
    from ..models.device import pick_device

    device = pick_device(setting)
    if w.active and device.type == "cuda":
        return torch.device("cuda", w.local_rank)
    return device


def _collective_device() -> torch.device:
    if torch.distributed.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


@contextlib.contextmanager
def initialized():
    """The process group of a torchrun-launched rank (NCCL with CUDA, else gloo); nothing when alone."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or torch.distributed.is_initialized():
        yield
        return
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    torch.distributed.init_process_group("nccl" if cuda else "gloo")
    try:
        yield
    finally:
        torch.distributed.destroy_process_group()


def launch_command(processes: int, cmd: list[str], env=None) -> list[str]:
    """How to start ``processes`` copies of ``cmd``: torchrun on this machine (standalone rendezvous), or,
    inside a SLURM allocation of several nodes, srun starting one torchrun per node, the rendezvous on the
    allocation's first node (from ``SLURM_JOB_NODELIST``)."""
    env = os.environ if env is None else env
    nodes = int(env.get("SLURM_JOB_NUM_NODES") or env.get("SLURM_NNODES") or 1)
    if nodes > 1:
        if processes % nodes:
            raise ConfigError(f"train.processes = {processes} does not split over the allocation's {nodes} nodes")
        per_node = processes // nodes
        head = "$(scontrol show hostnames \"$SLURM_JOB_NODELIST\" | head -n 1)"
        inner = [*TORCHRUN, f"--nnodes={nodes}", f"--nproc-per-node={per_node}", "--rdzv-backend=c10d",
                 f"--rdzv-endpoint={head}:29500", f"--rdzv-id={env.get('SLURM_JOB_ID', 'tunejudge')}", *cmd[1:]]
        return ["srun", "--overlap", f"--nodes={nodes}", "--ntasks-per-node=1", "bash", "-c", " ".join(
            [x if x.startswith("--rdzv-endpoint") else shlex.quote(x) for x in inner])]
    return [*TORCHRUN, "--standalone", f"--nproc-per-node={processes}", *cmd[1:]]


class _Step(nn.Module):
    """The module DDP and FSDP2 wrap: its forward runs one computation of the model (a pass's loss, the
    reference's log-likelihoods, an evaluation) so that their hooks see it."""

    def __init__(self, lm):
        super().__init__()
        self.lm = lm
        self.model = lm.module  # registered: its parameters are the step's

    def forward(self, fn):
        return fn(self.lm)


class Engine:
    """The model as the trainer drives it: one process, DDP, or FSDP2."""

    def __init__(self, lm, w: World, mode: str = "auto"):
        if mode not in MODES:
            raise ConfigError(f"train.parallel = {mode!r}: one of {', '.join(MODES)}")
        self.lm, self.world = lm, w
        self._lockstep = False  # inside lockstep() under FSDP2
        self.mode = "single" if not w.active else ("ddp" if mode in ("auto", "ddp") else "fsdp")
        self.step = _Step(lm)
        self.wrapped = self.step
        if self.mode == "ddp":
            from torch.nn.parallel import DistributedDataParallel

            device = lm.device
            self.wrapped = DistributedDataParallel(self.step, device_ids=[device.index] if device.type == "cuda" else None)
        elif self.mode == "fsdp":
            from torch.distributed.fsdp import fully_shard

            for block in lm.blocks():  # one shard group per transformer block, the rest in the root's
                fully_shard(block)
            fully_shard(self.step)

    def parameters(self):
        return [p for p in self.step.parameters() if p.requires_grad]

    def __call__(self, fn):
        """Run ``fn(lm)`` through the wrapper (gradients synchronised where they are taken)."""
        if self._lockstep:
            self._more(True)
        return self.wrapped(fn)

    @contextlib.contextmanager
    def lockstep(self, device):
        """Forward passes without gradients (an evaluation, the reference's log-likelihoods) on a share of the
        data each. FSDP2 gathers every block's shards with all ranks at each pass, so the ranks must run as
        many passes as each other, yet each knows only its own count: before each pass every rank says whether
        it has one to run (a one-number all-reduce), and a rank that has none runs an idle pass (one padding
        token, the result dropped) while any other has -- the collectives of all ranks then line up."""
        self._lockstep = self.mode == "fsdp"
        try:
            yield
            self.even_out(device)
        finally:
            self._lockstep = False

    def even_out(self, device) -> None:
        """Inside :meth:`lockstep`, once this rank's own passes are done: idle passes until no rank has one
        left (call it before a collective of another kind, such as gathering what the passes computed)."""
        if not self._lockstep:
            return
        idle = torch.full((1, 1), self.lm.pad_id, dtype=torch.long, device=device)
        with torch.no_grad():
            while self._more(False):
                self.wrapped(lambda lm: lm.module(idle))

    def _more(self, mine: bool) -> bool:
        """Whether any rank has a pass to run (``mine``: this rank has)."""
        t = torch.tensor([int(mine)], device=_collective_device())
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
        return bool(t.item())

    def passes_per_rank(self, n: int) -> int:
        """How many passes each rank runs for a step of ``n``: its share, except under FSDP2, where every rank
        runs as many as the busiest (the others' extra passes carry no weight) -- see :meth:`lockstep`."""
        share = -(-n // self.world.size) if self.world.active else n
        return share if self.mode == "fsdp" else max(1, len(range(self.world.rank, n, self.world.size)))

    def no_sync(self, last: bool):
        """DDP: skip the all-reduce on all but the last pass of a step (accumulation); FSDP2 the same."""
        if self.mode == "ddp" and not last:
            return self.wrapped.no_sync()
        if self.mode == "fsdp":
            self.step.set_requires_gradient_sync(last)
        return contextlib.nullcontext()

    # ------------------------------------------------------------ state
    def trainable_state(self) -> dict[str, torch.Tensor]:
        """The weights that train, whole (FSDP2: gathered from every rank; a collective)."""
        if self.mode != "fsdp":
            return self.lm.trainable_state()
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        full = get_model_state_dict(self.step, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        own = dict(self.lm.module.named_parameters())
        return {n: full[f"model.{n}"] for n, p in own.items() if p.requires_grad and f"model.{n}" in full}

    def optimizer_state(self, optimizer) -> dict:
        if self.mode != "fsdp":
            return optimizer.state_dict()
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            get_optimizer_state_dict,
        )

        return get_optimizer_state_dict(self.step, optimizer,
                                        options=StateDictOptions(full_state_dict=True, cpu_offload=True))

    def load(self, model_state: dict, optimizer, optimizer_state: dict, where) -> None:
        if self.mode != "fsdp":
            self.lm.load_trainable_state(model_state, where)
            optimizer.load_state_dict(optimizer_state)
            return
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            set_model_state_dict,
            set_optimizer_state_dict,
        )

        opts = StateDictOptions(full_state_dict=True, strict=False)
        set_model_state_dict(self.step, {f"model.{k}": v for k, v in model_state.items()}, options=opts)
        set_optimizer_state_dict(self.step, optimizer, optimizer_state, options=opts)
