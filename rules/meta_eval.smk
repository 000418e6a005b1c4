# The judge against human experts (targets outside `all`, like preflight): SummEval's expert ratings and
# MT-Bench's expert votes, every judge of the run (the judge section's and each panel judge).
#   snakemake meta_eval --cores all                      results/meta_eval/report.md
META = config.get("meta_eval") or {}
META_JUDGES = [PRIMARY_JUDGE, *PANEL]


localrules:
    meta_eval,


rule meta_eval:
    """The judge versus human experts: results/meta_eval/report.md (and its tables)."""
    input:
        "results/meta_eval/report.md",


rule meta_eval_sets:
    """The meta-evaluation's items: SummEval summaries and MT-Bench first-turn pairs, sampled as configured."""
    input:
        files=meta_files(),
        hub=[f for spec in META.values() if isinstance(spec, dict) for f in hub_manifest(spec["loader"])],
    output:
        summeval="results/meta_eval/summeval.items.json",
        mt_bench="results/meta_eval/mt_bench.items.json",
    params:
        summeval=META.get("summeval"),
        mt_bench=META.get("mt_bench"),
        seed=config["seed"],
    log:
        f"{LOGS}/meta_eval_sets/meta_eval_sets.log",
    benchmark:
        f"{BENCH}/meta_eval_sets/meta_eval_sets.tsv"
    conda:
        "../envs/data.yaml"
    script:
        "../scripts/meta_eval_sets.py"


rule meta_eval_judge:
    """One judge on the meta-evaluation's items: G-Eval's criteria on SummEval, pairwise on MT-Bench."""
    input:
        summeval="results/meta_eval/summeval.items.json",
        mt_bench="results/meta_eval/mt_bench.items.json",
    output:
        summeval="results/meta_eval/{judge}/summeval.jsonl",
        mt_bench="results/meta_eval/{judge}/mt_bench.jsonl",
        stats="results/meta_eval/{judge}/stats.json",
    params:
        judge=lambda w: judge_settings(None if w.judge == PRIMARY_JUDGE else w.judge),
        name=lambda w: w.judge,
        summeval=META.get("summeval"),
    wildcard_constraints:
        judge="|".join(META_JUDGES),
    threads: lambda w: judge_threads(w.judge)
    log:
        main=f"{LOGS}/meta_eval_judge/{{judge}}.log",
        server=f"{LOGS}/meta_eval_judge/{{judge}}.server.log",
    benchmark:
        f"{BENCH}/meta_eval_judge/{{judge}}.tsv"
    conda:
        "../envs/judge.yaml"
    script:
        "../scripts/meta_eval_judge.py"


rule meta_eval_report:
    """Every judge and the trivial baselines against the experts, beside the published figures."""
    input:
        summeval="results/meta_eval/summeval.items.json",
        mt_bench="results/meta_eval/mt_bench.items.json",
        summeval_rows=expand("results/meta_eval/{judge}/summeval.jsonl", judge=META_JUDGES),
        mt_bench_rows=expand("results/meta_eval/{judge}/mt_bench.jsonl", judge=META_JUDGES),
        stats=expand("results/meta_eval/{judge}/stats.json", judge=META_JUDGES),
    output:
        summeval="results/meta_eval/summeval.csv",
        mt_bench="results/meta_eval/mt_bench.csv",
        report="results/meta_eval/report.md",
    params:
        judges=META_JUDGES,
        analysis=config["analysis"],
        seed=config["seed"],
    log:
        f"{LOGS}/meta_eval_report/meta_eval_report.log",
    benchmark:
        f"{BENCH}/meta_eval_report/meta_eval_report.tsv"
    conda:
        "../envs/data.yaml"
    script:
        "../scripts/meta_eval_report.py"
