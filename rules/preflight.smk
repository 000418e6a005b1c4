# Before a paid run: fetch what needs the network, and check what the run will ask and cost.
#   snakemake download --cores 1 --configfile config/paper.yaml   every Hub corpus, the weights, Raschka's file
#   snakemake preflight  --configfile config/paper.yaml   key, endpoint, Hub; planned requests and cost
#   snakemake config     --configfile config/paper.yaml   results/config.yaml: the config as merged


localrules:
    download,
    preflight,
    config,


rule download:
    """Every download of this config (on a cluster: run it on the login node, then submit the rest)."""
    input:
        download_targets(),


rule preflight:
    """Key, endpoint, Hub and URLs checked without a paid request; planned requests, tokens, cost."""
    params:
        hub_datasets=HUB_DATASETS,
        judged=JUDGED,
        meta_judges=[PRIMARY_JUDGE, *PANEL],
        runs=R.runs_table(list(RUN.values())),
        model_repos=lambda w: hub_model_repos(),
        downloads=lambda w: [
            (spec["download"]["url"], f"data/raw/{s}/{spec['download']['file']}")
            for s, spec in config["sources"].items()
            if spec.get("download")
        ],
    log:
        f"{LOGS}/preflight/preflight.log",
    conda:
        "../envs/judge.yaml"
    script:
        "../scripts/preflight.py"


rule config:
    """results/config.yaml: the config this run gets, the files merged as tunejudge.run.config composes them."""
    output:
        "results/config.yaml",
    params:
        config=config,
    log:
        f"{LOGS}/config/config.log",
    conda:
        "../envs/data.yaml"
    script:
        "../scripts/config.py"
