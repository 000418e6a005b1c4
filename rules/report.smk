# Analysis and report: the study's tables with CIs, per-source views, judge checks, plots, report.md.

ANALYSIS = config["analysis"]

TABLES = ["means", "means_by_source", "pairs", "pairs_by_source", "reference", "judge_agreement", "length_bias", "length_matched",
          "excluded_items", "empty_answers", "judge_validity", "length_controlled", "judge_cost", "pairwise",
          "panel_means", "panel_agreement", "panel_conclusions", "panel_validity", "seeds", "replicates",
          "adversarial", "flags", "preferences", "comparisons"]
PLOTS = ["scores", "win_tie_loss", "sources", "loss", "length_controlled", "seeds"]



rule analyze:
    """Means, win/tie/loss, gains, ratios (bootstrap CIs resampling the split's groups, sign test), per source;
    judge checks; cases."""
    input:
        test="data/splits/test.json",  # the items' groups: what the intervals resample
        judge=expand("results/judge/{model}.jsonl", model=MODELS),
        reference=expand("results/reference/{model}.jsonl", model=MODELS),
        responses="results/all_model_responses.json",
        controls=control_rows(),
        adversarial=adversarial_rows(),
        pairwise=pairwise_rows() + pairwise_null_rows(),
        panel=panel_rows(),
        panel_controls=panel_control_rows(),
        replicate_judge=expand("results/judge/{model}.jsonl", model=REPLICATES),
        replicate_reference=expand("results/reference/{model}.jsonl", model=REPLICATES),
        stats=[p.replace(".jsonl", ".stats.json") for p in
               expand("results/judge/{model}.jsonl", model=study_runs()) + control_rows() + pairwise_rows()
               + pairwise_null_rows() + panel_rows() + panel_control_rows()],
    output:
        **{t: report(f"results/tables/{t}.csv", category="Tables", caption="../report/tables.rst") for t in TABLES},
        cases="results/tables/cases.json",
        validity="results/tables/judge_validity.json",
    params:
        analysis=ANALYSIS,
        metrics=[m["name"] for m in config["judge"]["metrics"]],
        models=MODELS,
        seed=config["seed"],
        min_auc=CONTROLS.get("min_auc", 0.75),
        adversarial_tolerance=ADVERSARIAL.get("tolerance", 0.5),
        defences="+".join(config["judge"].get("defences") or []) or "none",
        tuned=tuned_models(),
        prices=config["judge"].get("prices"),
        panel=PANEL,
        panel_thresholds=PANEL_THRESHOLDS,
        runs_of=runs_of_models(),
        seed_of={r.name: r.seed for r in STUDY_RUNS},
    log:
        f"{LOGS}/analyze/analyze.log",
    benchmark:
        f"{BENCH}/analyze/analyze.tsv"
    conda:
        "../envs/data.yaml"
    script:
        "../scripts/analyze.py"


rule plots:
    """Loss curves, score distributions, per-source means, win/tie/loss bars."""
    input:
        judge=expand("results/judge/{model}.jsonl", model=MODELS),
        means_by_source="results/tables/means_by_source.csv",
        pairs="results/tables/pairs.csv",
        length_controlled="results/tables/length_controlled.csv",
        seeds="results/tables/seeds.csv",
        histories=expand("results/models/{model}/history.json", model=TRAINED),
        labels="results/model_labels.json",
    output:
        **{p: report(f"results/plots/{p}.png", category="Plots", caption=f"../report/{p}.rst") for p in PLOTS},
    params:
        metrics=[m["name"] for m in config["judge"]["metrics"]],
        models=MODELS,
        trained=TRAINED,
        level=ANALYSIS["ci_level"],
    log:
        f"{LOGS}/plots/plots.log",
    benchmark:
        f"{BENCH}/plots/plots.tsv"
    conda:
        "../envs/data.yaml"
    script:
        "../scripts/plots.py"


