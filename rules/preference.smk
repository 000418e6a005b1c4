# Preference sets for preference tuning (models with finetune: dpo): k sampled answers of a model to each
# training prompt, ranked by a verifiable reward or the judge, or a file in TRL's format; never a test item.


rule sample_answers:
    """k seeded samples (temperature, top-p) of one model per prompt of a preference set's experiment,
    train and val splits: batched, the same samples batched or one prompt at a time."""
    input:
        unpack(sample_inputs),
    output:
        "results/samples/{set}.json",
    wildcard_constraints:
        set="|".join(SAMPLED) or NO_MATCH,
    params:
        sampling=lambda w: sample_settings(w.set),
        base=lambda w: base_spec(PREFERENCES[w.set]["model"]),
        model=lambda w: PREFERENCES[w.set]["model"],
        tokenizer=config["tokenizer"]["source"],
        length_policy=length_policy(),
    threads: 8  # capped at --cores; CPU decoding uses them all
    resources:
        gpu=1,
    log:
        f"{LOGS}/sample_answers/{{set}}.log",
    benchmark:
        f"{BENCH}/sample_answers/{{set}}.tsv"
    conda:
        "../envs/torch.yaml"
    script:
        "../scripts/sample_answers.py"


rule judge_samples:
    """The judge on a judge-ranked preference set's samples: GEval pointwise (every metric), or the first two
    samples of each prompt side by side in both orders (preferences.<set>.judge_mode: pairwise)."""
    input:
        samples="results/samples/{set}.json",
    output:
        "results/judge/samples/{set}.jsonl",
        stats="results/judge/samples/{set}.stats.json",
    wildcard_constraints:
        set="|".join(JUDGED_SETS) or NO_MATCH,
    params:
        judge=judge_settings(),
        mode=lambda w: PREFERENCES[w.set].get("judge_mode", "pointwise"),
    threads: judge_threads()
    log:
        main=f"{LOGS}/judge_samples/{{set}}.log",
        server=f"{LOGS}/judge_samples/{{set}}.server.log",
    benchmark:
        f"{BENCH}/judge_samples/{{set}}.tsv"
    conda:
        "../envs/judge.yaml"
    script:
        "../scripts/judge_samples.py"


rule preferences:
    """A preference set in TRL's format (prompt, chosen, rejected, margin, origin): the best and the worst
    sample of each prompt where their margin is enough, or the judge's pairwise verdict that held in both
    orders, or a file; checked against the test set like the split. A judge that fails its controls is
    refused unless the set allows it in so many words."""
    input:
        unpack(preference_inputs),
    output:
        "data/preferences/{set}.jsonl",
        summary="data/preferences/{set}.summary.json",
    wildcard_constraints:
        set="|".join(PREFERENCES) or NO_MATCH,
    params:
        spec=lambda w: PREFERENCES[w.set],
        kinds={s: KIND_OF_BUILDER[spec["builder"]] for s, spec in config["sources"].items()},
        threshold=config["split"].get("near_duplicate_threshold", 0.85),
        metrics=[m["name"] for m in config["judge"]["metrics"]],
        min_auc=CONTROLS.get("min_auc", 0.75),
        adversarial_tolerance=ADVERSARIAL.get("tolerance", 0.5),
        defences="+".join(config["judge"].get("defences") or []) or "none",
        seed=config["seed"],
    log:
        f"{LOGS}/preferences/{{set}}.log",
    benchmark:
        f"{BENCH}/preferences/{{set}}.tsv"
    conda:
        "../envs/data.yaml"
    script:
        "../scripts/preferences.py"
