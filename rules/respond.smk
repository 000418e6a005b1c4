# Responses: every model answers the one global test set.


rule respond:
    """Greedy answers of one model to every test item (batched, KV-cached)."""
    input:
        test="data/splits/test.json",
        weights=model_weights,
        checked=get_weights_check,
    output:
        "results/responses/{model}.json",
    params:
        generation=generation_settings(),
        base=lambda w: base_spec(w.model),
        label=lambda w: model_label(w.model),
        tokenizer=config["tokenizer"]["source"],
        length_policy=length_policy(),
    threads: 8  # capped at --cores; CPU training and decoding use them all
    resources:
        gpu=1,
    log:
        f"{LOGS}/respond/{{model}}.log",
    benchmark:
        f"{BENCH}/respond/{{model}}.tsv"
    conda:
        "../envs/torch.yaml"
    script:
        "../scripts/respond.py"


rule merge_responses:
    """all_model_responses.json in the study's format: one "model <name>" key per model (and per replicate:
    "model full-seed124"; sweep points answer in results/responses/sweeps/ only)."""
    input:
        test="data/splits/test.json",
        responses=expand("results/responses/{model}.json", model=study_runs()),
    output:
        responses="results/all_model_responses.json",
        labels="results/model_labels.json",
    log:
        f"{LOGS}/merge_responses/merge_responses.log",
    benchmark:
        f"{BENCH}/merge_responses/merge_responses.tsv"
    conda:
        "../envs/data.yaml"
    script:
        "../scripts/merge_responses.py"
