# Judging: deepeval GEval over every answer (any OpenAI-compatible endpoint, or the local smoke-test
# model), and the judge-free reference metrics beside it.
from tunejudge.analysis.reference import KIND_OF_BUILDER


rule judge:
    """Every answer of one run (a model, a replicate, a judged sweep point) scored on every judge metric;
    verdicts cached in judge.cache."""
    input:
        test="data/splits/test.json",
        responses="results/responses/{model}.json",
    output:
        "results/judge/{model}.jsonl",
        prompts="results/judge/{model}.prompts.json",
        stats="results/judge/{model}.stats.json",
    wildcard_constraints:
        model="|".join(re.escape(r) for r in JUDGED),
    params:
        judge=judge_settings(),
    # the local backend runs a llama.cpp server inside the job; a remote judge only waits on HTTP
    threads: judge_threads()
    log:
        main=f"{LOGS}/judge/{{model}}.log",
        server=f"{LOGS}/judge/{{model}}.server.log",
    benchmark:
        f"{BENCH}/judge/{{model}}.tsv"
    conda:
        "../envs/judge.yaml"
    script:
        "../scripts/judge.py"


rule judge_controls:
    """The judge on answers whose verdict is known: each test item's own reference (positive
    control), another item's reference of the same source (negative control), and answers written to
    talk the judge into a score (adversarial controls: null answers, injections, padding, loops)."""
    input:
        test="data/splits/test.json",
    output:
        "results/judge/controls.jsonl",
        stats="results/judge/controls.stats.json",
        **({"adversarial": "results/judge/adversarial.jsonl"} if ADVERSARIAL.get("enabled") else {}),
    params:
        judge=judge_settings(),
        controls=CONTROLS,
        seed=config["seed"],
    threads: judge_threads()
    log:
        main=f"{LOGS}/judge_controls/controls.log",
        server=f"{LOGS}/judge_controls/controls.server.log",
    benchmark:
        f"{BENCH}/judge_controls/controls.tsv"
    conda:
        "../envs/judge.yaml"
    script:
        "../scripts/judge_controls.py"


rule judge_panel:
    """Every answer of one model scored by one panel judge (judge.panel.judges.<judge>), every metric."""
    input:
        test="data/splits/test.json",
        responses="results/responses/{model}.json",
    output:
        "results/judge/panel/{judge}/{model}.jsonl",
        prompts="results/judge/panel/{judge}/{model}.prompts.json",
        stats="results/judge/panel/{judge}/{model}.stats.json",
    params:
        judge=lambda w: judge_settings(w.judge),
        name=lambda w: w.judge,
    wildcard_constraints:
        judge="|".join(PANEL) or NO_MATCH,
        model="|".join(MODELS),
    threads: lambda w: judge_threads(w.judge)
    log:
        main=f"{LOGS}/judge_panel/{{judge}}/{{model}}.log",
        server=f"{LOGS}/judge_panel/{{judge}}/{{model}}.server.log",
    benchmark:
        f"{BENCH}/judge_panel/{{judge}}/{{model}}.tsv"
    conda:
        "../envs/judge.yaml"
    script:
        "../scripts/judge.py"


rule judge_panel_controls:
    """One panel judge on the control answers (as judge_controls), so each judge's validity is known."""
    input:
        test="data/splits/test.json",
    output:
        "results/judge/panel/{judge}/controls.jsonl",
        stats="results/judge/panel/{judge}/controls.stats.json",
    params:
        judge=lambda w: judge_settings(w.judge),
        name=lambda w: w.judge,
        controls=panel_controls(),
        seed=config["seed"],
    wildcard_constraints:
        judge="|".join(PANEL) or NO_MATCH,
    threads: lambda w: judge_threads(w.judge)
    log:
        main=f"{LOGS}/judge_panel_controls/{{judge}}.log",
        server=f"{LOGS}/judge_panel_controls/{{judge}}.server.log",
    benchmark:
        f"{BENCH}/judge_panel_controls/{{judge}}.tsv"
    conda:
        "../envs/judge.yaml"
    script:
        "../scripts/judge_controls.py"


rule judge_pairwise:
    """Two models' answers side by side (judge.pairwise), asked in both orders, every judge metric."""
    input:
        responses="results/all_model_responses.json",
    output:
        rows="results/judge/pairwise/{a}_vs_{b}.jsonl",
        prompts="results/judge/pairwise/{a}_vs_{b}.prompts.json",
        stats="results/judge/pairwise/{a}_vs_{b}.stats.json",
    params:
        judge=judge_settings(),
        pairwise=PAIRWISE,
    wildcard_constraints:
        a="|".join(MODELS),
        b="|".join(MODELS),
    threads: judge_threads()
    log:
        main=f"{LOGS}/judge_pairwise/{{a}}_vs_{{b}}.log",
        server=f"{LOGS}/judge_pairwise/{{a}}_vs_{{b}}.server.log",
    benchmark:
        f"{BENCH}/judge_pairwise/{{a}}_vs_{{b}}.tsv"
    conda:
        "../envs/judge.yaml"
    script:
        "../scripts/judge_pairwise.py"


rule judge_pairwise_null:
    """The null model (one constant answer that addresses the grader, after Zheng et al. 2025) against one
    model's answers, side by side in both orders, every judge metric (judge.pairwise)."""
    input:
        responses="results/all_model_responses.json",
    output:
        rows="results/judge/pairwise/null_model_vs_{model}.jsonl",
        prompts="results/judge/pairwise/null_model_vs_{model}.prompts.json",
        stats="results/judge/pairwise/null_model_vs_{model}.stats.json",
    params:
        judge=judge_settings(),
        pairwise=PAIRWISE,
        null=True,
    wildcard_constraints:
        model="|".join(MODELS),
    threads: judge_threads()
    log:
        main=f"{LOGS}/judge_pairwise_null/{{model}}.log",
        server=f"{LOGS}/judge_pairwise_null/{{model}}.server.log",
    benchmark:
        f"{BENCH}/judge_pairwise_null/{{model}}.tsv"
    conda:
        "../envs/judge.yaml"
    script:
        "../scripts/judge_pairwise.py"


rule reference_metrics:
    """Judge-free scores per answer of one run: label accuracy, ROUGE-L, token F1, exact match."""
    input:
        test="data/splits/test.json",
        responses="results/responses/{model}.json",
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
