"""Answers through vLLM against transformers' ``generate`` on the same model and prompts (the respond rule's
two engines): answers per second and tokens per second of each, and how many greedy answers agree, one JSON line
with ``ratio`` (vLLM's answers/s over transformers'). Needs a CUDA GPU and vLLM installed (``pip install vllm``):
without them it says so and exits 2.

    python bench/generation_vllm.py --model <folder or Hub id> --prompts 100 --new-tokens 256
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main(argv=None):
    import torch
    from common import emit, machine, sample_records
    from train_hf import prepared_model

    from tunejudge.models.hf import load_hf
    from tunejudge.models.respond import respond
    from tunejudge.models.vllm import VLLMEngine, vllm_missing

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="a from_pretrained folder or Hub id (default: the packaged SmolLM2)")
    ap.add_argument("--prompts", type=int, default=100)
    ap.add_argument("--new-tokens", type=int, default=256)
    ap.add_argument("--batch", type=int, default=32, help="transformers' batch (vLLM schedules its own)")
    ap.add_argument("--gpus", type=int, default=1, help="vLLM's tensor parallelism")
    a = ap.parse_args(argv)
    missing = vllm_missing()
    if missing:
        print(f"bench/generation_vllm.py: {missing}", file=sys.stderr)
        raise SystemExit(2)
    model = prepared_model(a.model)
    records = (sample_records() * (a.prompts // 10 + 1))[: a.prompts]

    lm = load_hf(model, device="cuda", dtype=torch.bfloat16)
    lm.module.eval()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    hf_answers, hf_stats = respond(lm, records, max_new_tokens=a.new_tokens, batch_size=a.batch)
    torch.cuda.synchronize()
    hf_s = time.perf_counter() - t0
    hf_peak = torch.cuda.max_memory_allocated() / 2**20
    del lm
    torch.cuda.empty_cache()

    tok_only = load_hf(model, weights=False)
    engine = VLLMEngine(model, gpus=a.gpus, dtype="bfloat16")
    t0 = time.perf_counter()
    v_answers, v_stats = respond(tok_only, records, max_new_tokens=a.new_tokens, engine=engine)
    v_s = time.perf_counter() - t0
    agree = sum(x == y for x, y in zip(hf_answers, v_answers))
    emit({"bench": "generation_vllm", **machine("cuda"), "model": model, "prompts": len(records),
          "max_new_tokens": a.new_tokens, "dtype": "bfloat16", "transformers": {
              "seconds": round(hf_s, 2), "answers_per_s": round(len(records) / hf_s, 2),
              "tokens_per_s": round(hf_stats.new_tokens / hf_s, 1), "batch": a.batch, "peak_mb": round(hf_peak, 1)},
          "vllm": {"seconds": round(v_s, 2), "answers_per_s": round(len(records) / v_s, 2),
                   "tokens_per_s": round(v_stats.new_tokens / v_s, 1), "tensor_parallel": a.gpus},
          "ratio": round(hf_s / v_s, 3), "greedy_answers_identical": agree,
          "note": "bf16 kernels differ between the engines: a greedy answer may diverge after a near tie"})


if __name__ == "__main__":
    main()
