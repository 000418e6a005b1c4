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
