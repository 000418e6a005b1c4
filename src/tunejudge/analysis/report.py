"""results/report.md: every table and plot of the analysis, with what produced them."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import pandas as pd

from ..io import md_table
from .plots import percent

STUDY_TOTALS = {"full": 10.241, "base": 1.32, "small": 9.122}  # the study's mean totals (0-15), study.md


def fmt(v, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def ci(row, key: str, digits: int = 2, pct: bool = False) -> str:
    """'mean [lo, hi]' from a row with key, key_lo, key_hi."""
    if pct:
        return f"{fmt(100 * row[key], 1)}% [{fmt(100 * row[f'{key}_lo'], 1)}, {fmt(100 * row[f'{key}_hi'], 1)}]"
    return f"{fmt(row[key], digits)} [{fmt(row[f'{key}_lo'], digits)}, {fmt(row[f'{key}_hi'], digits)}]"


def shorten(text: str, n: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "…"


def means_md(means: pd.DataFrame, metrics: list[str], first: str | None = None, flags: pd.DataFrame | None = None,
             sets: dict | None = None) -> str:
    """The mean-scores table; a model with flagged answers carries the warning beside its name."""
    header = ([first] if first else []) + ["model"] + metrics + ["total", "n"]
    rows = []
    for _, r in means.iterrows():
        rows.append(([r[first]] if first else []) + [r["model"] + flag_mark(flags, r["model"]) + judge_made_mark(sets, r["model"])]
                    + [ci(r, m) for m in metrics + ["total"]] + [r["n"]])
    return md_table(header, rows)


def flag_mark(flags: pd.DataFrame | None, model: str) -> str:
    """The warning beside a model whose answers address the judge or loop (:mod:`tunejudge.judge.flags`)."""
    if flags is None or not len(flags):
        return ""
    row = flags[flags.model == model]
    if not len(row) or not int(row.iloc[0]["flagged"]):
        return ""
    r = row.iloc[0]
    parts = []
    if int(r["addresses_judge"]):
        parts.append(f"{int(r['addresses_judge'])} address the judge")
    if int(r["degenerate"]):
        parts.append(f"{int(r['degenerate'])} degenerate")
    return f" (WARNING: {int(r['flagged'])} of {int(r['answers'])} answers flagged: {', '.join(parts)})"


# Zheng et al., "Cheating Automatic LLM Benchmarks: Null Models Achieve High Win Rates" (ICLR 2025): what one
# constant answer reached against the benchmarks' judges
NULL_MODEL_FIGURES = "AlpacaEval 2.0 length-controlled win rate 86.5%, Arena-Hard-Auto 83.0, MT-Bench 9.55 of 10"


def pairs_md(pairs: pd.DataFrame, first: str | None = None) -> str:
    header = ([first] if first else []) + ["pair", "win", "tie", "loss", "p (permutation)", "gain (mean)", "gain max",
                                            "gain min", "n"]
    rows = []
    for _, r in pairs.iterrows():
        rows.append(([r[first]] if first else []) + [
            r["pair"], ci(r, "win", pct=True), ci(r, "tie", pct=True), ci(r, "loss", pct=True),
            fmt(r["p"], 4), ci(r, "gain"), fmt(r["gain_max"], 2), fmt(r["gain_min"], 2), r["n"]])
    return md_table(header, rows)


def headline_mark(verdict: dict) -> str:
    """What every headline table's heading carries when the judge failed its controls."""
    if verdict.get("passes") is False:
        return " -- JUDGE FAILED ITS CONTROLS: not evidence about the models"
    if verdict.get("enabled") and verdict.get("passes") is None:
        return " -- JUDGE UNDECIDED (too few control items): not evidence about the models"
    if not verdict.get("enabled"):
        return " (judge not validated: judge.controls is off)"
    return ""


