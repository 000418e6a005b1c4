"""Generation speed: the naive loop of LLMs from Scratch ch. 7 vs tunejudge's batched KV-cached decoding.

Same model, same prompts, same run. EOS is disabled so every prompt gets exactly --new-tokens
tokens. Prints one JSON object on its last line: naive_tokens_per_s, tokens_per_s, ratio.

    python bench/generation.py                                  # CPU default: gpt2 shape, 8 x 64
    python bench/generation.py --size gpt2-medium --prompts 100 --new-tokens 256 --device cuda \
        --naive-prompts 8                                        # naive timed on the first 8 prompts
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import emit, machine, sample_records, timed  # noqa: E402

from tunejudge.generate import greedy_generate, naive_greedy  # noqa: E402
from tunejudge.model import GPT2, config_for, pick_device  # noqa: E402
from tunejudge.prompt import format_prompt  # noqa: E402
from tunejudge.tokenizer import get_tokenizer  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="gpt2")
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=None, help="default: all prompts in one batch (max 128)")
    ap.add_argument("--naive-prompts", type=int, default=None, help="time the naive loop on the first N prompts")
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
    batch = args.batch_size or min(len(prompts), 128)

    greedy_generate(model, prompts[:2], 4, eos_id=None, progress=False)  # warm-up (allocator, kernels)
    naive, naive_s = timed(lambda: [naive_greedy(model, p, args.new_tokens, eos_id=None) for p in prompts[:n_naive]], device)
    fast, fast_s = timed(lambda: greedy_generate(model, prompts, args.new_tokens, batch_size=batch, eos_id=None,
                                                 progress=False), device)
    same = sum(a == b for a, b in zip(naive, fast[:n_naive]))
    naive_tps = n_naive * args.new_tokens / naive_s
    tps = len(prompts) * args.new_tokens / fast_s
    emit({
        "bench": "generation", **machine(device), "size": args.size, "dtype": args.dtype,
        "prompts": len(prompts), "naive_prompts": n_naive, "new_tokens": args.new_tokens, "batch_size": batch,
        "mean_prompt_tokens": round(sum(map(len, prompts)) / len(prompts), 1),
        "naive_s": round(naive_s, 3), "seconds": round(fast_s, 3),
        "naive_tokens_per_s": round(naive_tps, 2), "tokens_per_s": round(tps, 2), "ratio": round(tps / naive_tps, 2),
        "identical_outputs": f"{same}/{n_naive}",
    })


if __name__ == "__main__":
    main()
