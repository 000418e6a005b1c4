"""Rule preferences: a preference set in TRL's format from ranked samples or a file, never a test item."""

import logging
import math

from tunejudge.analysis.reference import score_answer
from tunejudge.analysis.stats import (
    Settings,
    adversarial_validity,
    combine,
    judge_frame,
    judge_validity,
)
from tunejudge.analysis.tables import adversarial_frame
from tunejudge.data import preferences as P
from tunejudge.data.records import validate_records
from tunejudge.io import read_json, read_jsonl, run_step, write_json, write_jsonl
from tunejudge.judge.scores import read_judge_rows

log = logging.getLogger("tunejudge.preferences")


def judge_verdict(paths, p) -> dict:
    """Whether the judge that ranked the samples passes its controls (AUC and adversarial), from its rows."""
    controls = [r for f in paths if f.endswith("controls.jsonl") for r in read_judge_rows(f)]
    if not controls:
        return {"enabled": False, "passes": None}
    s = Settings(pairs=[], seed=p.seed)
    _, verdict = judge_validity(judge_frame(controls), p.metrics, s, p.min_auc)
    adversarial = [r for f in paths if f.endswith("adversarial.jsonl") for r in read_judge_rows(f)]
    if adversarial:
        _, adv = adversarial_validity(adversarial_frame(adversarial), p.metrics, s, p.adversarial_tolerance, p.defences)
        verdict = {**verdict, "adversarial": adv, "passes": combine(verdict["passes"], adv["passes"])}
    return verdict


def main(snakemake):
    p, inp, out = snakemake.params, snakemake.input, snakemake.output
    spec, name = p.spec, snakemake.wildcards.set
    where = f"preferences.{name}"

    def verifiable(rec, answer):
        kind = p.kinds.get(rec["source"], "open")
        scores = score_answer(kind, answer, rec["output"])
        return scores[scores["headline"]]

    samples = read_json(inp.samples) if "samples" in inp.keys() else None
    judge_scores, pairwise, verdict = {}, {}, None
    if spec["from"] == "judge":
        verdict = judge_verdict(list(inp.controls), p)
        rows = read_jsonl(inp.judged)
        if spec.get("judge_mode", "pointwise") == "pairwise":
            by_item = {}
            for r in rows:
                by_item.setdefault(r["id"], []).append(r)
            for rid, rs in by_item.items():
                flipped = any(r.get("consistent") is False for r in rs)
                wins = sum((r.get("verdict") == "a") - (r.get("verdict") == "b") for r in rs)
                pairwise[rid] = ("a" if wins > 0 else "b" if wins < 0 else "tie", not flipped)
        else:
            for r in rows:
                key = (r["id"], int(r["model"].removeprefix("sample")))
                judge_scores[key] = judge_scores.get(key, 0.0) + (r["score_5"] if r["score_5"] is not None else math.nan)
    pairs, counts = P.build(spec, samples=samples, file_rows=read_jsonl(inp.file) if "file" in inp.keys() else None,
                            where=where, score_verifiable=verifiable, judge_scores=judge_scores,
                            pairwise_verdicts=pairwise, judge_verdict=verdict)
    test = validate_records(read_json(inp.test), inp.test)
    P.check_no_test_prompt(pairs, test, p.threshold, where)
    summary = P.summary(pairs, counts, pairs[0]["origin"] if pairs else {"kind": spec["from"]})
    if spec["from"] == "judge":  # how often the judge's choice is also the judge-free metric's
        agree = [verifiable(r, r["chosen"]) >= verifiable(r, r["rejected"]) for r in pairs]
        summary["agreement_with_judge_free_metric"] = round(sum(agree) / len(agree), 4) if agree else None
    write_jsonl(out[0], pairs)
    write_json(out.summary, summary)
    log.info("%s: %d pairs (%d train, %d val) from %s; %s", where, summary["pairs"], summary["train"], summary["val"],
             spec["from"], counts)
    if not pairs:
        log.warning("%s: no pair kept: a model trained on it would learn nothing", where)


run_step(lambda: main(snakemake), snakemake.log[0])  # noqa: F821