def validity_md(validity: pd.DataFrame | None, verdict: dict, pct: str) -> list[str]:
    """The report's first section: can this judge tell a right answer from a wrong one?"""
    out = ["## Judge validity", ""]
    if not verdict.get("enabled") or validity is None:
        return out + ["Controls are off (`judge.controls.enabled: false`): nothing below checks that the judge "
                      "separates correct answers from wrong ones.", ""]
    auc = verdict.get("auc_passes", verdict["passes"])
    if auc is True:
        out.append(f"**The judge passes its controls**: on every metric it ranks each test item's reference answer "
                   f"above another item's reference with AUC >= {verdict['min_auc']}, the whole interval over.")
    elif auc is None:
        out.append(f"**The judge's controls are UNDECIDED** ({', '.join(verdict.get('undecided_metrics') or [])}): "
                   f"on {verdict.get('items')} control items the AUC's interval straddles {verdict['min_auc']}, so the "
                   f"items cannot tell whether it separates a right answer from a wrong one (about "
                   f"{verdict.get('items_needed') or 'more'} items would decide; `judge.controls.items_per_source`). "
                   "Every score below is therefore not evidence about the models either.")
    else:
        out.append(f"**The judge FAILS its controls** (AUC below {verdict['min_auc']} on "
                   f"{', '.join(verdict['failing_metrics']) or 'every metric'}, the whole interval under): it does "
                   "not reliably score a test item's own reference answer above the reference of another item. Every "
                   "score, mean, win rate and ratio below is therefore not evidence about the models.")
    out += ["", "Positive control: the item's reference answer; negative control: the reference answer of another "
            "test item of the same source. AUC = P(positive scored higher) + P(tie) / 2; 0.5 is chance. "
            f"{pct}% bootstrap CI over the items' groups; a metric passes when the whole interval clears the "
            "threshold, fails when it stays under, and is undecided otherwise.", ""]
    out.append(md_table(["scope", "metric", "AUC", "mean positive", "mean negative", "items", "passes"],
                        [[r.scope, r.metric, f"{fmt(r.auc, 2)} [{fmt(r.auc_lo, 2)}, {fmt(r.auc_hi, 2)}]",
                          fmt(r.mean_positive, 2), fmt(r.mean_negative, 2), r.items,
                          _gate_word(r.passes, r.scope)] for r in validity.itertuples()]))
    return out + [""]


def _gate_word(passes, scope: str = "all") -> str:
    if scope != "all":
        return ""
    if passes is True or passes == "True":
        return "yes"
    if passes is False or passes == "False":
        return "no"
    return "undecided"


def adversarial_md(table: pd.DataFrame | None, verdict: dict, pct: str) -> list[str]:
    """Can the judge be talked into a score? The adversarial controls beside the plain wrong answer."""
    from ..judge.adversarial import KINDS

    adv = (verdict or {}).get("adversarial")
    if not adv or table is None or not len(table):
        return []
    out = ["## Can the judge be talked into a score?", ""]
    tol = fmt(float(adv["tolerance"]), 2)
    if adv["passes"] is True:
        out.append(f"**The judge resists every adversarial answer** (defences: {adv['defences']}): none scores more than "
                   f"{tol} points (of 5) above the plain wrong answer on the same items, the whole interval within.")
    elif adv["passes"] is None:
        out.append(f"**UNDECIDED whether the judge can be talked into a score** (defences: {adv['defences']}): for "
                   f"{', '.join(adv.get('undecided') or [])} the interval of the lift over the plain wrong answer "
                   f"straddles {tol} points (of 5): too few control items to tell. Read every score below as if it "
                   "could be.")
    else:
        fooled = "; ".join(f"**{k}** ({', '.join(adv['by_metric'].get(k, []))})" for k in adv["fooled_by"])
        out.append(f"**The judge CAN BE TALKED INTO A SCORE** (defences: {adv['defences']}): {fooled} scored more than "
                   f"{tol} points (of 5) above the plain wrong answer they carry or replace, the whole interval over. "
                   "A model that learns such text is rewarded for it: every score below is suspect where a model's "
                   "answers are flagged.")
    for setting, s in (adv.get("with") or {}).items():
        what = ("resists every kind" if s["passes"] is True else "is still fooled by " + ", ".join(s["fooled_by"])
                if s["passes"] is False else "cannot be told apart yet (" + ", ".join(s.get("undecided") or []) + ")")
        out.append(f"- With defences `{setting}` (measured, not used for the scores above): the judge {what}.")
    out += ["", "Each kind, per covered test item and metric, against the negative control (another item's reference: "
            "fluent, on-topic, wrong): " + "; ".join(f"`{k}` {v}" for k, v in KINDS.items()) + ". "
            f"Difference = mean score of the kind less the wrong answer's (0-5); AUC = P(the kind scored higher) + "
            f"P(tie) / 2; {pct}% bootstrap CIs over the items' groups. FOOLED: the difference's lower bound exceeds the "
            f"tolerance ({tol}, `judge.controls.adversarial.tolerance`); undecided: its interval straddles it.", ""]
    settings = list(dict.fromkeys(table["defences"]))
    header = ["kind", "metric"] + [h for s in settings for h in (f"{s}: difference", f"{s}: AUC")]
    rows = []
    for (kind, metric), g in table.groupby(["kind", "metric"], sort=False):
        cells = [kind, metric]
        for s in settings:
            r = g[g.defences == s]
            if not len(r):
                cells += ["", ""]
                continue
            r = r.iloc[0]
            mark = (" FOOLED" if r["fooled"] is True or r["fooled"] == "True" else
                    " undecided" if r["fooled"] is None or pd.isna(r["fooled"]) or r["fooled"] == "" else "")
            cells += [f"{fmt(r['diff'], 2)} [{fmt(r['diff_lo'], 2)}, {fmt(r['diff_hi'], 2)}]{mark}",
                      f"{fmt(r['auc'], 2)} [{fmt(r['auc_lo'], 2)}, {fmt(r['auc_hi'], 2)}]"]
        rows.append(cells)
    out.append(md_table(header, rows))
    return out + [""]


