"""What decides an output's bytes beyond its settings: the device kind, the resolved dtype and the
decoding kernel path, resolved *before* a job runs, torch-free (the DAG is parsed without torch).

``train.device`` and ``generation.device`` are runtime-only settings, but ``dtype: auto`` follows the
device (bf16 on CUDA; for training also on CPUs with AVX512-BF16 or AMX; float32 elsewhere) and the
GPT-2 decoder runs native kernels on CPUs with a C compiler, torch's ops elsewhere. Rules ``train`` and
``respond`` carry :func:`resolve`'s answer as a parameter, so a run on another kind of machine reruns
exactly the jobs whose bytes it changes; each job checks it computes as resolved
(:func:`tunejudge.models.device.check_numerics`) and records what it actually used.

On a cluster the submitting host may not be the kind of node the job lands on: name the device
(``generation.device: cuda``, ``train.device: cuda``) in the cluster's config file.
"""

from __future__ import annotations

import os
import platform
import shutil
from pathlib import Path

KERNELS_ENV = "TUNEJUDGE_NATIVE_KERNELS"  # 0: torch's ops for decoding (tunejudge.models.gpt2.kernels)


def kernels_disabled() -> bool:
    return os.environ.get(KERNELS_ENV, "1").strip().lower() in ("0", "false", "no", "off")


def _cuda_visible() -> bool:
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return False
    gpus = Path("/proc/driver/nvidia/gpus")
    return gpus.is_dir() and any(gpus.iterdir())


def _cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_kind(requested: str = "auto") -> str:
    """``cuda``, ``mps`` or ``cpu``: the configured device's kind, or for ``auto`` this machine's (as
    :func:`tunejudge.models.device.pick_device` chooses)."""
    if requested != "auto":
        return requested.split(":", 1)[0]
    if _cuda_visible():
        return "cuda"
    if platform.system() == "Darwin" and platform.machine() == "arm64":
        return "mps"
    return "cpu"


def cpu_bf16() -> bool:
    """Whether this CPU runs bf16 natively (AVX512-BF16 or AMX), as the trainer's ``dtype: auto`` asks."""
    return bool(_cpu_flags() & {"avx512_bf16", "amx_tile", "amx_bf16"})


def resolve(section: str, dtype: str = "auto", device: str = "auto", family: str | None = None) -> dict:
    """``{"device", "dtype", "kernels"}`` a ``train`` or ``generation`` job will compute with here."""
    kind = device_kind(device)
    if dtype != "auto":
        resolved = dtype
    elif section == "train":
        resolved = "bfloat16" if kind == "cuda" or (kind == "cpu" and cpu_bf16()) else "float32"
    else:
        resolved = "bfloat16" if kind == "cuda" else "float32"
    kernels = "n/a"
    if section == "generation" and family == "gpt2":  # the native kernels decode float32 on CPUs only
        native = kind == "cpu" and resolved == "float32" and not kernels_disabled() \
            and shutil.which(os.environ.get("CC") or "cc") is not None
        kernels = "native" if native else "torch"
    return {"device": kind, "dtype": resolved, "kernels": kernels}