rule browser:
    """results/browser.html: every item and model side by side, verdicts and reasons, controls, pairwise,
    panel; one self-contained file (no server, no network), every text escaped."""
    input:
        responses="results/all_model_responses.json",
        labels="results/model_labels.json",
        judge=expand("results/judge/{model}.jsonl", model=study_runs()),
        reference=expand("results/reference/{model}.jsonl", model=study_runs()),
        controls=control_rows(),
        pairwise=pairwise_rows() + pairwise_null_rows(),
        panel=panel_rows(),
    output:
        report("results/browser.html", category="Browser", caption="../report/browser.rst"),
    params:
        metrics=[m["name"] for m in config["judge"]["metrics"]],
        config_files=lambda w: config_files(),
    log:
        f"{LOGS}/browser/browser.log",
    benchmark:
        f"{BENCH}/browser/browser.tsv"
    conda:
        "../envs/data.yaml"
    script:
        "../scripts/browser.py"


rule sweeps:
    """The sweeps' table and plot: per sweep run, its point, seed, final validation loss, judge-free metric
    (and judge total where judged), against each swept setting."""
    input:
        histories=[f"results/models/{r.name}/history.json" for runs in SWEEP_RUNS.values() for r in runs],
        reference=[f"results/reference/{r.name}.jsonl" for runs in SWEEP_RUNS.values() for r in runs],
        judge=[f"results/judge/{r.name}.jsonl" for runs in SWEEP_RUNS.values() for r in runs if r.judged],
    output:
        table=report("results/tables/sweeps.csv", category="Tables", caption="../report/tables.rst"),
        plot=report("results/plots/sweeps.png", category="Plots", caption="../report/sweeps.rst"),
    params:
        runs=R.runs_table([r for runs in SWEEP_RUNS.values() for r in runs]),
        metrics=[m["name"] for m in config["judge"]["metrics"]],
    log:
        f"{LOGS}/sweeps/sweeps.log",
    benchmark:
        f"{BENCH}/sweeps/sweeps.tsv"
    conda:
        "../envs/data.yaml"
    script:
        "../scripts/sweeps.py"


rule report:
    """results/report.md: every table and plot, naming the judge, the weights and the config."""
    input:
        tables=expand("results/tables/{t}.csv", t=TABLES),
        cases="results/tables/cases.json",
        validity="results/tables/judge_validity.json",
        plots=expand("results/plots/{p}.png", p=PLOTS),
        labels="results/model_labels.json",
        judge=expand("results/judge/{model}.jsonl", model=MODELS),
        checks=used_checks(),
        sweeps=sweep_files(),
        meta_eval=["results/meta_eval/report.md"] if (config.get("meta_eval") or {}).get("in_report") else [],
        preferences=[f"data/preferences/{s}.summary.json" for s in used_preference_sets()],
    output:
        report("results/report.md", category="Report", caption="../report/report.rst"),
    params:
        preference_sets=used_preference_sets(),
        bases=report_bases(),
        analysis=ANALYSIS,
        metrics=[m["name"] for m in config["judge"]["metrics"]],
        config_files=lambda w: config_files(),
        panel_thresholds=PANEL_THRESHOLDS,
        runs_of=runs_of_models(),
    log:
        f"{LOGS}/report/report.log",
    benchmark:
        f"{BENCH}/report/report.tsv"
    conda:
        "../envs/data.yaml"
    script:
        "../scripts/report.py"


rule provenance:
    """results/provenance.json: config as merged, dataset revisions, weight sha256, judge model ids, versions."""
    input:
        manifests=[f"data/hub/{key}.json" for key in HUB_DATASETS],
        downloads=[f for f in download_targets() if f.startswith("data/raw/")],
        weights=used_weights(),
        weights_source=weights_source(),
        perplexity=used_checks(),
        judge=expand("results/judge/{model}.jsonl", model=MODELS),
        responses=expand("results/responses/{model}.json", model=study_runs()),
        histories=expand("results/models/{model}/history.json", model=[r for r in study_runs() if RUN[r].trained]),
    output:
        "results/provenance.json",
    params:
        config=config,
        bases=base_files(),
        workflow_dir=workflow.basedir,
    log:
        f"{LOGS}/provenance/provenance.log",
    benchmark:
        f"{BENCH}/provenance/provenance.tsv"
    conda:
        "../envs/data.yaml"
    script:
        "../scripts/provenance.py"