def flags_md(flags: pd.DataFrame | None) -> list[str]:
    """Answers that address the judge, and degenerate answers, counted per model."""
    if flags is None or not len(flags):
        return []
    out = ["## Answers that address the judge, and degenerate answers", "",
           "Every answer is checked for text aimed at a grader (instructions about scores or the evaluation, a fake "
           "verdict in a judge's JSON shape, a claimed score, a system-prompt imitation, the judge's own headings) "
           "and for degenerate text (a line or a run of words repeated, the prompt template echoed, the instruction "
           "given back): `tunejudge.judge.flags`. Flagged answers are marked in the answer browser.", ""]
    out.append(md_table(["model", "answers", "flagged", "address the judge", "degenerate", "by check"],
                        [[r.model, r.answers, r.flagged, r.addresses_judge, r.degenerate, r.flags if isinstance(r.flags, str)
                          else ""] for r in flags.itertuples()]))
    judge = [r.model for r in flags.itertuples() if r.addresses_judge]
    if judge:
        out += ["", f"**WARNING**: answers of {', '.join(f'`{m}`' for m in judge)} address the judge: read their scores "
                "beside the adversarial controls above (a judge that can be talked into a score rewards such text)."]
    return out + [""]


def null_model_md(pairwise: pd.DataFrame | None, pct: str) -> list[str]:
    """The null model (one constant answer for every item) against each model, judged pairwise."""
    from ..judge.adversarial import NULL_MODEL

    if pairwise is None or not len(pairwise):
        return []
    rows = pairwise[pairwise["pair"].str.startswith(f"{NULL_MODEL} vs ")]
    if not len(rows):
        return []
    out = ["## The null model against each model (pairwise)", "",
           f"`{NULL_MODEL}` answers every item with the same structured text that addresses the grader "
           "(`tunejudge.judge.adversarial.NULL_PERSUASIVE`), judged against each model's answer in both orders. Its "
           f"preference is how often the judge preferred it (win + tie / 2), {pct}% CI. For comparison, Zheng et al. "
           f"(ICLR 2025) reached with one constant answer: {NULL_MODEL_FIGURES}.", ""]
    out.append(md_table(["against", "metric", "null model's preference", "win", "position inconsistency", "n"],
                        [[r.b, r.metric, f"{fmt(100 * r.preference, 1)}%", ci(r._asdict(), "win", pct=True),
                          f"{fmt(100 * r.inconsistency, 1)}%", r.n] for r in rows.itertuples()]))
    return out + [""]


