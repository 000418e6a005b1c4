"""Preference tuning on the trainer: DPO's sigmoid loss (Rafailov et al. 2023) and SimPO's reference-free
one (Meng et al. 2024), over (prompt, chosen, rejected) pairs of a preference set (``data.preferences``).

DPO compares the policy's log-likelihood ratio of the chosen over the rejected completion with the
reference's: ``-log sigmoid(beta * ((pi_c - pi_r) - (ref_c - ref_r)))``, the log-likelihoods summed over
each completion's tokens (prompt masked), as TRL's ``DPOTrainer`` does (``loss_type="sigmoid"``; a test
checks the two agree). SimPO needs no reference: ``-log sigmoid(beta * (pi_c / |c| - pi_r / |r|) - gamma)``.

The reference is the model before this training: the policy with its LoRA adapter disabled, or -- for full
fine-tuning -- the policy itself before its first update. Either way its log-likelihoods are computed
once, before the first step, for every pair (train and val), and kept in the resume state: no second copy
of the weights is ever held, and a resumed run compares with the same reference.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..data.fit import fit_example
from ..errors import ConfigError, TunejudgeError
from ..models.core import IGNORE

log = logging.getLogger(__name__)

LOSSES = ("sigmoid", "simpo")


@dataclass
class PairExample:
    chosen: list[int]  # prompt + chosen completion + the end token
    rejected: list[int]  # prompt + rejected completion + the end token
    prompt_len: int  # the prompt's tokens, shared by both
    key: str = ""  # the pair's identity in a resume state
    ref: tuple[float, float] | None = None  # the reference's summed log-likelihoods (chosen, rejected)


@dataclass(frozen=True)
class Preference:
    """The objective of preference tuning, for :func:`tunejudge.training.trainer.train`."""

    loss_type: str = "sigmoid"
    beta: float = 0.1
    simpo_gamma: float = 0.5
    min_margin: float = 0.0  # pairs whose margin (the set's scores) is at most this are left out
    name: str = "dpo"

    def __post_init__(self):
        if self.loss_type not in LOSSES:
            raise ConfigError(f"dpo.loss = {self.loss_type!r}: one of {', '.join(LOSSES)}")
        if not self.beta > 0:
            raise ConfigError(f"dpo.beta must be above 0, got {self.beta}")

    @property
    def needs_reference(self) -> bool:
        return self.loss_type == "sigmoid"

    def describe(self) -> dict:
        return {"objective": self.name, "loss": self.loss_type, "beta": self.beta, "simpo_gamma": self.simpo_gamma,
                "min_margin": self.min_margin}

    # ---------------------------------------------------------------- data
    def encode(self, rows: list[dict], lm, max_tokens: int, policy: str) -> tuple[list[PairExample], dict]:
        """Every pair as token ids of the model: its prompt (the model's own format for the row's record),
        each completion and the end token, within ``max_tokens`` by the length policy -- one cut of the
        input for both completions, fitted to the longer one, so both keep the same prompt."""
        out, counts = [], {"truncated": 0, "dropped": 0, "below_margin": 0}
        for row in rows:
            if float(row.get("margin", 1.0)) <= self.min_margin:
                counts["below_margin"] += 1
                continue
            rec = {k: row[k] for k in ("id", "source", "instruction", "input") if k in row}
            longer = max(row["chosen"], row["rejected"], key=lambda c: len(lm.encode(c)))
            got = fit_example(lm, {**rec, "output": longer}, max_tokens, policy)
            if got is None:
                counts["dropped"] += 1
                continue
            _, prompt_len, how = got
            if how == "truncated":  # the input as cut for the longer completion, for both
                from ..data.fit import truncate_input

                rec = truncate_input({**rec, "output": longer, "meta": row.get("meta") or {}}, lm, max_tokens,
                                     lm.example_length)
                counts["truncated"] += 1
            chosen, prompt_len = lm.example_ids({**rec, "output": row["chosen"]})
            rejected, _ = lm.example_ids({**rec, "output": row["rejected"]})
            if len(chosen) > max_tokens or len(rejected) > max_tokens or prompt_len >= min(len(chosen), len(rejected)):
                counts["dropped"] += 1
                continue
            key = hashlib.sha256(json.dumps([row["prompt"], row["chosen"], row["rejected"]]).encode()).hexdigest()[:16]
            out.append(PairExample(chosen, rejected, prompt_len, key))
        return out, counts

    def length(self, ex: PairExample) -> int:
        return max(len(ex.chosen), len(ex.rejected)) - 1

    def units(self, examples: list[PairExample]) -> int:
        return len(examples)

    def tokens(self, examples: list[PairExample]) -> int:
        return sum(len(e.chosen) - 1 + len(e.rejected) - 1 for e in examples)

    def bounded(self, examples: list[PairExample], cap: int | None) -> list[list[PairExample]]:
        """Pairs in forward passes of at most ``cap`` padded tokens (both completions of a pair count)."""
        if not cap:
            return [examples]
        out, part, longest = [], [], 0
        for e in sorted(examples, key=lambda e: -self.length(e)):
            n = self.length(e)
            if part and 2 * (len(part) + 1) * max(longest, n) > cap:
                out.append(part)
                part, longest = [], 0
            part.append(e)
            longest = max(longest, n)
        return out + ([part] if part else [])

    # ---------------------------------------------------------------- compute
    def _logps(self, lm, part: list[PairExample], device, chunk_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The policy's summed completion log-likelihoods (chosen, rejected), one forward over both."""
        seqs = [e.chosen for e in part] + [e.rejected for e in part]
        longest = max(len(s) for s in seqs) - 1
        x = torch.full((len(seqs), longest), lm.pad_id, dtype=torch.long)
        y = torch.full((len(seqs), longest), IGNORE, dtype=torch.long)
        for r, (s, e) in enumerate(zip(seqs, part + part)):
            n = len(s) - 1
            x[r, :n] = torch.tensor(s[:-1])
            y[r, :n] = torch.tensor(s[1:])
            y[r, : e.prompt_len - 1] = IGNORE  # the completion's log-likelihood only
        logps = lm.sequence_logprobs(x.to(device), y.to(device), chunk_tokens=chunk_tokens)
        return logps[: len(part)], logps[len(part):]

    def pair_losses(self, part: list[PairExample], chosen: torch.Tensor, rejected: torch.Tensor) -> torch.Tensor:
        if self.loss_type == "simpo":
            lc = torch.tensor([len(e.chosen) - e.prompt_len for e in part], dtype=chosen.dtype, device=chosen.device)
            lr = torch.tensor([len(e.rejected) - e.prompt_len for e in part], dtype=chosen.dtype, device=chosen.device)
            return -F.logsigmoid(self.beta * (chosen / lc - rejected / lr) - self.simpo_gamma)
        ref = torch.tensor([e.ref for e in part], dtype=chosen.dtype, device=chosen.device)
        return -F.logsigmoid(self.beta * ((chosen - rejected) - (ref[:, 0] - ref[:, 1])))

    def loss(self, lm, part: list[PairExample], device, chunk_tokens: int) -> torch.Tensor:
        """The summed loss of the pairs of one forward pass."""
        chosen, rejected = self._logps(lm, part, device, chunk_tokens)
        return self.pair_losses(part, chosen, rejected).sum()

    @torch.no_grad()
    def prepare(self, run, lm, examples: list[PairExample], micro: int, device, autocast, chunk_tokens: int,
                cap: int | None, world=None) -> None:
        """The reference's log-likelihoods of every pair that lacks them (before the first update), the model
        run through ``run`` (an engine); with several processes each computes its share and all get all."""
        todo = [e for e in examples if e.ref is None]
        if not self.needs_reference or not todo:
            return
        mine = todo[world.rank :: world.size] if world is not None and world.active else todo
        was_training = lm.module.training
        lm.module.eval()

        def reference_logps(m, part):
            with m.reference():
                return self._logps(m, part, device, chunk_tokens)

        got = {}
        for s in range(0, len(mine), micro):
            for part in self.bounded(mine[s : s + micro], cap):
                with autocast():
                    c, r = run(lambda m, part=part: reference_logps(m, part))
                for e, vc, vr in zip(part, c.tolist(), r.tolist()):
                    got[e.key] = (vc, vr)
        if world is not None and world.active:
            run.even_out(device)  # several processes: run is the trainer's engine (FSDP2: idle passes first)
            got = {k: v for shard in world.gather(got) for k, v in shard.items()}
        for e in todo:
            e.ref = got[e.key]
        if was_training:
            lm.module.train()
        if world is None or world.main:
            log.info("reference log-likelihoods of %d pairs computed once (%s)", len(todo),
                     "the adapter disabled" if getattr(lm, "is_lora", False) else "the weights before the first update")

    @torch.no_grad()
    def eval_sums(self, run, lm, examples: list[PairExample], micro: int, device, autocast, chunk_tokens: int,
                  cap: int | None) -> dict:
        """Summed loss, pairs whose implicit reward ranks chosen first, reward margins, and the pair count."""
        lm.module.eval()
        total, right, margin, n = 0.0, 0, 0.0, 0
        order = sorted(range(len(examples)), key=lambda i: -self.length(examples[i]))
        for s in range(0, len(order), micro):
            for part in self.bounded([examples[i] for i in order[s : s + micro]], cap):
                with autocast():
                    c, r = run(lambda m, part=part: self._logps(m, part, device, chunk_tokens))
                total += float(self.pair_losses(part, c, r).sum())
                mg = self.margins(part, c, r)
                right += int((mg > 0).sum())
                margin += float(mg.sum())
                n += len(part)
        lm.module.train()
        return {"loss_sum": total, "right": right, "margin_sum": margin, "units": n}

    def summarize(self, sums: dict) -> dict:
        """Mean loss over the pairs, the share whose implicit reward ranks chosen first, and the mean reward
        margin (beta x the log-ratio difference; SimPO: its length-normalised margin)."""
        n = max(sums["units"], 1)
        return {"loss": sums["loss_sum"] / n, "reward_accuracy": sums["right"] / n, "reward_margin": sums["margin_sum"] / n}

    def margins(self, part, chosen, rejected) -> torch.Tensor:
        if self.loss_type == "simpo":
            lc = torch.tensor([len(e.chosen) - e.prompt_len for e in part], dtype=chosen.dtype, device=chosen.device)
            lr = torch.tensor([len(e.rejected) - e.prompt_len for e in part], dtype=chosen.dtype, device=chosen.device)
            return self.beta * (chosen / lc - rejected / lr)
        ref = torch.tensor([e.ref for e in part], dtype=chosen.dtype, device=chosen.device)
        return self.beta * ((chosen - ref[:, 0]) - (rejected - ref[:, 1]))

    # ---------------------------------------------------------------- resume
    def state(self, examples: list[PairExample]) -> dict:
        return {"ref": {e.key: e.ref for e in examples if e.ref is not None}}

    def load_state(self, state: dict, examples: list[PairExample], where) -> None:
        ref = (state or {}).get("ref") or {}
        if self.needs_reference and any(e.key not in ref for e in examples):
            raise TunejudgeError(f"{where}: the resume state lacks the reference's log-likelihoods of some pairs "
                                 "(written by another version or for other pairs); delete it to start over")
        for e in examples:
            if e.key in ref:
                e.ref = tuple(ref[e.key])

