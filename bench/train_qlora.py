"""LoRA against QLoRA on the same model, records, batch and steps: tokens/s and peak memory of each (the base in
float32 and in 4-bit NF4 under the same adapter), one JSON line with ``memory_ratio`` (QLoRA's peak over LoRA's)
and ``ratio`` (QLoRA's tokens/s over LoRA's). Each side runs in its own child process.

On a small model the 4-bit weights save little against the activations and the fixed costs; the saving grows
with the base (8B: 16 GB in bf16, about 5.5 GB in NF4). bitsandbytes 0.50 runs NF4 on CPUs too (slowly: it
dequantizes every layer in every pass).

    python bench/train_qlora.py                       # CPU, SmolLM2-135M; ~3 min on 2 cores
    python bench/train_qlora.py --device cuda --model <folder or Hub id> --steps 20
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

LORA = {"r": 16, "alpha": 32, "dropout": 0.0, "target_modules": "all-linear"}


def run_one(args: dict, records, q) -> None:
    import torch

    from tunejudge.models.hf import load_hf
    from tunejudge.training.trainer import TrainConfig, peak_memory_mb, train

    device = torch.device(args["device"])
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    lm = load_hf(args["model"], dtype=torch.float32, device=str(device),
                 quantize="nf4" if args["method"] == "qlora" else None)
    lm.add_lora(LORA, seed=0)
    tc = TrainConfig.from_dict({"epochs": 1, "batch_size": args["batch"], "micro_batch_size": args["micro"],
                                "lr": 1e-4, "weight_decay": 0.0, "eval_every": 10_000, "checkpoint_every": 10_000,
                                "device": str(device), "dtype": "bfloat16", "seed": 0, "max_length": args["max_len"],
                                "micro_batch_tokens": args["micro_tokens"]})
    t0 = time.perf_counter()
    res = train(lm, records, [], tc, progress=False)
    q.put({"seconds": time.perf_counter() - t0, "steps": res.steps, "peak_mb": round(peak_memory_mb(device), 1),
           "parameters": lm.num_parameters(), "trainable": lm.num_trainable()})


def main(argv=None):
    import torch
    from common import emit, in_child, machine, training_parser
    from train_hf import examples, prepared_model

    from tunejudge.models.device import pick_device
    from tunejudge.models.fourbit import four_bit_missing

    ap = training_parser(__doc__, steps=4, dtype=False)
    a = ap.parse_args(argv)
    device = pick_device(a.device)
    missing = four_bit_missing(device)
    if missing:
        raise SystemExit(f"QLoRA cannot run on {device}: {missing}")
    model = prepared_model(a.model)
    records, ids = examples(model, a.steps * a.batch, a.max_len)
    tokens = sum(len(x) - 1 for x in ids)
    args = {"model": model, "device": str(device), "batch": a.batch, "micro": a.micro, "max_len": a.max_len,
            "micro_tokens": a.micro_tokens}
    lora = in_child(run_one, {**args, "method": "lora"}, records, "LoRA")
    qlora = in_child(run_one, {**args, "method": "qlora"}, records, "QLoRA")
    emit({"bench": "train_qlora", **machine(device), "model": model, "steps": a.steps, "records_per_step": a.batch,
          "tokens": tokens, "lora": LORA, "compute": "bf16 autocast (LoRA: float32 base; QLoRA: NF4 base)",
          "measure": "cuda max_memory_allocated" if device.type == "cuda" else "peak RSS of the child process",
          "lora_run": {**lora, "tokens_per_s": round(tokens / lora["seconds"], 1)},
          "qlora_run": {**qlora, "tokens_per_s": round(tokens / qlora["seconds"], 1)},
          "ratio": round(lora["seconds"] / qlora["seconds"], 3),
          "memory_ratio": round(qlora["peak_mb"] / lora["peak_mb"], 3), "torch_threads": torch.get_num_threads()})


if __name__ == "__main__":
    main()
