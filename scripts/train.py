"""Rule train: fine-tune a model's base on an experiment (fully, LoRA or QLoRA) or on a preference set (DPO),
in this process or in ``train.processes`` (torchrun / srun: DDP or FSDP2); export it as a from_pretrained folder
with a model card; write its history and loss curves."""

import logging

from tunejudge.analysis.plots import loss_curves
from tunejudge.io import progress_stream, read_json, run_step
from tunejudge.run.config import split_runtime
from tunejudge.training.job import TrainJob, launch, run

log = logging.getLogger("tunejudge.train")


def main(snakemake):
    p, inp, out = snakemake.params, snakemake.input, snakemake.output
    runtime = split_runtime("train", {**snakemake.config["train"],
                                      **snakemake.config["models"][p.model].get("train", {})})[1]
    job = TrainJob(run=snakemake.wildcards.model, recipe=p.model, base=p.base, finetune=p.finetune, numerics=p.numerics,
                   settings=p.settings, runtime=runtime, tokenizer=p.tokenizer, train=inp.train,
                   val=inp.val, weights=inp.base, model_dir=out.model, history=out.history,
                   resume_dir=p.resume_dir, experiment=p.experiment,
                   mix=(snakemake.config["experiments"][p.experiment].get("mix") or {}) if p.experiment else {})
    if p.settings.get("processes", 1) > 1:  # torchrun (srun + torchrun across a SLURM allocation's nodes)
        launch(job, p.settings["processes"], log_file=snakemake.log[0])
    else:
        with progress_stream(snakemake.log[0]) as stream:
            run(job, progress=stream)
    history = read_json(out.history)
    final = history["final_val_loss"]
    loss_curves(history, f"{snakemake.wildcards.model}\nfinal val loss " + ("n/a" if final is None else f"{final:.4f}"),
                out.plot)


run_step(lambda: main(snakemake), snakemake.log[0])  # noqa: F821