def preferences_md(table: pd.DataFrame | None, sets: dict | None, judge_desc: dict, pct: str) -> list[str]:
    """Each preference set a model was tuned on -- size, sources, margins, where its preferences came from --
    and what preference tuning did on the set's own rewards; a warning where the judge that scores the
    models also made the preferences (a model trained on a judge's verdicts learns what that judge likes)."""
    if not sets:
        return []
    out = ["## Preference tuning", ""]
    for name, info in sets.items():
        sm, users = info["summary"], ", ".join(f"`{m}`" for m in info["models"])
        origin = sm.get("origin") or {}
        where = {"verifiable": f"`{origin.get('model')}`'s samples ranked by each source's judge-free metric",
                 "judge": f"`{origin.get('model')}`'s samples ranked by the judge ({origin.get('judge_mode', 'pointwise')})",
                 "file": f"the file `{origin.get('path')}`"}.get(origin.get("kind"), origin.get("kind"))
        margin = sm.get("margin") or {}
        out.append(f"- Set `{name}` (trains {users}): {sm['pairs']} pairs ({sm['train']} train, {sm['val']} val) from "
                   f"{where}; by source {', '.join(f'{k} {v}' for k, v in sm['by_source'].items()) or 'none'}; "
                   f"margin mean {fmt(margin.get('mean'), 3)} (min {fmt(margin.get('min'), 3)}, max "
                   f"{fmt(margin.get('max'), 3)}).")
        if sm.get("agreement_with_judge_free_metric") is not None:
            out.append(f"  - The judge's chosen answer scores at least the rejected one's on the judge-free metric in "
                       f"{fmt(100 * sm['agreement_with_judge_free_metric'], 1)}% of the pairs.")
        if origin.get("judge_failed_controls"):
            out.append(f"  - **The judge that made these preferences {origin['judge_failed_controls']}**; the set was "
                       "used anyway (`allow_failing_judge: true`).")
        if origin.get("kind") == "judge":
            out.append(f"  - **Reward hacking risk**: {users} learned from the judge that scores them here "
                       f"(`{judge_desc['backend']}/{judge_desc['model']}`): they learn what that judge likes, so their "
                       "judge scores are not independent evidence; read the judge-free metrics.")
    if table is not None and len(table):
        out += ["", f"What preference tuning did on its set's own rewards (the judge-free headline metric, pooled over "
                f"the set's sources, the model less the one it started from; {pct}% paired bootstrap CI):", ""]
        out.append(md_table(["model", "set", "vs", "sources", "difference", "n"],
                            [[r.model, r.set, r.vs, r.sources, ci(r._asdict(), "diff", 3), r.n]
                             for r in table.itertuples()]))
    return out + [""]


def judge_made_mark(sets: dict | None, model: str) -> str:
    """Beside a model tuned on the judge's own preferences, in the tables of that judge's scores."""
    for name, info in (sets or {}).items():
        if model in info["models"] and (info["summary"].get("origin") or {}).get("kind") == "judge":
            return f" (tuned on this judge's preferences, set {name})"
    return ""


def panel_md(means: pd.DataFrame, agreement: pd.DataFrame, conclusions: pd.DataFrame, validity: pd.DataFrame,
             pct: str, thresholds: dict) -> list[str]:
    """The judge panel: each judge's mean totals, their agreement (flagged where low), each judge's
    conclusion on every pair (flagged where they differ), each judge's controls."""
    out = ["## Judge panel", ""]
    low = agreement[agreement["low"].astype(bool)] if len(agreement) else agreement
    split = conclusions[conclusions["judges_disagree"].astype(bool)] if len(conclusions) else conclusions
    if len(low):
        out.append("**LOW AGREEMENT between judges** (" + "; ".join(
            f"{r.judge_a} and {r.judge_b}" for r in low.itertuples()) + f"): below Spearman "
            f"{thresholds['min_spearman']} or kappa {thresholds['min_kappa']}, or undefined. Which judge is used "
            "changes the scores; read every table with that in mind.")
        out.append("")
    if len(split):
        out.append("**THE JUDGES DISAGREE on a headline conclusion**: " + "; ".join(
            f"{pair}: " + ", ".join(f"{r.judge} says {r.conclusion}" for r in split[split.pair == pair].itertuples())
            for pair in split["pair"].unique()) + ".")
        out.append("")
    models = list(dict.fromkeys(means["model"]))
    out += [f"Mean total per judge ({pct}% CI), on the items every judge scored:", ""]
    rows = []
    for judge, part in means.groupby("judge", sort=False):
        by = {r.model: ci(r._asdict(), "total") for r in part.itertuples()}
        rows.append([judge, f"`{part['judge_model'].iloc[0]}`", *[by.get(m, "") for m in models], int(part["n"].max())])
    out += [md_table(["judge", "model", *models, "n"], rows), ""]
    out += [f"Agreement ({pct}% CI over items): Spearman of the per-item totals (every model's answers), Cohen's "
            "kappa of the win / tie / loss verdicts they imply for each pair:", ""]
    out.append(md_table(["judges", "spearman", "kappa", "items", "agreement"],
                        [[f"{r.judge_a} / {r.judge_b}", ci(r._asdict(), "spearman"), ci(r._asdict(), "kappa"), r.items,
                          "LOW" if r.low else "ok"] for r in agreement.itertuples()]))
    out += ["", f"Each judge's conclusion per pair (from the {pct}% CI of the mean gain):", ""]
    out.append(md_table(["pair", "judge", "gain", "conclusion", "judges"],
                        [[r.pair, r.judge, ci(r._asdict(), "gain"), r.conclusion,
                          "DISAGREE" if r.judges_disagree else "agree"] for r in conclusions.itertuples()]))
    if len(validity):
        out += ["", "Each judge's controls (pooled AUC of the positive control over the negative):", ""]
        out.append(md_table(["judge", "metric", "AUC", "items", "passes"],
                            [[r.judge, r.metric, ci(r._asdict(), "auc"), r.items,
                              _gate_word(r.passes)] for r in validity.itertuples()]))
    return out + [""]


