# Model: base weights (Hub download or seeded random init) and fine-tuning.


rule download_gpt2:
    """The Hub's GPT-2 safetensors (openai-community/<size>), fetched once."""
    output:
        weights="data/pretrained/{size}/model.safetensors",
        source="data/pretrained/{size}/source.json",
    wildcard_constraints:
        size="|".join(HUB_SIZES),
    log:
        f"{LOGS}/download_gpt2/{{size}}.log",
    benchmark:
        f"{BENCH}/download_gpt2/{{size}}.tsv"
    conda:
        "../envs/torch.yaml"
    script:
        "../scripts/download_gpt2.py"


rule check_gpt2:
    """Perplexity of the base weights on a short English paragraph: mis-mapped weights fail loudly."""
    input:
        "data/pretrained/{size}/model.safetensors",
    output:
        "data/pretrained/{size}/perplexity.json",
    params:
        max_perplexity=config["gpt2"].get("max_perplexity"),
    wildcard_constraints:
        size="|".join(HUB_SIZES),
    log:
        "results/logs/check_gpt2/{size}.log",
    benchmark:
        "results/benchmarks/check_gpt2/{size}.tsv"
    conda:
        "../envs/torch.yaml"
    script:
        "../scripts/check_gpt2.py"


rule init_gpt2:
    """A randomly initialised GPT-2 of the configured size (offline default; labelled random init)."""
    output:
        "data/pretrained/random-init/{size}-seed{seed}/model.safetensors",
    log:
        f"{LOGS}/init_gpt2/{{size}}-seed{{seed}}.log",
    benchmark:
        f"{BENCH}/init_gpt2/{{size}}-seed{{seed}}.tsv"
    conda:
        "../envs/torch.yaml"
    script:
        "../scripts/init_gpt2.py"


rule train:
    """Instruction-tune the base weights on one experiment's train split."""
    input:
        train=lambda w: f"data/splits/{config['models'][w.model]['experiment']}/train.json",
        val=lambda w: f"data/splits/{config['models'][w.model]['experiment']}/val.json",
        base=base_weights(),
        checked=weights_check(),
    output:
        model="results/models/{model}/model.safetensors",
        history="results/models/{model}/history.json",
        plot="results/models/{model}/loss.png",
    params:
        settings=lambda w: train_settings(w.model),
        size=GPT2_SIZE,
        base_label=lambda w: base_label(),
        experiment=lambda w: config["models"][w.model]["experiment"],
        resume_dir=lambda w: f"results/models/{w.model}/resume",
    threads: 8  # capped at --cores; CPU training and decoding use them all
    resources:
        gpu=1,
    log:
        f"{LOGS}/train/{{model}}.log",
    benchmark:
        f"{BENCH}/train/{{model}}.tsv"
    conda:
        "../envs/torch.yaml"
    script:
        "../scripts/train.py"
