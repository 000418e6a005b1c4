"""What decides an output's bytes beyond its settings, resolved before a job runs (tunejudge.run.numerics)
and checked by the job against what it computes with (tunejudge.models.device)."""

import pytest
import torch

from tunejudge.errors import TunejudgeError
from tunejudge.models.device import check_numerics, numerics_record, pick_dtype
from tunejudge.run import numerics
from tunejudge.training.trainer import TrainConfig, compute_dtype


def test_auto_follows_the_device_as_the_jobs_choose(monkeypatch):
    monkeypatch.setattr(numerics, "_cuda_visible", lambda: True)
    assert numerics.resolve("generation", family="gpt2") == {"device": "cuda", "dtype": "bfloat16", "kernels": "torch"}
    assert numerics.resolve("train")["dtype"] == "bfloat16"
    monkeypatch.setattr(numerics, "_cuda_visible", lambda: False)
    monkeypatch.setattr(numerics.platform, "system", lambda: "Linux")
    for flags, want in (({"avx2"}, "float32"), ({"avx512_bf16"}, "bfloat16"), ({"amx_tile"}, "bfloat16")):
        monkeypatch.setattr(numerics, "_cpu_flags", lambda flags=flags: flags)
        assert numerics.resolve("train") == {"device": "cpu", "dtype": want, "kernels": "n/a"}
        assert numerics.resolve("generation")["dtype"] == "float32"  # generation's auto: bf16 on CUDA only
        # the trainer's own choice on this CPU is the same rule
        assert compute_dtype(TrainConfig(), torch.device("cpu")) == want
    assert pick_dtype("auto", torch.device("cpu")) == torch.float32


def test_an_explicit_setting_wins_and_the_kernel_path_follows_the_environment(monkeypatch):
    monkeypatch.setattr(numerics, "_cuda_visible", lambda: False)
    assert numerics.resolve("generation", "bfloat16", "cpu", "gpt2")["kernels"] == "torch"  # float32 kernels only
    assert numerics.resolve("generation", "auto", "cuda:1", "transformers") == {
        "device": "cuda", "dtype": "bfloat16", "kernels": "n/a"}
    monkeypatch.setattr(numerics.shutil, "which", lambda cc: "/usr/bin/cc")
    assert numerics.resolve("generation", family="gpt2")["kernels"] == "native"
    monkeypatch.setenv(numerics.KERNELS_ENV, "off")
    assert numerics.resolve("generation", family="gpt2")["kernels"] == "torch"
    monkeypatch.delenv(numerics.KERNELS_ENV)
    monkeypatch.setattr(numerics.shutil, "which", lambda cc: None)  # no compiler: torch's ops
    assert numerics.resolve("generation", family="gpt2")["kernels"] == "torch"


def test_a_job_that_would_compute_otherwise_than_planned_stops_naming_the_fix():
    made = numerics_record(torch.device("cpu"), torch.float32, "native")
    assert made["dtype"] == "float32" and made["device"] == "cpu" and made["versions"]["torch"] == torch.__version__
    check_numerics({"device": "cpu", "dtype": "float32", "kernels": "torch"}, made, "respond m")  # kernels: logged
    with pytest.raises(TunejudgeError, match=r"respond m: resolved to device cuda .* generation.device: cuda"):
        check_numerics({"device": "cuda", "dtype": "bfloat16", "kernels": "n/a"}, made, "respond m")
    with pytest.raises(TunejudgeError, match="dtype bfloat16"):
        check_numerics({"device": "cpu", "dtype": "bfloat16"}, made, "train m")
