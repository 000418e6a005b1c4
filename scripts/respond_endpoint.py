"""Rule respond_endpoint: a model behind an OpenAI-compatible endpoint answers the test set."""

import logging

from tunejudge.data.records import validate_records
from tunejudge.io import progress_stream, read_json, run_step, write_json
from tunejudge.llm.store import AnswerStore
from tunejudge.models.endpoint import EndpointModel, answer_all
from tunejudge.run.telemetry import disable_telemetry

disable_telemetry()
log = logging.getLogger("tunejudge.respond")


def main(snakemake):
    p, out = snakemake.params, snakemake.output
    spec = EndpointModel(**p.endpoint)
    test = validate_records(read_json(snakemake.input.test), snakemake.input.test)
    log.info("%s: %d test items to %s (model %s, %s prompt, %d in flight), max_tokens %d", snakemake.wildcards.model,
             len(test), spec.where(), spec.model, spec.prompt, spec.in_flight, p.max_new_tokens)
    with progress_stream(snakemake.log[0]) as stream:
        answers, stats = answer_all(spec, test, max_tokens=p.max_new_tokens, store=AnswerStore(p.cache), progress=stream)
    write_json(out.responses, {
        "model": snakemake.wildcards.model,
        "generation": {"max_new_tokens": p.max_new_tokens, "decoding": "greedy", "endpoint": spec.where(),
                       "served_model": spec.model, "prompt": spec.prompt},
        "responses": [{"id": r["id"], "source": r["source"], "response": a} for r, a in zip(test, answers)],
    })
    write_json(out.stats, {"model": snakemake.wildcards.model, "endpoint": spec.where(), **stats})
    log.info("%d answers: %d requests sent, %d from the answer store", len(answers), stats.get("requests", 0),
             stats.get("cached", 0))


run_step(lambda: main(snakemake), snakemake.log[0])  # noqa: F821
