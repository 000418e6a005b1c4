"""Training runs in TensorBoard (tunejudge.training.trackers, train.trackers: [tensorboard]): every step's loss,
learning rate, tokens/s and memory, every evaluation, the run's settings and final metrics; a resumed
training continues its curve without doubling back."""

import pytest
from test_train import TC, records, tiny_model

from tunejudge.errors import ConfigError
from tunejudge.training.trackers import open_trackers
from tunejudge.training.trainer import TrainConfig, train


def scalars(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}, acc


def test_a_training_run_in_tensorboard(tmp_path):
    recs, val = records(24), records(4, seed=1)  # 6 steps
    tc = TrainConfig.from_dict(TC)
    tags = {"run": "full-seed7", "base": "gpt2-tiny", "experiment": "full"}
    res = train(tiny_model(), recs, val, tc, progress=False,
                track=lambda start: open_trackers(["tensorboard"], tmp_path, "full-seed7", start, tags, "a label"))
    got, acc = scalars(tmp_path / "tensorboard" / "full-seed7")
    steps = res.history["steps"]
    for tag in ("train/loss", "train/lr", "train/tokens_per_s", "train/peak_memory_mb"):
        assert [s for s, _ in got[tag]] == list(range(1, steps + 1)), tag
    evals = res.history["evaluations"]
    assert [(s, round(v, 4)) for s, v in got["eval/val_loss"]] == [(e["step"], round(e["val_loss"], 4)) for e in evals]
    assert all(v == pytest.approx(1e-3) for _, v in got["train/lr"]) and all(v > 0 for _, v in got["train/peak_memory_mb"])
    # the settings and final metric (hparams plugin) and the label
    hp = [p for p in (tmp_path / "tensorboard" / "full-seed7").rglob("events.out.tfevents*")]
    assert hp and "hparam/final_val_loss" in got and got["hparam/final_val_loss"][0][1] == pytest.approx(res.history["final_val_loss"], abs=1e-5)
    assert "run/text_summary" in acc.Tags()["tensors"]


def test_a_resumed_training_continues_its_curve(tmp_path):
    recs, val = records(24), records(4, seed=1)  # 6 steps: stopped after 4, resumed from the state of step 3
    tc = TrainConfig.from_dict(TC)

    def track(start):
        return open_trackers(["tensorboard"], tmp_path, "full", start)

    train(tiny_model(), recs, val, tc, resume_dir=tmp_path / "resume", progress=False, stop_after_steps=4, track=track)
    res = train(tiny_model(), recs, val, tc, resume_dir=tmp_path / "resume", progress=False, track=track)
    got, _ = scalars(tmp_path / "tensorboard" / "full")
    steps = [s for s, _ in got["train/loss"]]
    assert steps == list(range(1, res.history["steps"] + 1))  # steps 4.. written once, after the resumed step 3


def test_an_unknown_tracker_is_one_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="train.trackers: 'wandb' is not one of tensorboard"):
        open_trackers(["wandb"], tmp_path, "full")
