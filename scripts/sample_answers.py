"""Rule sample_answers: k seeded samples of one model per prompt of a preference set (its experiment's train
and val splits)."""

import logging

from tunejudge.data.preferences import choose_prompts
from tunejudge.data.records import validate_records
from tunejudge.io import progress_stream, read_json, run_step, write_json
from tunejudge.models.auto import open_lm
from tunejudge.models.bases import BaseSpec
from tunejudge.models.device import pick_device, pick_dtype
from tunejudge.models.respond import sample_answers
from tunejudge.models.sampling import Sampling
from tunejudge.run.config import split_runtime

log = logging.getLogger("tunejudge.sample_answers")


def main(snakemake):
    p, s = snakemake.params, snakemake.params.sampling
    train = validate_records(read_json(snakemake.input.train), snakemake.input.train)
    val = validate_records(read_json(snakemake.input.val), snakemake.input.val)
    chosen = choose_prompts(train, val, s.get("sources"), s.get("prompts"), s["seed"])
    gen = split_runtime("generation", snakemake.config["generation"])
    device = pick_device({**gen[0], **gen[1]}.get("device", "auto"))
    lm = open_lm(BaseSpec(**p.base), snakemake.input.weights, device=device,
                 dtype=pick_dtype(gen[0].get("dtype", "auto"), device), tokenizer=p.tokenizer)
    lm.module.eval()
    sampling = Sampling(temperature=s["temperature"], top_p=s["top_p"], seed=s["seed"])
    log.info("%s: %d samples of each of %d prompts (%s), temperature %s, top-p %s, on %s", p.model, s["samples"],
             len(chosen), ", ".join(s.get("sources") or ["every source"]), s["temperature"], s["top_p"], device)
    with progress_stream(snakemake.log[0]) as stream:
        answers, stats = sample_answers(lm, [r for r, _ in chosen], s["samples"], sampling,
                                        max_new_tokens=s["max_new_tokens"], batch_size=gen[0].get("batch_size", 8),
                                        length_policy=p.length_policy, progress=stream)
    write_json(snakemake.output[0], {
        "model": p.model, "sampling": s,
        "items": [{"part": part, "record": rec, "samples": a} for (rec, part), a in zip(chosen, answers)]})
    log.info("%d prompts x %d samples, %d prompts shortened to fit", len(chosen), s["samples"], stats.truncated)


run_step(lambda: main(snakemake), snakemake.log[0])  # noqa: F821
