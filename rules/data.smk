# Data: corpora -> instruction datasets -> curated datasets -> splits.


rule download_source:
    """Fetch a source's raw file once (e.g. Raschka's instruction-data.json)."""
    output:
        "data/raw/{source}/{file}",
    params:
        spec=lambda w: source_download(w.source),
    log:
        f"{LOGS}/download_source/{{source}}/{{file}}.log",
    benchmark:
        f"{BENCH}/download_source/{{source}}/{{file}}.tsv"
    conda:
        "../envs/data.yaml"
    script:
        "../scripts/download_source.py"


rule build_instructions:
    """One builder per source: corpus rows -> instruction records."""
    input:
        source_files,
    output:
        "data/instructions/{source}_instruction_data.json",
    params:
        spec=lambda w: config["sources"][w.source],
        seed=config["seed"],
    log:
        f"{LOGS}/build_instructions/{{source}}.log",
    benchmark:
        f"{BENCH}/build_instructions/{{source}}.tsv"
    conda:
        "../envs/data.yaml"
    script:
        "../scripts/build_instructions.py"


rule curate:
    """Schema check, drops with reasons, dedup, token-length policy, persona filter."""
    input:
        "data/instructions/{source}_instruction_data.json",
    output:
        kept="data/curated/{source}.json",
        dropped="data/curated/{source}.dropped.json",
    params:
        curation=config["curation"],
        tokenizer=config["tokenizer"]["source"],
    log:
        f"{LOGS}/curate/{{source}}.log",
    benchmark:
        f"{BENCH}/curate/{{source}}.tsv"
    conda:
        "../envs/data.yaml"
    script:
        "../scripts/curate.py"


rule split:
    """One global test set, then train/val per experiment, by content hash."""
    input:
        expand("data/curated/{source}.json", source=SOURCES),
    output:
        test="data/splits/test.json",
        parts=expand("data/splits/{experiment}/{part}.json", experiment=EXPERIMENTS, part=["train", "val"]),
        manifest="data/splits/manifest.json",
        dropped="data/splits/dropped.json",
    params:
        split=config["split"],
        experiments=config["experiments"],
        seed=config["seed"],
    log:
        f"{LOGS}/split/split.log",
    benchmark:
        f"{BENCH}/split/split.tsv"
    conda:
        "../envs/data.yaml"
    script:
        "../scripts/split.py"