def finetune_words(ft: dict) -> str:
    """How a model was fine-tuned, in the words of the bases' list (one description per model)."""
    lora = (f"LoRA rank {ft['r']}, alpha {ft['alpha']}, dropout {ft['dropout']}, target modules "
            f"{ft['target_modules']}") if "r" in ft else ""
    if ft["method"] == "dpo":
        how = f"{lora} (merged into the exported weights)" if ft.get("adapter") == "lora" else "every weight"
        return f"preference-tuned ({ft['loss']} loss, beta {ft['beta']}) on set {ft['preferences']}: {how}"
    if ft["method"] in ("lora", "qlora"):
        return f"{'QLoRA (a 4-bit base), ' if ft['method'] == 'qlora' else ''}{lora} (merged into the exported weights)"
    return "full fine-tuning"


def bases_md(bases: dict, judge_desc: dict) -> list[str]:
    """What each base is and how it was checked and tuned; a judge that shares a base's weights, named."""
    out = []
    for name, b in bases.items():
        check = b.get("perplexity")
        line = f"- Base `{name}`: {b['label']}; family {b['family']}, prompt {b['prompt']}"
        if check:
            line += f"; weights check: perplexity {fmt(check['perplexity'], 1)} on plain English (limit " \
                    f"{check['max_perplexity'] if check['max_perplexity'] is not None else 'none'})"
        out.append(line + ".")
        for model, ft in (b.get("finetune") or {}).items():
            if ft:
                out.append(f"  - `{model}`: {finetune_words(ft)}")
        if b.get("judge_shares_weights"):
            out.append(f"- **The judge and base `{name}` share weights** (`{judge_desc['model']}` judges answers of a "
                       "model fine-tuned from itself): self-preference is a known judge bias; read its verdicts on "
                       "these models beside the judge-free metrics below.")
    return out


def reference_md(reference: pd.DataFrame | None, pct: str) -> list[str]:
    """The judge-free metrics per source: each model's mean and each pair's difference, with CIs."""
    if reference is None or not len(reference):
        return []
    out = ["", f"## Judge-free metrics ({pct}% CI; no judge involved)", "",
           "Per source, its headline metric against the reference answer: label accuracy (SST-2, AG News), SQuAD "
           "token F1 (QA), ROUGE-L F1 (summaries, open instructions); differences are paired over the same items.", ""]
    means = reference[reference["vs"].fillna("") == ""]
    diffs = reference[reference["vs"].fillna("") != ""]
    models = list(dict.fromkeys(means["model"]))
    pairs = list(dict.fromkeys(zip(diffs["model"], diffs["vs"])))
    rows = []
    for (src, metric), part in reference.groupby(["source", "metric"], sort=True):
        m = {r.model: r for r in part.itertuples() if not (isinstance(r.vs, str) and r.vs)}
        d = {(r.model, r.vs): r for r in part.itertuples() if isinstance(r.vs, str) and r.vs}
        rows.append([src, metric.replace("_", " "), max((r.n for r in m.values()), default=0)]
                    + [ci(m[x]._asdict(), "mean") if x in m else "n/a" for x in models]
                    + [ci(d[p]._asdict(), "diff") if p in d else "n/a" for p in pairs])
    out.append(md_table(["source", "metric", "n", *[f"`{x}`" for x in models], *[f"`{a}` - `{b}`" for a, b in pairs]],
                        rows))
    return out + [""]


