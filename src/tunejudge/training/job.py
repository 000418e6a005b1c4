"""One training job (rule ``train``): a run's base or starting model in, its export and history
out -- in this process, or in every process of a distributed training (``python -m tunejudge.training.job
<job.json>``, launched by torchrun or srun; rank 0 writes).

The rule's script turns what Snakemake passes into a :class:`TrainJob` (JSON-serialisable) and calls
:func:`run` (one process) or :func:`launch` (several); it draws the loss curves from the history."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import TunejudgeError

log = logging.getLogger("tunejudge.train")


@dataclass
class TrainJob:
    run: str  # the run: a model, a replicate, a sweep point's seed
    recipe: str  # the config model it is a run of
    base: dict  # tunejudge.models.bases.BaseSpec's fields
    finetune: dict  # tunejudge.models.bases.finetune_of
    settings: dict  # train settings that change the outputs
    runtime: dict  # train settings that only change how it runs (device, trackers, ...)
    tokenizer: str
    train: str  # the train split (records) or the preference set (pairs)
    val: str
    weights: str  # the base's weights, or the starting model's export
    model_dir: str
    history: str
    resume_dir: str
    experiment: str | None = None
    mix: dict = field(default_factory=dict)
    results_dir: str = "results"
    numerics: dict | None = None  # device kind and dtype the rule planned (tunejudge.run.numerics)

    def to_json(self, path) -> None:
        Path(path).write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def from_json(cls, path) -> TrainJob:
        return cls(**json.loads(Path(path).read_text()))


def run(job: TrainJob, progress=None) -> dict:
    """Train; rank 0 exports the model and writes the history. Returns the run's stats."""
    from ..data.records import validate_records
    from ..io import atomic_folder, read_json, read_jsonl, write_json
    from ..models.auto import open_lm
    from ..models.bases import BaseSpec, uses_lora
    from ..models.device import check_numerics, numerics_record
    from . import distributed
    from .preference import Preference
    from .trackers import open_trackers
    from .trainer import TrainConfig, clear_resume, compute_dtype, train

    runtime = dict(job.runtime)
    trackers = runtime.pop("trackers", None) or []  # train.trackers: opt-in, runtime-only
    runtime.pop("nodes", None)  # the launch's (srun), not the trainer's
    tc = TrainConfig.from_dict({**job.settings, **runtime})
    ft, objective = job.finetune, None
    if ft["method"] == "dpo":  # a preference set: its train and val pairs
        rows = read_jsonl(job.train)
        train_recs, val_recs = [r for r in rows if r["part"] == "train"], [r for r in rows if r["part"] == "val"]
        objective = Preference(loss_type=ft["loss"], beta=ft["beta"], simpo_gamma=ft["simpo_gamma"],
                               min_margin=ft["min_margin"])
    else:
        train_recs = validate_records(read_json(job.train), job.train)
        val_recs = validate_records(read_json(job.val), job.val)
    spec = BaseSpec(**job.base)
    world = distributed.world()

    def opened():
        device = distributed.rank_device(tc.device, world) if ft.get("quantize") else "cpu"
        lm = open_lm(spec, job.weights, tokenizer=job.tokenizer, quantize=ft.get("quantize"), device=device)
        if uses_lora(ft):
            lm.add_lora(ft, seed=tc.seed)
        return lm

    lm = opened()
    if world.main:
        log.info("%s: %s", job.run, lm.describe())
    tags = {"run": job.run, "model": job.recipe, "base": spec.label(), "experiment": job.experiment,
            "finetune": ft["method"], "lora_r": ft.get("r") if uses_lora(ft) else None}
    made_by = numerics_record(distributed.rank_device(tc.device, world),
                              compute_dtype(tc, distributed.rank_device(tc.device, world)))
    check_numerics(job.numerics, made_by, f"train {job.run}")  # before any step: hours are not spent on it
    track = ((lambda start: open_trackers(trackers, Path(job.results_dir), job.run, start, tags, job.run))
             if trackers and world.main else None)
    res = train(lm, train_recs, val_recs, tc, resume_dir=Path(job.resume_dir), base_id=f"{spec.name}:{spec.where()}",
                progress=progress if world.main else False, track=track, objective=objective)
    res.history.update({"model": job.run, "recipe": job.recipe, "seed": tc.seed,
                        "experiment": job.experiment, "base": spec.name, "finetune": ft,
                        "processes": world.size, "parallel": res.stats["parallel"], "made_by": made_by})
    if world.main:
        if res.full_state is not None:  # FSDP2 left the model in shards: the gathered weights into a whole one
            lm = opened()
            lm.load_trainable_state(res.full_state, "the gathered FSDP2 weights")
        card = {"model": job.run, "recipe": job.recipe, "seed": tc.seed, "base": spec.label(),
                "base_model": (spec.hub or {}).get("repo"),
                "random_init": spec.family == "gpt2" and spec.weights == "random", "experiment": job.experiment,
                "mix": job.mix, **({"preferences": ft["preferences"], "init": ft.get("init")} if ft["method"] == "dpo" else {}),
                "examples": {"train": res.history["train_examples"], "val": res.history["val_examples"]},
                "finetune": ft, "train": job.settings, "final_val_loss": res.history["final_val_loss"],
                "processes": world.size, "parallel": res.stats["parallel"], "folder": job.model_dir,
                "made_by": made_by}
        with atomic_folder(job.model_dir) as tmp:  # the export whole, or not at all; readable as the umask says
            lm.export(tmp, card)
        write_json(job.history, res.history)
        clear_resume(Path(job.resume_dir))
        log.info("trained in %.1f s at %.0f tokens/s on %s%s; final val loss %s; exported to %s",
                 res.stats["seconds"], res.stats["tokens_per_s"], res.stats["device"],
                 f" x {world.size} processes ({res.stats['parallel']})" if world.active else "",
                 res.history["final_val_loss"], job.model_dir)
    world.barrier()
    return res.stats


