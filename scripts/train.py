"""Rule train: fine-tune a model's base on an experiment (fully or LoRA); export it as a from_pretrained
folder with a model card; write its history and loss curves."""

import logging
from pathlib import Path

from tunejudge.analysis.plots import loss_curves
from tunejudge.data.records import validate_records
from tunejudge.io import atomic_folder, progress_stream, read_json, run_step, write_json
from tunejudge.models.auto import open_lm
from tunejudge.models.bases import BaseSpec
from tunejudge.run.config import split_runtime
from tunejudge.training.trackers import open_trackers
from tunejudge.training.trainer import TrainConfig, clear_resume, train

log = logging.getLogger("tunejudge.train")


def main(snakemake):
    p, out = snakemake.params, snakemake.output
    model_name = snakemake.wildcards.model  # the run: a model, a replicate, a sweep point's seed
    runtime = split_runtime("train", {**snakemake.config["train"],
                                      **snakemake.config["models"][p.model].get("train", {})})[1]
    trackers = runtime.pop("trackers", None) or []  # train.trackers: opt-in, runtime-only
    tc = TrainConfig.from_dict({**p.settings, **runtime})
    train_recs = validate_records(read_json(snakemake.input.train), snakemake.input.train)
    val_recs = validate_records(read_json(snakemake.input.val), snakemake.input.val)
    spec = BaseSpec(**p.base)
    lm = open_lm(spec, snakemake.input.base, tokenizer=p.tokenizer)
    if p.finetune["method"] == "lora":
        lm.add_lora(p.finetune, seed=tc.seed)
    log.info("%s: %s", model_name, lm.describe())
    resume = Path(p.resume_dir)
    with progress_stream(snakemake.log[0]) as stream:
        tags = {"run": model_name, "model": p.model, "base": spec.label(), "experiment": p.experiment,
                "finetune": p.finetune["method"], "lora_r": (p.finetune.get("r") if p.finetune["method"] == "lora" else None)}
        track = (lambda start: open_trackers(trackers, Path("results"), model_name, start, tags, p.label)) if trackers else None
        res = train(lm, train_recs, val_recs, tc, resume_dir=resume, base_id=f"{spec.name}:{spec.where()}",
                    progress=stream, track=track)
    res.history.update({"model": model_name, "recipe": p.model, "seed": tc.seed, "label": p.label,
                        "experiment": p.experiment, "base": spec.name, "finetune": p.finetune})
    card = {"model": model_name, "recipe": p.model, "seed": tc.seed, "base": spec.label(), "base_model": (spec.hub or {}).get("repo"),
            "random_init": spec.family == "gpt2" and spec.weights == "random", "experiment": p.experiment,
            "mix": (snakemake.config["experiments"][p.experiment].get("mix") or {}),
            "examples": {"train": res.history["train_examples"], "val": res.history["val_examples"]},
            "finetune": p.finetune, "train": p.settings, "final_val_loss": res.history["final_val_loss"],
            "folder": out.model}
    with atomic_folder(out.model) as tmp:  # the export whole, or not at all; readable as the umask says
        lm.export(tmp, card)
    write_json(out.history, res.history)
    final = res.history["final_val_loss"]
    loss_curves(res.history, f"{p.label}\nfinal val loss " + ("n/a" if final is None else f"{final:.4f}"), out.plot)
    clear_resume(resume)
    log.info("trained in %.1f s at %.0f tokens/s on %s; final val loss %s; exported to %s",
             res.stats["seconds"], res.stats["tokens_per_s"], res.stats["device"], final, out.model)


run_step(lambda: main(snakemake), snakemake.log[0])  # noqa: F821
