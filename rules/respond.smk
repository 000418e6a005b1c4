# Responses: every model answers the one global test set.


rule respond:
    """Greedy answers of one model to every test item (batched, KV-cached; or through vLLM)."""
    input:
        test="data/splits/test.json",
        weights=model_weights,
        checked=get_weights_check,
    output:
        "results/responses/{model}.json",
    wildcard_constraints:
        model="|".join(re.escape(r) for r in NATIVE_RUNS) or NO_MATCH,  # an endpoint model: respond_endpoint
    params:
        generation=generation_settings(),
        base=lambda w: base_spec(w.model),
        # what decides the answers' bytes beyond the settings: device kind, resolved dtype, kernel path
        numerics=lambda w: respond_numerics(w.model),
        tokenizer=config["tokenizer"]["source"],
        length_policy=length_policy(),
        # generation.engine vllm: a LoRA run answers as the weights it was trained on plus its adapter
        base_weights=lambda w: get_base_weights(w) if RUN[w.model].trained else None,
    threads: 8  # capped at --cores; CPU training and decoding use them all
    resources:
        # generation.engine vllm: tensor parallelism over generation.gpus
        gpu=config["generation"].get("gpus", 1) if config["generation"].get("engine") == "vllm" else 1,
    log:
        f"{LOGS}/respond/{{model}}.log",
    benchmark:
        f"{BENCH}/respond/{{model}}.tsv"
    conda:
        "../envs/torch.yaml"
    script:
        "../scripts/respond.py"


rule respond_endpoint:
    """Answers of a model behind an OpenAI-compatible endpoint (models.<m>.endpoint: a hosted API, vllm serve,
    SGLang, llama.cpp's server) to every test item, through the LLM layer: bounded concurrency, retries, the
    answer store (a rerun sends nothing), a request budget; the requests sent and their cost beside them."""
    input:
        test="data/splits/test.json",
    output:
        responses="results/responses/{model}.json",
        stats="results/responses/{model}.stats.json",
    wildcard_constraints:
        model="|".join(re.escape(m) for m in ENDPOINTS) or NO_MATCH,
    params:
        endpoint=lambda w: dataclasses.asdict(endpoint_of(config, w.model)),
        max_new_tokens=config["generation"]["max_new_tokens"],
        cache=config["judge"]["cache"],
    log:
        f"{LOGS}/respond_endpoint/{{model}}.log",
    benchmark:
        f"{BENCH}/respond_endpoint/{{model}}.tsv"
    conda:
        "../envs/judge.yaml"
    script:
        "../scripts/respond_endpoint.py"


rule merge_responses:
    """all_model_responses.json in the study's format: one "model <name>" key per model (and per replicate:
    "model full-seed124"; sweep points answer in results/responses/sweeps/ only)."""
    input:
        test="data/splits/test.json",
        responses=expand("results/responses/{model}.json", model=study_runs()),
    output:
        responses="results/all_model_responses.json",
    log:
        f"{LOGS}/merge_responses/merge_responses.log",
    benchmark:
        f"{BENCH}/merge_responses/merge_responses.tsv"
    conda:
        "../envs/data.yaml"
    script:
        "../scripts/merge_responses.py"


rule model_labels:
    """How every output names each run (results/model_labels.json): display labels live here and in the
    report only, never in a training's or an answer's parameters, so rewording one reruns only what shows it."""
    output:
        "results/model_labels.json",
    params:
        labels=lambda w: {run: model_label(run) for run in study_runs()},
    log:
        f"{LOGS}/model_labels/model_labels.log",
    benchmark:
        f"{BENCH}/model_labels/model_labels.tsv"
    conda:
        "../envs/data.yaml"
    script:
        "../scripts/model_labels.py"
