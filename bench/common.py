"""Helpers shared by the benchmarks: realistic prompts from the shipped samples, device timing."""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def sample_records() -> list[dict]:
    """Instruction records built from every shipped sample corpus (varied lengths, real formats).

    Rows are read directly (no `datasets`), so the benchmarks run on a bare GPU image too.
    """
    import yaml

    from tunejudge.data.builders import build
    from tunejudge.io import read_json, read_jsonl

    cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    out = []
    for source, spec in cfg["sources"].items():
        path = ROOT / spec["loader"]["data_files"]
        rows = read_json(path) if path.suffix == ".json" else read_jsonl(path)
        records, _ = build(spec["builder"], rows, spec, source)
        out += records
    return out


def sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device):
    sync(device)
    t = time.perf_counter()
    out = fn()
    sync(device)
    return out, time.perf_counter() - t


def machine(device) -> dict:
    d = torch.device(device)
    name = torch.cuda.get_device_name(d) if d.type == "cuda" else platform.processor() or platform.machine()
    return {"device": str(d), "device_name": name, "torch": torch.__version__, "threads": torch.get_num_threads()}


def emit(result: dict) -> None:
    """The last line of every benchmark: one JSON object."""
    print(json.dumps(result, sort_keys=True))


def in_child(fn, args: dict, data, what: str):
    """``fn(args, data, queue)`` in a spawned process of its own (its peak RSS is its own); what it put on the
    queue. ``what`` names the run in the error when the child fails."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=fn, args=(args, data, q))
    p.start()
    p.join()
    if p.exitcode != 0:
        raise SystemExit(f"{what} failed in its child process (exit code {p.exitcode})")
    return q.get()


def training_parser(doc: str, *, steps: int = 6, micro_tokens: int = 1024, unit: str = "records",
                    dtype: bool = True, lr: float | None = None):
    """The arguments every training benchmark takes: the model, device, (dtype), steps, batch, micro-batch,
    length and tunejudge's token bound per pass, (the learning rate)."""
    import argparse

    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="a from_pretrained folder or Hub id (default: the packaged SmolLM2)")
    ap.add_argument("--device", default="cpu")
    if dtype:
        ap.add_argument("--dtype", default="auto", help="float32 | bfloat16 | auto (bf16 where native), every side")
    ap.add_argument("--steps", type=int, default=steps)
    ap.add_argument("--batch", type=int, default=8, help=f"{unit} per optimizer step (the effective batch)")
    ap.add_argument("--micro", type=int, default=4, help=f"{unit} per forward pass")
    ap.add_argument("--max-len", type=int, default=256)
    ap.add_argument("--micro-tokens", type=int, default=micro_tokens,
                    help="tunejudge: at most this many padded tokens per forward pass (train.micro_batch_tokens)")
    if lr is not None:
        ap.add_argument("--lr", type=float, default=lr)
    return ap
