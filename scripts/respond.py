"""Rule respond: one model's greedy answers to the test set."""

import logging

from tunejudge.data.records import validate_records
from tunejudge.io import progress_stream, read_json, run_step, write_json
from tunejudge.models.auto import open_lm
from tunejudge.models.bases import BaseSpec
from tunejudge.models.device import check_numerics, numerics_record, pick_device, pick_dtype
from tunejudge.models.gpt2 import kernels
from tunejudge.models.respond import respond
from tunejudge.models.vllm import engine_for
from tunejudge.run.config import split_runtime

log = logging.getLogger("tunejudge.respond")


def main(snakemake):
    p = snakemake.params
    gen = {**p.generation, **split_runtime("generation", snakemake.config["generation"])[1]}
    test = validate_records(read_json(snakemake.input.test), snakemake.input.test)
    device = pick_device(gen.get("device", "auto"))
    dtype = pick_dtype(gen.get("dtype", "auto"), device)
    spec = BaseSpec(**p.base)
    engine = None
    if gen.get("engine", "native") == "vllm":  # vLLM decodes; the model's own tokenizer and rules make the prompts
        engine = engine_for(spec.family, snakemake.wildcards.model, snakemake.input.weights, p.base_weights, gen.get("gpus", 1))
        lm = open_lm(spec, snakemake.input.weights, tokenizer=p.tokenizer, weights=False)
    else:
        lm = open_lm(spec, snakemake.input.weights, device=device, dtype=dtype, tokenizer=p.tokenizer)
        lm.module.eval()
    made_by = numerics_record(device, dtype, kernels.path(device, dtype) if spec.family == "gpt2" and engine is None
                              else "n/a")
    check_numerics(p.numerics, made_by, f"respond {snakemake.wildcards.model}")
    if made_by["kernels"] != p.numerics["kernels"]:
        log.warning("decoding kernels: planned %s, running %s (%s); the answers file records it", p.numerics["kernels"],
                    made_by["kernels"], kernels.status())
    log.info("%s on %s (%s), %d test items, max_new_tokens %d", snakemake.wildcards.model, device, dtype, len(test),
             gen["max_new_tokens"])
    if device.type == "cpu" and spec.family == "gpt2":
        log.info("native decoding kernels %s", kernels.status())
    with progress_stream(snakemake.log[0]) as stream:
        answers, stats = respond(lm, test, max_new_tokens=gen["max_new_tokens"], batch_size=gen["batch_size"],
                                 length_policy=p.length_policy, progress=stream, engine=engine)
    if stats.truncated or stats.clipped:
        log.warning("%d of %d prompts were longer than the context less max_new_tokens: %d had their input "
                    "shortened (%s), %d were left-truncated", stats.truncated + stats.clipped, stats.prompts,
                    stats.truncated, p.length_policy, stats.clipped)
    model_name = snakemake.wildcards.model
    write_json(snakemake.output[0], {
        "model": model_name,
        "generation": {"max_new_tokens": gen["max_new_tokens"], "decoding": "greedy", "truncated_prompts": stats.truncated,
                       "clipped_prompts": stats.clipped, **({"engine": "vllm"} if engine is not None else {})},
        "made_by": made_by,
        "responses": [{"id": r["id"], "source": r["source"], "response": a} for r, a in zip(test, answers)],
    })
    log.info("%d answers, %d new tokens", len(answers), stats.new_tokens)


run_step(lambda: main(snakemake), snakemake.log[0])  # noqa: F821
