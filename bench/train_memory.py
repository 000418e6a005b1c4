"""Training memory: the naive recipe of LLMs from Scratch ch. 7 vs tunejudge's, same batches, same run.

naive:      batches of 8 padded to the longest, float32, attention scores materialised, logits for
            every position (the chapter's training loop).
tunejudge:  the same 8 records per optimizer step as micro-batches (sorted by length) with gradient
            accumulation, SDPA attention, the loss's vocabulary projection only at target positions
            in checkpointed chunks, optional activation checkpointing, bf16 autocast on CUDA.

Each recipe runs in its own child process. CPU: peak RSS of that process; CUDA:
torch.cuda.max_memory_allocated. Lengths follow the paper.yaml 2,000+ mix (long CNN articles, SQuAD
contexts, short classification and general instructions). The last line is one JSON object with
naive_peak_mb, peak_mb, ratio (tunejudge / naive) and the padding fractions.

    python bench/train_memory.py                       # CPU default (a narrow GPT-2, 1,024 tokens)
    python bench/train_memory.py --size gpt2-medium --device cuda --steps 4
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

# The 2,000+ mix of config/paper.yaml: (source, share, typical tokens of prompt + answer, spread)
MIX = [
    ("sebastian", 0.40, 75, 0.45),
    ("sst2", 0.12, 60, 0.25),
    ("agnews", 0.12, 95, 0.2),
    ("qa_squad", 0.12, 230, 0.3),
    ("summarization_cnn", 0.14, 850, 0.25),
    ("qa_cnn", 0.10, 60, 0.3),
]


def mix_lengths(n: int, max_len: int, seed: int) -> list[int]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        _, _, mu, sigma = rng.choices(MIX, weights=[m[1] for m in MIX])[0]
        out.append(max(16, min(max_len, int(rng.lognormvariate(math.log(mu), sigma)))))
    return out


def naive_loss(model, x, y):
    """The chapter's forward: materialised causal attention, logits for every position."""
    import torch
    import torch.nn.functional as F

    cfg = model.cfg
    b, t = x.shape
    h = model.wte(x) + model.wpe(torch.arange(t, device=x.device))
    causal = torch.triu(torch.ones(t, t, dtype=torch.bool, device=x.device), diagonal=1)
    for blk in model.h:
        a = blk.ln_1(h)
        q, k, v = F.linear(a, blk.attn.c_attn.weight, blk.attn.c_attn.bias).split(cfg.n_embd, dim=2)
        q, k, v = (z.view(b, t, cfg.n_head, cfg.head_dim).transpose(1, 2) for z in (q, k, v))
        att = (q @ k.transpose(-2, -1)) / math.sqrt(cfg.head_dim)
        att = torch.softmax(att.masked_fill(causal, float("-inf")), dim=-1)
        o = (att @ v).transpose(1, 2).reshape(b, t, cfg.n_embd)
        h = h + F.linear(o, blk.attn.c_proj.weight, blk.attn.c_proj.bias)
        h = h + blk.mlp(blk.ln_2(h))
    logits = F.linear(model.ln_f(h), model.wte.weight)
    return F.cross_entropy(logits.flatten(0, 1), y.flatten(), ignore_index=-100)


def make_batch(lengths, rng_seed, device):
    """Right-padded random token ids of the given lengths; targets padded with -100 (ch. 7's collate)."""
    import torch

    g = torch.Generator().manual_seed(rng_seed)
    t = max(lengths)
    x = torch.full((len(lengths), t), 50256, dtype=torch.long)
    y = torch.full((len(lengths), t), -100, dtype=torch.long)
    for r, n in enumerate(lengths):
        ids = torch.randint(0, 50256, (n + 1,), generator=g)
        x[r, :n], y[r, :n] = ids[:-1], ids[1:]
    return x.to(device), y.to(device)


