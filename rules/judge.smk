# Judging: deepeval GEval over every answer (any OpenAI-compatible endpoint, or the local smoke-test
# model), and the judge-free reference metrics beside it.
from tunejudge.reference import KIND_OF_BUILDER

JUDGE = {k: v for k, v in config["judge"].items() if k != "prices"}  # prices change no verdict


rule judge:
    """Every answer of one model scored on every judge metric; verdicts cached in judge.cache."""
    input:
        responses="results/all_model_responses.json",
    output:
        "results/judge/{model}.jsonl",
    params:
        judge=JUDGE,
    # the local backend runs a llama.cpp server inside the job; a remote judge only waits on HTTP
    threads: 2 if JUDGE["backend"] == "local" else 1
    log:
        main=f"{LOGS}/judge/{{model}}.log",
        server=f"{LOGS}/judge/{{model}}.server.log",
    benchmark:
        f"{BENCH}/judge/{{model}}.tsv"
    conda:
        "../envs/judge.yaml"
    script:
        "../scripts/judge.py"


rule reference_metrics:
    """Judge-free scores per answer: label accuracy, ROUGE-L, token F1, exact match."""
    input:
        responses="results/all_model_responses.json",
    output:
        "results/reference/{model}.jsonl",
    params:
        kinds={s: KIND_OF_BUILDER[spec["builder"]] for s, spec in config["sources"].items()},
    log:
        f"{LOGS}/reference_metrics/{{model}}.log",
    benchmark:
        f"{BENCH}/reference_metrics/{{model}}.tsv"
    conda:
        "../envs/data.yaml"
    script:
        "../scripts/reference_metrics.py"
