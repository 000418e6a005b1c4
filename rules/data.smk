# Data: corpora -> instruction datasets -> curated datasets -> splits.


# Network only here: download rules run on the submitting machine (localrules); every other job
# reads the Hub offline from the cache they fill (the Snakefile sets HF_HUB_OFFLINE for jobs).
localrules:
    download_source,
    download_corpus,
    download_gpt2,


rule download_corpus:
    """A Hub corpus split through datasets.load_dataset, once, into the Hub cache; its manifest."""
    output:
        "data/hub/{dataset}.json",
    params:
        loader=lambda w: HUB_DATASETS[w.dataset][0],
        key=lambda w: HUB_DATASETS[w.dataset][1],
    wildcard_constraints:
        dataset="|".join(HUB_DATASETS) or NO_MATCH,
    log:
        f"{LOGS}/download_corpus/{{dataset}}.log",
    benchmark:
        f"{BENCH}/download_corpus/{{dataset}}.tsv"
    conda:
        "../envs/data.yaml"
    script:
        "../scripts/download_corpus.py"


rule download_source:
    """Fetch a source's raw file once (e.g. Raschka's instruction-data.json), checked by its sha256."""
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


rule generate_qa_cnn:
    """RAGAS test-set generation over news articles: knowledge graph, personas, query synthesizers."""
    input:
        articles=article_files,
        hub=article_hub,
    output:
        testset="data/generated/{source}/ragas_testset.jsonl",
        skipped="data/generated/{source}/ragas_skipped.json",
    params:
        spec=lambda w: config["sources"][w.source]["generate"],
        llm=llm_settings(),
        seed=config["seed"],
        tokenizer=config["tokenizer"]["source"],
    wildcard_constraints:
        source="|".join(GENERATED) or NO_MATCH,
    threads: judge_threads()
    log:
        main=f"{LOGS}/generate_qa_cnn/{{source}}.log",
        server=f"{LOGS}/generate_qa_cnn/{{source}}.server.log",
    benchmark:
        f"{BENCH}/generate_qa_cnn/{{source}}.tsv"
    conda:
        "../envs/judge.yaml"
    script:
        "../scripts/generate_qa_cnn.py"


rule build_instructions:
    """One builder per source: corpus rows (and generated rows) -> instruction records."""
    input:
        corpus=source_files,
        hub=source_hub,
        generated=generated_file,
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


rule audit_qa_cnn:
    """The LLM auditor's verdict on each generated QA item: grounded in its context, standalone."""
    input:
        "data/instructions/{source}_instruction_data.json",
    output:
        "data/audit/{source}.json",
    params:
        audit=AUDIT,
        llm=llm_settings(),
        noisy_personas=config["curation"].get("noisy_personas", []),
    wildcard_constraints:
        source="|".join(AUDITED) or NO_MATCH,
    threads: judge_threads()
    log:
        main=f"{LOGS}/audit_qa_cnn/{{source}}.log",
        server=f"{LOGS}/audit_qa_cnn/{{source}}.server.log",
    benchmark:
        f"{BENCH}/audit_qa_cnn/{{source}}.tsv"
    conda:
        "../envs/judge.yaml"
    script:
        "../scripts/audit_qa_cnn.py"


rule curate:
    """Schema check, drops with reasons, dedup, token-length policy, persona filter, LLM audit."""
    input:
        records="data/instructions/{source}_instruction_data.json",
        audit=audit_file,
    output:
        kept="data/curated/{source}.json",
        dropped="data/curated/{source}.dropped.json",
    params:
        curation={k: v for k, v in config["curation"].items() if k != "audit"},
        audit_mode=AUDIT.get("mode", "enforce"),
        tokenizer=config["tokenizer"]["source"],
        builder=lambda wc: config["sources"][wc.source]["builder"],
        required=lambda wc: list(required_fields(config["sources"][wc.source]["builder"], config["sources"][wc.source])),
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


rule split_size:
    """One experiment at another size (a sweep over experiment.size): the split rule's own algorithm, so the
    test set is the same and a smaller size's records are a subset of a larger one's."""
    input:
        expand("data/curated/{source}.json", source=SOURCES),
    output:
        train="data/splits/{experiment}/size{size}/train.json",
        val="data/splits/{experiment}/size{size}/val.json",
    params:
        split=config["split"],
        experiment=lambda w: {**config["experiments"][w.experiment], "size": int(w.size)},
        seed=config["seed"],
    wildcard_constraints:
        size=r"\d+",
    log:
        f"{LOGS}/split_size/{{experiment}}-size{{size}}.log",
    benchmark:
        f"{BENCH}/split_size/{{experiment}}-size{{size}}.tsv"
    conda:
        "../envs/data.yaml"
    script:
        "../scripts/split_size.py"
