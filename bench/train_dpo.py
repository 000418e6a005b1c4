"""Preference tuning: tunejudge's DPO beside TRL's DPOTrainer on the same model, pairs, batch, steps and LoRA.

The same model (default: SmolLM2-135M-Instruct from the packaged GGUF, prepared once), the same pairs (each
shipped sample record in the study's Alpaca prompt: its reference answer chosen, another record's of the same
source rejected -- TRL is given the very prompt and completion texts, and tokenizes them to the same ids),
the same effective batch, micro-batch, optimizer steps, learning rate, beta, LoRA settings (dropout 0: TRL
disables dropout) and precision; both use DPO's sigmoid loss with the reference = the adapter disabled.

TRL runs in each of its exact-semantics settings -- the reference on the fly (its default),
``precompute_ref_log_probs`` (the reference once, before training, as tunejudge does), and the latter with
``padding_free`` -- and its best tokens/s is the peer. Each configuration runs in its own child process;
the timing covers everything from the raw pairs to the last step on both sides (tokenizing and the reference
pass included). Tokens/s counts real tokens (both completions of every pair with their prompts, no padding);
peak memory is the process's peak RSS on a CPU or ``torch.cuda.max_memory_allocated`` on CUDA. The last line
is one JSON object with ``ratio`` (tunejudge's tokens/s over TRL's best) and ``memory_ratio``.

    python bench/train_dpo.py                      # CPU, ~6 min on 2 cores
    python bench/train_dpo.py --device cuda --steps 30 --batch 16 --micro 8
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

LORA = {"r": 16, "alpha": 32, "dropout": 0.0, "target_modules": "all-linear"}
TRL_SETTINGS = ("on_the_fly", "precompute", "precompute_padding_free")


def pairs(model_dir: str, n: int, max_len: int) -> tuple[list[dict], int]:
    """``n`` preference rows from the shipped samples (chosen: the record's answer; rejected: another record's
    of its source) whose both sequences fit ``max_len`` tokens of the model, and their tokens."""
    from common import sample_records

    from tunejudge.data.prompt import format_prompt
    from tunejudge.models.hf import load_hf

    lm = load_hf(model_dir)
    recs = sample_records()
    by_source: dict[str, list[dict]] = {}
    for r in recs:
        by_source.setdefault(r["source"], []).append(r)
    rows = []
    for r in recs:
        others = [o for o in by_source[r["source"]] if o["output"].strip() != r["output"].strip()]
        if not others:
            continue
        other = others[len(rows) % len(others)]
        row = {"prompt": format_prompt(r), "chosen": r["output"], "rejected": other["output"], "id": r["id"],
               "source": r["source"], "instruction": r["instruction"], "input": r["input"], "output": r["output"],
               "part": "train", "margin": 1.0}
        c, _ = lm.example_ids({**r, "output": row["chosen"]})
        j, _ = lm.example_ids({**r, "output": row["rejected"]})
        if max(len(c), len(j)) <= max_len:
            rows.append(row)
    k = n // len(rows) + 1
    rows = (rows * k)[:n]
    tokens = 0
    for row in rows:
        c, _ = lm.example_ids({"instruction": row["instruction"], "input": row["input"], "output": row["chosen"]})
        j, _ = lm.example_ids({"instruction": row["instruction"], "input": row["input"], "output": row["rejected"]})
        tokens += len(c) - 1 + len(j) - 1
    return rows, tokens


def run_ours(args: dict, data, q) -> None:
    import torch

    from tunejudge.models.hf import load_hf
    from tunejudge.training.preference import Preference
    from tunejudge.training.trainer import TrainConfig, train

    rows, tokens = data
    cuda = torch.device(args["device"]).type == "cuda"
    lm = load_hf(args["model"], dtype=torch.float32).to(args["device"])
    lm.add_lora(LORA, seed=0)
    tc = TrainConfig.from_dict({"epochs": 1, "batch_size": args["batch"], "micro_batch_size": args["micro"],
                                "lr": args["lr"], "weight_decay": 0.0, "eval_every": 10_000, "checkpoint_every": 10_000,
                                "device": args["device"], "dtype": args["dtype"], "seed": 0,
                                "max_length": args["max_len"], "micro_batch_tokens": args["micro_tokens"],
                                "length_grouped": True})
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    res = train(lm, rows, [], tc, progress=False, objective=Preference(loss_type="sigmoid", beta=args["beta"]))
    _finish(args, tokens, time.perf_counter() - t0, res.steps, q)


def run_trl(args: dict, data, q) -> None:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    rows, tokens = data
    setting = args["setting"]
    cuda = torch.device(args["device"]).type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    tok = AutoTokenizer.from_pretrained(args["model"])
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    model = AutoModelForCausalLM.from_pretrained(args["model"], dtype=torch.float32).to(args["device"])
    ds = Dataset.from_list([{"prompt": r["prompt"], "chosen": r["chosen"], "rejected": r["rejected"]} for r in rows])
    with tempfile.TemporaryDirectory() as tmp:
        cfg = DPOConfig(output_dir=tmp, per_device_train_batch_size=args["micro"],
                        gradient_accumulation_steps=args["batch"] // args["micro"], max_steps=args["steps"],
                        learning_rate=args["lr"], lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0,
                        optim="adamw_torch", save_strategy="no", report_to="none", logging_steps=10_000,
                        disable_tqdm=True, seed=0, bf16=args["dtype"] == "bfloat16", use_cpu=not cuda,
                        beta=args["beta"], loss_type=["sigmoid"], max_length=None,
                        precompute_ref_log_probs=setting.startswith("precompute"),
                        padding_free=setting.endswith("padding_free"), dataloader_num_workers=0,
                        gradient_checkpointing=False, dataset_num_proc=None)
        peft = LoraConfig(r=LORA["r"], lora_alpha=LORA["alpha"], lora_dropout=LORA["dropout"],
                          target_modules=LORA["target_modules"], task_type="CAUSAL_LM", bias="none")
        trainer = DPOTrainer(model=model, args=cfg, train_dataset=ds, processing_class=tok, peft_config=peft)
        out = trainer.train()
        _finish(args, tokens, time.perf_counter() - t0, out.global_step, q)


def _finish(args, tokens, elapsed, steps, q):
    import torch

    from tunejudge.training.trainer import peak_memory_mb

    peak = peak_memory_mb(torch.device(args["device"]))
    q.put({"tokens_per_s": round(tokens / elapsed, 1), "peak_mb": round(peak, 1), "seconds": round(elapsed, 2),
           "steps": steps, "tokens": tokens})


def main(argv=None):
    import torch
    from common import emit, in_child, machine, training_parser
    from train_hf import prepared_model

    from tunejudge.models.device import pick_device
    from tunejudge.training.trainer import native_bf16

    ap = training_parser(__doc__, unit="pairs", lr=5e-5)
    ap.add_argument("--beta", type=float, default=0.1)
    ap.add_argument("--settings", default=",".join(TRL_SETTINGS), help="TRL's settings to run")
    a = ap.parse_args(argv)
    device = pick_device(a.device)
    dtype = a.dtype if a.dtype != "auto" else ("bfloat16" if native_bf16(device) else "float32")
    model = prepared_model(a.model)
    rows, tokens = pairs(model, a.steps * a.batch, a.max_len)
    base = {"model": model, "device": str(device), "dtype": dtype, "steps": a.steps, "batch": a.batch,
            "micro": a.micro, "max_len": a.max_len, "lr": a.lr, "beta": a.beta, "micro_tokens": a.micro_tokens}
    ours = in_child(run_ours, base, (rows, tokens), "tunejudge")
    trl = {s: in_child(run_trl, {**base, "setting": s}, (rows, tokens), f"TRL ({s})") for s in a.settings.split(",")}
    best = max(trl, key=lambda s: trl[s]["tokens_per_s"])
    emit({"bench": "train_dpo", **machine(device), "model": model, "dtype": dtype, "steps": a.steps,
          "pairs_per_step": a.batch, "micro_batch": a.micro, "micro_batch_tokens": a.micro_tokens, "lora": LORA,
          "beta": a.beta, "pairs": len(rows), "tokens": tokens,
          "measure": "cuda max_memory_allocated" if device.type == "cuda" else "peak RSS of the child process",
          "tokens_per_s": ours["tokens_per_s"], "peak_mb": ours["peak_mb"], "seconds": ours["seconds"],
          "trl_setting": best, "trl_tokens_per_s": trl[best]["tokens_per_s"], "trl_peak_mb": trl[best]["peak_mb"],
          "trl_runs": trl, "ratio": round(ours["tokens_per_s"] / trl[best]["tokens_per_s"], 3),
          "memory_ratio": round(ours["peak_mb"] / trl[best]["peak_mb"], 3), "torch_threads": torch.get_num_threads()})


if __name__ == "__main__":
    main()
