# Models: base weights (GPT-2: Hub download or seeded random init; transformers bases: Hub, folder or
# GGUF, prepared and checked) and fine-tuning.


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
        f"{LOGS}/check_gpt2/{{size}}.log",
    benchmark:
        f"{BENCH}/check_gpt2/{{size}}.tsv"
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


rule download_base:
    """A transformers base named by Hub id: its files at the pinned revision, into the Hub cache (HF_HOME)."""
    output:
        "data/bases/{base}/source.json",
    wildcard_constraints:
        base="|".join(HUB_BASES) or NO_MATCH,
    params:
        hub=lambda w: BASES[w.base].hub,
    log:
        f"{LOGS}/download_base/{{base}}.log",
    benchmark:
        f"{BENCH}/download_base/{{base}}.tsv"
    conda:
        "../envs/torch.yaml"
    script:
        "../scripts/download_base.py"


rule prepare_base:
    """A transformers base as a plain from_pretrained folder: from the Hub cache (offline), a folder, or a
    GGUF file dequantized; the tokenizer told the EOS the model's config names."""
    input:
        get_base_source,
    output:
        directory("data/bases/{base}/model"),
    wildcard_constraints:
        base="|".join(HF_BASES) or NO_MATCH,
    params:
        base=lambda w: dataclasses.asdict(BASES[w.base]),
    log:
        f"{LOGS}/prepare_base/{{base}}.log",
    benchmark:
        f"{BENCH}/prepare_base/{{base}}.tsv"
    conda:
        "../envs/torch.yaml"
    script:
        "../scripts/prepare_base.py"


rule check_base:
    """Perplexity of a transformers base on a short English paragraph: a mis-converted base stops here."""
    input:
        "data/bases/{base}/model",
    output:
        "data/bases/{base}/perplexity.json",
    wildcard_constraints:
        base="|".join(HF_BASES) or NO_MATCH,
    params:
        base=lambda w: dataclasses.asdict(BASES[w.base]),
    log:
        f"{LOGS}/check_base/{{base}}.log",
    benchmark:
        f"{BENCH}/check_base/{{base}}.tsv"
    conda:
        "../envs/torch.yaml"
    script:
        "../scripts/check_base.py"


rule train:
    """Instruction-tune a model's base on one experiment's train split (fully, LoRA or QLoRA) or on a
    preference set (DPO), once per run (a model, each of its seeds, each sweep point and seed), in one process
    or train.processes (DDP / FSDP2); the result is exported as a from_pretrained folder with a model card."""
    input:
        train=get_train_split,
        val=get_val_split,
        base=get_base_weights,
        checked=get_weights_check,
    output:
        model=directory("results/models/{model}/hf"),
        history="results/models/{model}/history.json",
        plot="results/models/{model}/loss.png",
    wildcard_constraints:
        model="|".join(re.escape(r) for r in TRAINED_RUNS) or NO_MATCH,
    params:
        settings=lambda w: train_settings(w.model),
        base=lambda w: base_spec(w.model),
        finetune=lambda w: finetune_of(w.model),
        numerics=lambda w: train_numerics(w.model),  # device kind and resolved dtype: they decide the bytes
        model=lambda w: model_of(w.model),
        experiment=lambda w: config["models"][model_of(w.model)].get("experiment"),
        tokenizer=config["tokenizer"]["source"],
        resume_dir=lambda w: f"results/models/{w.model}/resume",
    threads: 8  # capped at --cores; CPU training and decoding use them all
    resources:
        gpu=lambda w: train_gpus(w.model),  # train.processes: one GPU each (torchrun)
        nodes=lambda w: train_processes(w.model)[1],  # train.nodes > 1: srun + torchrun across the allocation
        gres=lambda w: train_gres(w.model),
    log:
        f"{LOGS}/train/{{model}}.log",
    benchmark:
        f"{BENCH}/train/{{model}}.tsv"
    conda:
        "../envs/torch.yaml"
    script:
        "../scripts/train.py"
