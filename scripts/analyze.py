"""Rule analyze: the study's statistics with CIs, per source, judge checks and qualitative cases."""

from pathlib import Path

from tunejudge.analysis.tables import Inputs, analyze, identity
from tunejudge.data.split import split_units
from tunejudge.io import read_json, read_jsonl, run_step, write_json, write_text_atomic
from tunejudge.judge.scores import read_judge_rows


def job_name(path: str) -> str:
    """A judge job's name in the cost table: its outputs' path under results/judge/ (base, controls,
    pairwise/full_vs_base, panel/<judge>/base)."""
    rel = Path(path).relative_to("results/judge").as_posix()
    return rel.removesuffix(".stats.json").removesuffix(".jsonl")


def by_judge(paths) -> dict[str, list[dict]]:
    """results/judge/panel/<judge>/<file>.jsonl rows, per panel judge."""
    out: dict[str, list[dict]] = {}
    for p in paths:
        out.setdefault(Path(p).parent.name, []).extend(read_judge_rows(p))
    return out


def main(snakemake):
    inp, params, out = snakemake.input, snakemake.params, snakemake.output
    job_rows = {job_name(p): read_jsonl(p) for p in [*inp.judge, *inp.replicate_judge, *inp.controls, *inp.pairwise,
                                                     *inp.panel, *inp.panel_controls]}
    if inp.adversarial:  # judged by the controls' job: its verdicts and tokens count there
        job_rows["controls"] = job_rows.get("controls", []) + [r for p in inp.adversarial for r in read_jsonl(p)]
    panel = by_judge(inp.panel)
    inputs = Inputs(
        judge=[r for p in inp.judge for r in read_judge_rows(p)],
        reference=[r for p in inp.reference for r in read_jsonl(p)],
        answers={r["id"]: r for r in read_json(inp.responses)},
        controls=[r for p in inp.controls for r in read_judge_rows(p)] if inp.controls else None,
        adversarial=[r for p in inp.adversarial for r in read_judge_rows(p)] if inp.adversarial else None,
        panel={j: panel.get(j, []) for j in params.panel},
        panel_controls=by_judge(inp.panel_controls),
        pairwise=[r for p in inp.pairwise for r in read_jsonl(p)],
        replicate_judge=[r for p in inp.replicate_judge for r in read_judge_rows(p)],
        replicate_reference=[r for p in inp.replicate_reference for r in read_jsonl(p)],
        jobs={j: (job_rows.get(j, []), read_json(p)) for j, p in ((job_name(p), p) for p in inp.stats)},
        primary_identity=identity(read_judge_rows(inp.judge[0])) if params.panel else "",
        groups=split_units(read_json(inp.test)),
    )
    result = analyze(inputs, cfg=params.analysis, metrics=params.metrics, models=params.models, seed=params.seed,
                     min_auc=params.min_auc, panel_thresholds=params.panel_thresholds, runs_of=params.runs_of,
                     seed_of=params.seed_of, prices=params.prices,
                     adversarial_tolerance=params.adversarial_tolerance, defences=params.defences,
                     tuned=params.tuned)
    write_json(out.validity, result.verdict)
    for name, df in result.tables.items():
        write_text_atomic(getattr(out, name), df.to_csv(index=False, float_format="%.6f"))
    write_json(out.cases, result.cases)


run_step(lambda: main(snakemake), snakemake.log[0])  # noqa: F821
