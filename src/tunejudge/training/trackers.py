"""Training runs where people look for them: opt-in TensorBoard event files (``train.trackers: [tensorboard]``).

One run per training -- a model, each of its replicates, each sweep point and seed -- under
``results/tensorboard/<run>/`` (the run's name is its path: ``full``, ``full-seed124``,
``sweeps/lr/lr~0.0005/seed1``): per optimizer step the training loss, the learning rate, tokens/s and
peak memory; per evaluation the validation loss; at the end the run's settings as hyperparameters
(base, experiment, seed, fine-tuning, learning rate, epochs) with the final validation loss, and the
run's label as text. Open them with ``tensorboard --logdir results/tensorboard``.

A resumed training continues its run: events after the resumed step are dropped and written again
(``purge_step``), so a curve never doubles back. The setting is runtime-only: turning it on reruns
nothing (``snakemake --forcerun train`` logs trainings that already exist).
"""

from __future__ import annotations

import logging
from pathlib import Path

from ..errors import ConfigError

log = logging.getLogger(__name__)
KINDS = ("tensorboard",)


class Tracker:
    """What the trainer calls: :meth:`step` each optimizer step, :meth:`evaluation` each evaluation."""

    def step(self, step: int, scalars: dict) -> None: ...

    def evaluation(self, step: int, scalars: dict) -> None: ...

    def finish(self, hparams: dict, metrics: dict, text: str = "") -> None: ...

    def close(self) -> None: ...


class TensorBoard(Tracker):
    def __init__(self, folder: Path, resume_step: int = 0):
        from torch.utils.tensorboard import SummaryWriter

        self.folder = Path(folder)
        # events after the resumed step were lost with the process that wrote them: drop and write them again
        self.writer = SummaryWriter(str(self.folder), purge_step=resume_step + 1 if resume_step else None)

    def _scalars(self, group: str, step: int, scalars: dict) -> None:
        for k, v in scalars.items():
            if v is not None:
                self.writer.add_scalar(f"{group}/{k}", v, step)

    def step(self, step, scalars):
        self._scalars("train", step, scalars)

    def evaluation(self, step, scalars):
        self._scalars("eval", step, scalars)

    def finish(self, hparams, metrics, text=""):
        clean = {k: (v if isinstance(v, (int, float, str, bool)) else str(v)) for k, v in hparams.items() if v is not None}
        self.writer.add_hparams(clean, {f"hparam/{k}": v for k, v in metrics.items() if v is not None}, run_name=".")
        if text:
            self.writer.add_text("run", text, 0)

    def close(self):
        self.writer.close()


class Trackers(Tracker):
    """Every configured tracker as one."""

    def __init__(self, trackers: list[Tracker], tags: dict | None = None, text: str = ""):
        self.trackers, self.tags, self.text = trackers, dict(tags or {}), text

    def step(self, step, scalars):
        for t in self.trackers:
            t.step(step, scalars)

    def evaluation(self, step, scalars):
        for t in self.trackers:
            t.evaluation(step, scalars)

    def finish(self, hparams, metrics, text=""):
        for t in self.trackers:
            t.finish({**self.tags, **hparams}, metrics, text or self.text)

    def close(self):
        for t in self.trackers:
            t.close()


def open_trackers(kinds, root: Path, run: str, resume_step: int = 0, tags: dict | None = None,
                  text: str = "") -> Trackers:
    """The trackers ``train.trackers`` names, writing run ``run`` under ``root`` (results/<kind>/<run>);
    ``tags`` join the run's hyperparameters (base, experiment, seed), ``text`` describes it."""
    kinds = list(kinds or [])
    bad = [k for k in kinds if k not in KINDS]
    if bad:
        raise ConfigError(f"train.trackers: {bad[0]!r} is not one of {', '.join(KINDS)}")
    out: list[Tracker] = []
    if "tensorboard" in kinds:
        try:
            out.append(TensorBoard(Path(root) / "tensorboard" / run, resume_step))
        except ImportError:
            raise ConfigError("train.trackers: tensorboard needs the tensorboard package "
                              "(`pip install tensorboard`; make setup installs it)") from None
    return Trackers(out, tags, text)
