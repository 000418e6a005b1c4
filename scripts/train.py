"""Rule train: fine-tune the base weights on an experiment; write model, history and loss curves."""

import logging
from pathlib import Path

from tunejudge.config import split_runtime
from tunejudge.io import progress_stream, read_json, run_step, write_json
from tunejudge.model import config_for, load_model, save_checkpoint
from tunejudge.plots import loss_curves
from tunejudge.records import validate_records
from tunejudge.tokenizer import get_tokenizer
from tunejudge.train import TrainConfig, clear_resume, train

log = logging.getLogger("tunejudge.train")


def main(snakemake):
    p, out = snakemake.params, snakemake.output
    model_name = snakemake.wildcards.model
    runtime = split_runtime("train", {**snakemake.config["train"],
                                      **snakemake.config["models"][model_name].get("train", {})})[1]
    tc = TrainConfig.from_dict({**p.settings, **runtime})
    train_recs = validate_records(read_json(snakemake.input.train), snakemake.input.train)
    val_recs = validate_records(read_json(snakemake.input.val), snakemake.input.val)
    model = load_model(snakemake.input.base, config_for(p.size))
    resume = Path(p.resume_dir)
    with progress_stream(snakemake.log[0]) as stream:
        res = train(model, train_recs, val_recs, get_tokenizer(), tc, resume_dir=resume,
                    base_id=Path(snakemake.input.base).parent.name, progress=stream)
    label = f"{snakemake.wildcards.model}: {p.base_label}; fine-tuned on experiment {p.experiment}"
    res.history.update({"model": snakemake.wildcards.model, "label": label, "experiment": p.experiment})
    save_checkpoint(model, out.model, {"label": label, "experiment": p.experiment})
    write_json(out.history, res.history)
    final = res.history["final_val_loss"]
    loss_curves(res.history, f"{label}\nfinal val loss " + ("n/a" if final is None else f"{final:.4f}"), out.plot)
    clear_resume(resume)
    log.info("trained in %.1f s at %.0f tokens/s on %s; final val loss %s",
             res.stats["seconds"], res.stats["tokens_per_s"], res.stats["device"], res.history["final_val_loss"])


run_step(lambda: main(snakemake), snakemake.log[0])  # noqa: F821
