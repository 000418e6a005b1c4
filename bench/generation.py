"""Generation speed: the naive loop of LLMs from Scratch ch. 7 vs tunejudge's batched KV-cached decoding.

Same model, same prompts, same run. EOS is disabled so every prompt gets exactly --new-tokens
tokens. Prints one JSON object on its last line: naive_tokens_per_s, tokens_per_s, ratio (the
batched decoder's median of --repeats runs), and what separates them and what bounds them:

- the naive loop runs on --naive-prompts evenly spaced prompts (all by default), whose mean prompt
  length is reported beside the whole set's (the first N would be the longest: CNN articles);
- ``kv_batch1_tokens_per_s``: KV-cached decoding one prompt at a time on those prompts, so caching
  (naive -> batch 1) and batching (batch 1 -> batched) are told apart;
- ``bandwidth_bound_tokens_per_s``: a decode step reads every weight once, so a batch of B cannot
  go faster than B x (memory bandwidth / weight bytes). The bandwidth is measured in this run two
  ways over 512 MB, each the best of 5 before and 5 after the decoding (on a shared machine other
  work only ever slows a probe, so the fastest is the truest bound): one large copy (its bytes read,
  ``copy_gb_per_s``) and a read-only pass, a sum (``read_gb_per_s``). Which is faster depends on
  the CPU (a copy also writes: on a Xeon it read at 14 GB/s where the sum read at 34), so the
  bound takes the faster (``bandwidth_gb_per_s``): a fraction against the slower one could pass 1.
  ``bandwidth_fraction`` is the batched decoder's share of that bound (the prompts' prefill
  included: it is compute, not weight reading, and counts against the decoder);
  ``copy_bandwidth_fraction`` is the same against the copy alone. ``llc_mb``: the CPU's last-level
  cache; where it holds most of the weights, the probes and the decoder both partly read from it;
- ``native_kernels``: whether tunejudge's native CPU kernels ran (``tunejudge.models.gpt2.kernels``), and
  ``torch_ops_tokens_per_s``: one batched run with them off, torch's ops only.

    python bench/generation.py                                  # CPU default: gpt2 shape, 8 x 64
    python bench/generation.py --size gpt2-medium --prompts 100 --new-tokens 256 --device cuda \
        --naive-prompts 8                                        # naive timed on 8 evenly spaced prompts
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import emit, machine, sample_records, timed  # noqa: E402

from tunejudge.data.prompt import format_prompt  # noqa: E402
from tunejudge.models.device import pick_device  # noqa: E402
from tunejudge.models.gpt2 import kernels  # noqa: E402
from tunejudge.models.gpt2.decode import greedy_generate, naive_greedy  # noqa: E402
from tunejudge.models.gpt2.model import GPT2, config_for
from tunejudge.models.gpt2.tokenizer import get_tokenizer  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="gpt2")
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=None, help="default: all prompts in one batch (max 128)")
    ap.add_argument("--naive-prompts", type=int, default=None, help="time the naive loop on N evenly spaced prompts")
    ap.add_argument("--repeats", type=int, default=3, help="runs of the batched decoder (the median is reported)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    ap.add_argument("--max-prompt-tokens", type=int, default=384)
    args = ap.parse_args(argv)

    device = pick_device(args.device)
    dtype = getattr(torch, args.dtype)
    torch.manual_seed(123)
    model = GPT2(config_for(args.size)).to(device=device, dtype=dtype).eval()
    enc = get_tokenizer()
    recs = sample_records()
    prompts = []
    i = 0
    while len(prompts) < args.prompts:  # cycle through the samples' prompts, capped in length
        ids = enc.encode(format_prompt(recs[i % len(recs)]), disallowed_special=())
        prompts.append(ids[-args.max_prompt_tokens :])
        i += 7  # a stride that mixes the sources
    n_naive = min(args.naive_prompts or len(prompts), len(prompts))
    picks = sorted({round(k * (len(prompts) - 1) / max(n_naive - 1, 1)) for k in range(n_naive)})
    subset = [prompts[k] for k in picks]
    batch = args.batch_size or min(len(prompts), 128)

    copy_before, read_before = copy_bandwidth(device), read_bandwidth(device)
    greedy_generate(model, prompts[:2], 4, eos_id=None, progress=False)  # warm-up (allocator, kernels)
    naive, naive_s = timed(lambda: [naive_greedy(model, p, args.new_tokens, eos_id=None) for p in subset], device)
    _, kv1_s = timed(lambda: greedy_generate(model, subset, args.new_tokens, batch_size=1, eos_id=None,
                                             progress=False), device)
    runs = [timed(lambda: greedy_generate(model, prompts, args.new_tokens, batch_size=batch, eos_id=None,
                                          progress=False), device) for _ in range(max(1, args.repeats))]
    fast, fast_s = runs[0][0], statistics.median(t for _, t in runs)
    status = kernels.status() if device.type == "cpu" else f"off: not used on {device.type}"
    native = "on" if status.startswith("on: ") else status  # the library's path stays out of the figures
    with kernels.disabled():
        torch_out, torch_s = timed(lambda: greedy_generate(model, prompts, args.new_tokens, batch_size=batch,
                                                           eos_id=None, progress=False), device)
    same = sum(naive[j] == fast[k] for j, k in enumerate(picks))
    naive_tps = len(subset) * args.new_tokens / naive_s
    tps = len(prompts) * args.new_tokens / fast_s
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    copy = max(copy_before, copy_bandwidth(device))  # other work only lowers a probe's speed
    read = max(read_before, read_bandwidth(device))
    bandwidth = max(copy, read)  # the faster probe: what the memory demonstrably delivers
    rows = min(batch, len(prompts))
    bound_tps, copy_tps = rows * bandwidth / weight_bytes, rows * copy / weight_bytes
    emit({
        "bench": "generation", **machine(device), "size": args.size, "dtype": args.dtype,
        "prompts": len(prompts), "naive_prompts": len(subset), "new_tokens": args.new_tokens, "batch_size": batch,
        "mean_prompt_tokens": round(sum(map(len, prompts)) / len(prompts), 1),
        "naive_mean_prompt_tokens": round(sum(map(len, subset)) / len(subset), 1),
        "naive_s": round(naive_s, 3), "seconds": round(fast_s, 3), "seconds_runs": [round(t, 3) for _, t in runs],
        "naive_tokens_per_s": round(naive_tps, 2), "tokens_per_s": round(tps, 2), "ratio": round(tps / naive_tps, 2),
        "kv_batch1_tokens_per_s": round(len(subset) * args.new_tokens / kv1_s, 2),
        "weight_mb": round(weight_bytes / 1e6, 1), "llc_mb": llc_mb(device),
        "copy_gb_per_s": round(copy / 1e9, 2), "read_gb_per_s": round(read / 1e9, 2),
        "bandwidth_gb_per_s": round(bandwidth / 1e9, 2),
        "bandwidth_bound_tokens_per_s": round(bound_tps, 1), "bandwidth_fraction": round(tps / bound_tps, 3),
        "copy_bandwidth_fraction": round(tps / copy_tps, 3),
        "identical_outputs": f"{same}/{len(subset)}",
        "native_kernels": native,
        "torch_ops_tokens_per_s": round(len(prompts) * args.new_tokens / torch_s, 2),
        "torch_ops_identical_outputs": f"{sum(a == b for a, b in zip(torch_out, fast))}/{len(prompts)}",
    })


def copy_bandwidth(device, mb: int = 512, tries: int = 5) -> float:
    """Bytes per second one large copy moves (read once, written once: the bytes read are counted,
    as a decode step reads its weights), best of ``tries``."""
    src = torch.ones(mb * 2**20 // 4, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    return _best_rate(lambda: dst.copy_(src), src.nbytes, device, tries)


def read_bandwidth(device, mb: int = 512, tries: int = 5) -> float:
    """Bytes per second one large read-only pass (a sum) moves, best of ``tries``: what a decode
    step does to its weights, and faster than a copy where writes share the memory bus, so the
    stricter bound (reported beside the copy's)."""
    src = torch.ones(mb * 2**20 // 4, dtype=torch.float32, device=device)
    return _best_rate(src.sum, src.nbytes, device, tries)


def llc_mb(device) -> float | None:
    """The CPU's last-level cache in MB (Linux sysfs), None elsewhere or on a GPU."""
    if torch.device(device).type != "cpu":
        return None
    sizes = []
    for f in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*/size"):
        text = f.read_text().strip()
        scale = {"K": 2**10, "M": 2**20, "G": 2**30}.get(text[-1:], 1)
        try:
            sizes.append(int(text.rstrip("KMG")) * scale)
        except ValueError:
            continue
    return round(max(sizes) / 1e6, 1) if sizes else None


def _best_rate(fn, nbytes: int, device, tries: int) -> float:
    fn()  # touch the pages first
    return nbytes / min(timed(fn, device)[1] for _ in range(tries))


if __name__ == "__main__":
    main()