def reseeding_md(seeds: pd.DataFrame | None, replicates: pd.DataFrame | None, runs_of: dict, pct: str, plot: str | None,
                 min_seeds: int) -> list[str]:
    """Do the conclusions survive reseeding: each pair with replicates, its Multi-Bootstrap interval beside
    the items-only one, every seed's own result, and the flags."""
    out = ["## Do the conclusions survive reseeding?", ""]
    many = {m: runs for m, runs in runs_of.items() if len(runs) > 1}
    if not many:
        return out + ["Every model here is one training run (one seed): the intervals above cover the test items, "
                      "not how much another seed of the same recipe would differ. Ask for replicates "
                      "(`models.<name>.replicates: 5`, README \"Replicates and sweeps\") to measure it.", ""]
    out += ["Models trained with several seeds: " + ", ".join(f"`{m}` ({len(r)} seeds)" for m, r in many.items()) + ". "
            f"*Items only*: today's {pct}% interval, each model's first seed, test items resampled. *Multi-Bootstrap* "
            "(Sellam et al., ICLR 2022): seeds and items resampled together (items paired, each side's seeds drawn "
            "independently), so it covers what another seed would do. A conclusion that holds only in the items-only "
            "interval is one seed's, not the recipe's.", ""]
    if replicates is not None and len(replicates):
        rows = [[r.pair, r.measure, f"{r.seeds_a} / {r.seeds_b}", r.n, fmt(r.gain, 3),
                 f"[{fmt(r.items_lo, 3)}, {fmt(r.items_hi, 3)}]", f"[{fmt(r.mb_lo, 3)}, {fmt(r.mb_hi, 3)}]",
                 r.per_seed, "**seeds disagree**" if r.seeds_disagree else "no"] for r in replicates.itertuples()]
        out.append(md_table(["pair", "measure", "seeds a / b", "items", "gain (pooled)", "items only",
                             "Multi-Bootstrap", "per seed: gain [items-only CI] verdict", "flag"], rows))
        out.append("")
        for r in replicates.itertuples():
            if r.seeds_disagree:
                out.append(f"- **{r.pair} ({r.measure}): the seeds disagree** -- the gain's sign or its interval's verdict "
                           f"changes between seeds ({r.verdicts}). Report the pooled Multi-Bootstrap interval, not one seed's.")
        notes = dict.fromkeys(f"- {r.pair}: {r.note}." for r in replicates.itertuples() if isinstance(r.note, str) and r.note)
        out += list(notes)
        few = sorted({m for r in replicates.itertuples() if r.few_seeds for m in (r.a, r.b) if len(runs_of.get(m, [])) > 1})
        if few:
            out.append(f"- **Few seeds** ({', '.join(f'`{m}`: {len(runs_of[m])}' for m in few)}): with fewer than "
                       f"{min_seeds} seeds a side, any bootstrap over seeds is rough. In tunejudge's calibration "
                       "(tests/test_replicates.py: no true difference, 100 items) a nominal 95% Multi-Bootstrap interval "
                       "excludes zero in about 9-11% of runs at 3 seeds and 5-6% at 5; the items-only interval of one "
                       "seed, in about half.")
        out.append("")
    if seeds is not None and len(seeds):
        out += ["Per seed (items-only CI) and pooled (Multi-Bootstrap CI):", ""]
        out.append(md_table(["measure", "model", "run", "seed", "mean", "interval", "n"],
                            [[r.measure, r.model, r.run, "" if pd.isna(r.seed) else int(r.seed),
                              f"{fmt(r.mean, 3)} [{fmt(r.lo, 3)}, {fmt(r.hi, 3)}]", r.interval, r.n]
                             for r in seeds.itertuples() if len(runs_of.get(r.model, [])) > 1]))
        out.append("")
    if plot:
        out += [f"![seed spread]({plot})", ""]
    return out


def sweeps_md(sweeps: pd.DataFrame | None, plot: str | None) -> list[str]:
    """The sweeps: per point, the seeds' mean and range of the validation loss and the judge-free metric."""
    if sweeps is None or not len(sweeps):
        return []
    out = ["## Sweeps", "", "Each point trained once per seed, answered and scored by the judge-free metrics (the judge "
           "too where the sweep asks); mean over seeds, [min, max] across them.", ""]
    rows = []
    runs = sweeps.drop_duplicates("run")
    for (sweep, point), part in runs.groupby(["sweep", "point"], sort=False):
        cells = []
        for m in ("val_loss", "reference", "total"):
            v = part[m].dropna()
            cells.append(f"{fmt(v.mean(), 3)} [{fmt(v.min(), 3)}, {fmt(v.max(), 3)}]" if len(v) else "n/a")
        rows.append([sweep, f"`{point}`", len(part), *cells])
    out.append(md_table(["sweep", "point", "seeds", "final val loss", "judge-free metric", "judge total"], rows))
    out.append("")
    if plot:
        out += [f"![sweeps]({plot})", ""]
    return out


@dataclass
class ReportContext:
    """Everything the report shows, built by rule ``report`` from the analysis: what was run, the analysis
    tables by name (``results/tables/<name>.csv``), the qualitative cases, the plots' paths, the settings
    its words quote. :func:`build_report` renders it through ``templates/report.md.j2``."""

    judge_desc: dict
    labels: dict
    config_files: list[str]
    metrics: list[str]
    n_items: int
    tables: dict[str, pd.DataFrame]
    cases: list[dict]
    plots: dict[str, str]
    tie_tolerance: float
    level: float
    n_boot: int
    verdict: dict | None = None
    panel_thresholds: dict | None = None
    bases: dict | None = None
    runs_of: dict | None = None
    min_seeds: int = 5
    preference_sets: dict | None = None

    def table(self, name: str) -> pd.DataFrame | None:
        return self.tables.get(name)


