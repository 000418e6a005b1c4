"""One training in 1 and in 2 processes (torchrun; gloo on CPUs, NCCL on GPUs): tokens/s and peak memory of
each, on the same model, records, effective batch and steps, in one run; one JSON line with ``ratio``
(2 processes' tokens/s over 1's) and ``scaling_efficiency`` (ratio / 2).

On a CPU the processes share the machine's cores (one process uses them all through its threads; two split
them): expect no speedup -- the figure is the distributed machinery's overhead (process start, the reference
weights loaded twice, the gradient all-reduce or FSDP2's gathers). On N GPUs it is the scaling.

    python bench/train_dist.py                                # CPU, DDP, SmolLM2 LoRA; ~5 min on 2 cores
    python bench/train_dist.py --parallel fsdp --full
    python bench/train_dist.py --device cuda --model <folder or Hub id> --parallel fsdp --steps 20
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

RANK = r'''
import json, sys, time, torch
from pathlib import Path
a = json.loads(Path(sys.argv[1]).read_text())
from tunejudge.models.hf import load_hf
from tunejudge.training import distributed
from tunejudge.training.trainer import TrainConfig, peak_memory_mb, train
with distributed.initialized():
    w = distributed.world()
    device = distributed.rank_device(a["device"], w)
    lm = load_hf(a["model"], dtype=torch.float32)
    if not a["full"]:
        lm.add_lora({"r": 16, "alpha": 32, "dropout": 0.0, "target_modules": "all-linear"}, seed=0)
    tc = TrainConfig.from_dict({"epochs": 1, "batch_size": a["batch"], "micro_batch_size": a["micro"], "lr": 1e-4,
                                "eval_every": 10_000, "checkpoint_every": 10_000, "device": str(device),
                                "dtype": a["dtype"], "seed": 0, "max_length": a["max_len"],
                                "micro_batch_tokens": a["micro_tokens"], "processes": w.size, "parallel": a["parallel"]})
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    w.barrier()
    t0 = time.perf_counter()
    res = train(lm, a["records"], [], tc, progress=False)
    w.barrier()
    seconds = time.perf_counter() - t0
    peaks = w.gather(peak_memory_mb(device))
    if w.main:
        Path(a["out"]).write_text(json.dumps({"seconds": seconds, "steps": res.steps, "peak_mb": peaks}))
'''


def run(args: dict, processes: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        spec, script = Path(tmp) / "spec.json", Path(tmp) / "rank.py"
        spec.write_text(json.dumps({**args, "out": str(Path(tmp) / "out.json")}))
        script.write_text(RANK)
        cmd = [sys.executable, str(script), str(spec)]
        if processes > 1:
            cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
                   *cmd[1:]]
        env = dict(os.environ)
        if processes > 1 and args["device"] == "cpu":  # the cores split between the ranks
            env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // processes))
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise SystemExit(f"{processes} process(es) failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
        out = json.loads((Path(tmp) / "out.json").read_text())
    return {**out, "wall_s": round(wall, 2)}


def main(argv=None):
    import torch
    from common import emit, machine, training_parser
    from train_hf import examples, prepared_model

    from tunejudge.models.device import pick_device
    from tunejudge.training.trainer import native_bf16

    ap = training_parser(__doc__)
    ap.add_argument("--parallel", default="ddp", choices=["ddp", "fsdp"])
    ap.add_argument("--full", action="store_true", help="full fine-tuning (default: LoRA r16 all-linear)")
    ap.add_argument("--processes", type=int, default=2)
    a = ap.parse_args(argv)
    device = pick_device(a.device)
    dtype = a.dtype if a.dtype != "auto" else ("bfloat16" if native_bf16(device) else "float32")
    model = prepared_model(a.model)
    records, ids = examples(model, a.steps * a.batch, a.max_len)
    tokens = sum(len(x) - 1 for x in ids)
    args = {"model": model, "device": device.type, "dtype": dtype, "parallel": a.parallel, "full": a.full,
            "batch": a.batch, "micro": a.micro, "max_len": a.max_len, "micro_tokens": a.micro_tokens, "records": records}
    one = run(args, 1)
    many = run(args, a.processes)
    tps1, tpsn = tokens / one["seconds"], tokens / many["seconds"]
    emit({"bench": "train_dist", **machine(device), "model": model, "dtype": dtype, "parallel": a.parallel,
          "finetune": "full" if a.full else "lora", "steps": a.steps, "records_per_step": a.batch, "micro_batch": a.micro,
          "tokens": tokens, "measure": "cuda max_memory_allocated per GPU" if device.type == "cuda"
          else "peak RSS per process", "one": {"tokens_per_s": round(tps1, 1), "peak_mb": one["peak_mb"],
                                              "seconds": round(one["seconds"], 2), "wall_s": one["wall_s"]},
          "many": {"processes": a.processes, "tokens_per_s": round(tpsn, 1), "peak_mb_per_process": many["peak_mb"],
                   "seconds": round(many["seconds"], 2), "wall_s": many["wall_s"]},
          "ratio": round(tpsn / tps1, 3), "scaling_efficiency": round(tpsn / tps1 / a.processes, 3),
          "cores": os.cpu_count(), "torch_threads": torch.get_num_threads()})


if __name__ == "__main__":
    main()