def run_recipe(recipe: str, args: dict, steps: list[list[int]], q) -> None:
    import torch

    from tunejudge.models.device import pick_device
    from tunejudge.models.gpt2.model import GPT2, config_for
    from tunejudge.training.trainer import peak_memory_mb

    device = pick_device(args["device"])
    torch.manual_seed(0)
    cfg = config_for(args["size"], **args["overrides"])
    model = GPT2(cfg).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=5e-5, weight_decay=0.1, fused=device.type == "cuda")
    cuda = device.type == "cuda"
    bf16 = cuda and recipe == "tunejudge"
    if recipe == "tunejudge":
        model.gradient_checkpointing = args["checkpointing"]
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0, tokens = time.perf_counter(), 0
    for s, lens in enumerate(steps):
        opt.zero_grad(set_to_none=True)
        if recipe == "naive":
            x, y = make_batch(lens, s, device)
            naive_loss(model, x, y).backward()
        else:
            order = sorted(range(len(lens)), key=lambda i: -lens[i])
            n_targets = sum(lens)
            for m in range(0, len(order), args["micro"]):
                sub = [lens[i] for i in order[m : m + args["micro"]]]
                x, y = make_batch(sub, s * 1000 + m, device)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                    loss = model.loss(x, y, reduction="sum", chunk_tokens=args["chunk_tokens"])
                (loss / n_targets).backward()
        opt.step()
        tokens += sum(lens)
    if cuda:
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - t0
    peak = peak_memory_mb(device)
    q.put({"peak_mb": round(peak, 1), "tokens_per_s": round(tokens / elapsed, 1), "seconds": round(elapsed, 2),
           "params": model.num_parameters()})


def in_child(recipe, args, steps):
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=run_recipe, args=(recipe, args, steps, q))
    p.start()
    p.join()
    if p.exitcode != 0:
        raise SystemExit(f"{recipe} recipe failed in its child process (exit code {p.exitcode}; out of memory?)")
    return q.get()


def main(argv=None):
    from common import emit, machine

    from tunejudge.models.device import pick_device
    from tunejudge.training.trainer import epoch_batches, padding_fraction

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="gpt2")
    ap.add_argument("--n-embd", type=int, default=None, help="override the width (CPU default: 256)")
    ap.add_argument("--n-layer", type=int, default=None, help="override the depth (CPU default: 4)")
    ap.add_argument("--max-len", type=int, default=1024)
    ap.add_argument("--batch", type=int, default=8, help="effective batch (records per optimizer step)")
    ap.add_argument("--micro", type=int, default=2, help="tunejudge micro-batch")
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--no-checkpointing", action="store_true")
    ap.add_argument("--chunk-tokens", type=int, default=1024)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=123)
    a = ap.parse_args(argv)
    device = pick_device(a.device)
    overrides = {}
    if device.type == "cpu" and a.size == "gpt2" and a.n_embd is None and a.n_layer is None:
        a.n_embd, a.n_layer = 256, 4  # keeps the CPU run to a few minutes; the vocabulary stays real
    if a.n_embd:
        overrides.update(n_embd=a.n_embd, n_head=max(1, a.n_embd // 64))
    if a.n_layer:
        overrides["n_layer"] = a.n_layer

    epoch = mix_lengths(2000, a.max_len, a.seed)
    naive_batches = [list(range(i, min(i + a.batch, len(epoch)))) for i in range(0, len(epoch), a.batch)]
    grouped = epoch_batches(epoch, a.micro, a.seed, 0, True, 50)
    # the optimizer steps both recipes run: the first steps of a shuffled epoch, the longest first
    steps = sorted(([epoch[i] for i in b] for b in naive_batches[: max(a.steps, 1) * 4]), key=lambda s: -max(s))[: a.steps]
    args = {"device": str(device), "size": a.size, "overrides": overrides, "micro": a.micro,
            "checkpointing": not a.no_checkpointing, "chunk_tokens": a.chunk_tokens}
    naive = in_child("naive", args, steps)
    ours = in_child("tunejudge", args, steps)
    emit({
        "bench": "train_memory", **machine(device), "size": a.size, "overrides": overrides,
        "params": ours["params"], "effective_batch": a.batch, "micro_batch": a.micro,
        "accumulation": math.ceil(a.batch / a.micro), "max_len": a.max_len, "steps": len(steps),
        "step_max_lengths": [max(s) for s in steps], "checkpointing": not a.no_checkpointing,
        "measure": "cuda max_memory_allocated" if device.type == "cuda" else "peak RSS of the child process",
        "naive_peak_mb": naive["peak_mb"], "peak_mb": ours["peak_mb"],
        "ratio": round(ours["peak_mb"] / naive["peak_mb"], 3),
        "naive_tokens_per_s": naive["tokens_per_s"], "tokens_per_s": ours["tokens_per_s"],
        "naive_padding_fraction": round(padding_fraction(naive_batches, epoch), 3),
        "grouped_padding_fraction": round(padding_fraction(grouped, epoch), 3),
    })


if __name__ == "__main__":
    main()