PARENT = "TUNEJUDGE_JOB_PID"  # the rule's script: a rank whose script is gone stops (no orphaned ranks)


def launch(job: TrainJob, processes: int, log_file=None) -> None:
    """Run ``job`` in ``processes`` processes on this machine (torchrun, standalone rendezvous), or across the
    nodes of a SLURM allocation (srun + torchrun, the rendezvous on its first node); wait, and fail as they do.
    The ranks end with this process, however it ends: SIGTERM stops their process group, and each rank
    watches this process and exits when it is gone."""
    import signal
    import tempfile

    from . import distributed

    with tempfile.TemporaryDirectory(prefix="tunejudge-job-") as tmp:
        spec = Path(tmp) / "job.json"
        job.to_json(spec)
        cmd = distributed.launch_command(processes, [sys.executable, "-m", "tunejudge.training.job", str(spec)])
        log.info("launching %d processes: %s", processes, " ".join(cmd))
        env = {**os.environ, "PYTHONUNBUFFERED": "1", PARENT: str(os.getpid())}
        out = open(log_file, "a", encoding="utf-8") if log_file else None  # noqa: SIM115 -- closed below
        try:
            proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT if out else None,
                                    start_new_session=True)
            try:
                code = proc.wait()
            except BaseException:
                _stop_group(proc, signal)
                raise
        finally:
            if out:
                out.close()
    if code != 0:
        raise TunejudgeError(f"the distributed training of {job.run} failed (exit code {code}); every rank's "
                             f"output is in {log_file or 'the output above'}")


def _stop_group(proc, signal) -> None:
    for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _watch_parent() -> None:
    import threading
    import time

    pid = int(os.environ.get(PARENT, "0") or 0)
    if not pid:
        return

    def watch():
        while True:
            time.sleep(2)
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                os._exit(1)
            except PermissionError:
                pass

    threading.Thread(target=watch, name="job-watchdog", daemon=True).start()


def main(argv=None) -> None:
    """``python -m tunejudge.training.job <job.json>``: one rank of a distributed training (its output goes to
    the launcher's, which the rule's log holds; ranks other than 0 log warnings only)."""
    from ..io import progress_stream, run_step
    from . import distributed

    args = argv if argv is not None else sys.argv[1:]
    job = TrainJob.from_json(args[0])
    _watch_parent()

    def go():
        if int(os.environ.get("RANK", "0")) != 0:
            logging.getLogger().setLevel(logging.WARNING)
        with distributed.initialized():
            with progress_stream(None) as stream:
                run(job, progress=stream)

    run_step(go)


if __name__ == "__main__":
    main()