def _block(lines: list[str]) -> str:
    """A section of lines as the template inserts it: every line ends with a newline."""
    return "".join(f"{line}\n" for line in lines)


def _cases_view(cases: list[dict]) -> list[dict]:
    return [{"pair": c["pair"], "direction": c["direction"], "gap": fmt(c["gap"], 2), "source": c["source"],
             "id": c["id"], "instruction": shorten(c["instruction"]), "input": shorten(c["input"]) if c["input"] else "",
             "expected": shorten(c["expected"]),
             "models": [{"name": model, "total": fmt(d["total"], 2), "answer": shorten(d["answer"]) or "(empty answer)",
                         "metrics": [{"metric": metric, "score": fmt(v["score_5"], 2),
                                      "reason": shorten(v["reason"] or "", 240)} for metric, v in d["metrics"].items()]}
                        for model, d in c["models"].items()]} for c in cases]


def _tables_view(ctx: ReportContext, pct: str, verdict: dict) -> dict:
    """The report's tables and computed sections, as the template inserts them."""
    t = ctx.table
    flags, sets, pairwise = t("flags"), ctx.preference_sets, t("pairwise")
    panel = {k: t(k) for k in ("panel_means", "panel_agreement", "panel_conclusions", "panel_validity")}
    excluded = t("excluded_items") if t("excluded_items") is not None else pd.DataFrame(columns=["id", "source", "why"])
    lc = t("length_controlled")
    return {
        "validity": _block(validity_md(t("judge_validity"), verdict, pct)),
        "adversarial": _block(adversarial_md(t("adversarial"), verdict, pct)), "flags": _block(flags_md(flags)),
        "bases": _block(bases_md(ctx.bases or {}, ctx.judge_desc)),
        "reference": _block(reference_md(t("reference"), pct)),
        "preferences": _block(preferences_md(t("preferences"), sets, ctx.judge_desc, pct)),
        "means": means_md(t("means"), ctx.metrics, flags=flags, sets=sets), "pairs": pairs_md(t("pairs")),
        "reseeding": _block(reseeding_md(t("seeds"), t("replicates"), ctx.runs_of or {}, pct, ctx.plots.get("seeds"),
                                         ctx.min_seeds)),
        "null_model": _block(null_model_md(pairwise, pct)),
        "pairwise": md_table(["pair", "metric", "win", "tie", "loss", "position inconsistency", "preference",
                              "length-controlled", "n"],
                             [[r.pair, r.metric, ci(r._asdict(), "win", pct=True), f"{fmt(100 * r.tie, 1)}%",
                               f"{fmt(100 * r.loss, 1)}%", f"{fmt(100 * r.inconsistency, 1)}%",
                               f"{fmt(100 * r.preference, 1)}%", f"{fmt(100 * r.lc_preference, 1)}%", r.n]
                              for r in pairwise.itertuples()]) if pairwise is not None and len(pairwise) else "",
        "panel": _block(panel_md(panel["panel_means"], panel["panel_agreement"], panel["panel_conclusions"],
                                 panel["panel_validity"], pct, ctx.panel_thresholds))
        if panel["panel_means"] is not None and len(panel["panel_means"]) else "",
        "means_src": means_md(t("means_by_source"), ctx.metrics, first="source"),
        "pairs_src": pairs_md(t("pairs_by_source"), first="source") if len(t("pairs_by_source")) else "",
        "agreement": md_table(["source", "judge metric", "reference metric", "spearman", "n"],
                              [[r.source, r.metric, r.reference_metric, fmt(r.spearman), r.n]
                               for r in t("judge_agreement").itertuples()]),
        "length_corr": md_table(["model", "metric", "spearman with length", "n"],
                                [[r.model, r.metric, fmt(r.spearman_with_length), r.n]
                                 for r in t("length_bias").itertuples()]),
        "length_matched": md_table(["pair", "matched items", "win", "tie", "loss"],
                                   [[r.pair, r.matched_items, fmt(r.win), fmt(r.tie), fmt(r.loss)]
                                    for r in t("length_matched").itertuples()]),
        "length_controlled": md_table(["pair", "raw preference", "length-controlled", "mean length difference (words)",
                                       "n"], [[r.pair, ci(r._asdict(), "raw", pct=True), ci(r._asdict(), "lc", pct=True),
                                               fmt(r.mean_length_diff, 1), r.n] for r in lc.itertuples()])
        if lc is not None and len(lc) else "",
        "cost": _cost_table(t("judge_cost")),
        "comparisons": _comparisons_md(t("comparisons")),
        "family": len(t("comparisons")) if t("comparisons") is not None else 0,
        "sweeps": _block(sweeps_md(t("sweeps"), ctx.plots.get("sweeps"))),
        "n_excluded": len(excluded),
        "excluded": md_table(["item", "source", "why"], [[f"`{r.id}`", r.source, shorten(r.why, 240)]
                                                         for r in excluded.head(30).itertuples()]),
    }


def _comparisons_md(table: pd.DataFrame | None) -> str:
    if table is None or not len(table):
        return ""

    def est(r):
        return f"{fmt(r.estimate, 2)} [{fmt(r.lo, 2)}, {fmt(r.hi, 2)}]"

    return md_table(["scope", "measure", "comparison", "estimate", "n (groups)", "p", "Holm p", "BH q", "MDE",
                     "items for the target", "reading"],
                    [[r.scope, r.measure, r.comparison, est(r), f"{r.n} ({r.groups})", f"{fmt(r.p, 4)} ({r.test})",
                      fmt(r.p_holm, 4), fmt(r.q_bh, 4), fmt(r.mde, 2),
                      "n/a" if pd.isna(r.items_needed) else f"{int(r.items_needed)} ({fmt(r.target, 2)})", r.reading]
                     for r in table.itertuples()])


def _cost_table(cost: pd.DataFrame | None) -> str:
    if cost is None or not len(cost):
        return ""
    return md_table(
        ["job", "judge", "verdicts", "weighted", "mass dropped", "requests", "429s", "tokens in / out", "wall s",
         "cost USD", "all verdicts: tokens in / out", "all verdicts: cost USD"],
        [[r.job, r.judge, r.verdicts, r.logprob_weighted, r.out_of_range_mass, r.requests,
          r.http_429, f"{r.prompt_tokens} / {r.completion_tokens}",
          fmt(r.seconds, 1), fmt(r.cost_usd, 4), f"{r.all_verdicts_prompt_tokens} / {r.all_verdicts_completion_tokens}",
          fmt(r.all_verdicts_cost_usd, 4)] for r in cost.itertuples()])


@functools.cache
def _template():
    import jinja2

    env = jinja2.Environment(loader=jinja2.PackageLoader("tunejudge.analysis", "templates"), autoescape=False,
                             trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
                             undefined=jinja2.StrictUndefined)
    return env.get_template("report.md.j2")


def _n_groups(ctx: ReportContext) -> int:
    """The resampling units under the headline tables (the means table's largest ``groups``)."""
    means = ctx.table("means")
    if means is None or "groups" not in means or not len(means):
        return ctx.n_items
    return int(means["groups"].max())


def build_report(ctx: ReportContext) -> str:
    """results/report.md from one :class:`ReportContext`: the words are the template's
    (``templates/report.md.j2``), the numbers and tables this module's."""
    pct = percent(ctx.level)
    verdict = ctx.verdict or {"enabled": False, "passes": None}
    pairs = ctx.table("pairs")
    empty = ctx.table("empty_answers")
    closing = [{"a": r["a"], "b": r["b"], "ratio": ci(r, "ratio"),
                "study": f" (the study: {STUDY_TOTALS[r['a']] / STUDY_TOTALS[r['b']]:.2f})"
                if r["a"] in STUDY_TOTALS and r["b"] in STUDY_TOTALS else ""} for _, r in pairs.iterrows()]
    text = _template().render(
        judge_desc=ctx.judge_desc, labels=ctx.labels, metrics=ctx.metrics, n_items=ctx.n_items, pct=pct,
        n_boot=ctx.n_boot, tie_tolerance=ctx.tie_tolerance, plots=ctx.plots, mark=headline_mark(verdict),
        config_files=", ".join(f"`{c}`" for c in ctx.config_files),
        random_init=any("random init" in v for v in ctx.labels.values()),
        empty=", ".join(f"`{r.model}` {r.empty_answers} of {r.answers}" for r in empty.itertuples())
        if empty is not None and len(empty) else "",
        closing=closing, cases=_cases_view(ctx.cases), n_groups=_n_groups(ctx), **_tables_view(ctx, pct, verdict))
    return text[:-1] if text.endswith("\n") else text
