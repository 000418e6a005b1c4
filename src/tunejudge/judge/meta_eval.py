"""Meta-evaluation: the judge measured against human experts, beside the published figures.

Two public sets, read through the same ``load_corpus`` path as every corpus (a Hub id fetched by rule
``download_corpus``, or a local file in the same format):

- **SummEval** (Fabbri et al. 2021; ``mteb/summeval``, split ``test``): 100 CNN/DailyMail articles, 16
  system summaries each, and per summary the mean of three expert ratings on coherence, consistency,
  fluency and relevance (row fields ``id``, ``text``, ``machine_summaries``, ``human_summaries`` and one
  list per dimension, aligned with ``machine_summaries``). Each summary is scored by the judge with the
  four G-Eval criteria as GEval metrics (:data:`GEVAL_CRITERIA`, after Liu et al. 2023's prompts), and
  correlated with the experts *at the summary level*, as G-Eval's Table 1: per article, the rank
  correlation (Spearman, Kendall's tau-b) of the judge's scores with the experts' over its summaries,
  then the mean over articles; the bootstrap resamples articles. The trivial baseline is the summary's
  length in words.
- **MT-Bench human judgments** (Zheng et al. 2023; ``lmsys/mt_bench_human_judgments``, split ``human``,
  CC-BY-4.0): expert votes (``winner``: ``model_a`` | ``model_b`` | ``tie`` | ``tie (bothbad)``) on two
  models' answers to an MT-Bench question (``conversation_a``/``_b``: lists of ``{role, content}``;
  ``turn``). First-turn pairs are judged pairwise (the project's pairwise judge, both orders; a verdict
  that flips with the order is a tie) and compared with every expert vote on that pair: agreement with
  ties counted (setup S1 of Table 5) and without (S2: votes where neither side said tie); the bootstrap
  resamples questions. The trivial baseline: the longer answer wins.

Pure functions; the rules' scripts do the I/O and the asking.
"""

from __future__ import annotations

import math
import random

import numpy as np
import pandas as pd

from ..errors import DataError

DIMENSIONS = ("coherence", "consistency", "fluency", "relevance")
SUMMARY_INSTRUCTION = "Summarize the following news article."

# The four G-Eval criteria (Liu et al., EMNLP 2023, appendix prompts), in this project's words, as GEval
# metrics over the article (input) and the summary (actual_output).
GEVAL_CRITERIA = [
    {"name": "Coherence", "params": ["input", "actual_output"], "evaluation_steps": [
        "Read the news article and identify its main topic and key points.",
        "Read the summary: does it cover the main topic and key points, in a clear and logical order?",
        "Coherence is the collective quality of all sentences: the summary should be well structured and well "
        "organised, building from sentence to sentence a coherent body of information, not a heap of related facts.",
        "Score low for a disorganised or disconnected summary, high for a well-organised one."]},
    {"name": "Consistency", "params": ["input", "actual_output"], "evaluation_steps": [
        "Read the news article carefully and note the main facts and details it presents.",
        "Read the summary and compare it with the article: check whether it contains factual errors not supported "
        "by the article.",
        "Consistency is factual alignment: a consistent summary states only facts entailed by the article; "
        "penalise hallucinated facts.",
        "Score low if the summary states facts the article contradicts or does not support."]},
    {"name": "Fluency", "params": ["actual_output"], "evaluation_steps": [
        "Read the summary and judge its quality as written text: grammar, spelling, punctuation, word choice "
        "and sentence structure.",
        "Score low if errors make the summary hard to understand, middle if some errors hurt its clarity or "
        "smoothness, high if it has few or no errors and reads easily."]},
    {"name": "Relevance", "params": ["input", "actual_output"], "evaluation_steps": [
        "Read the summary and the news article carefully; identify the main points of the article.",
        "Assess how well the summary covers the main points of the article, and how much irrelevant or "
        "redundant information it contains.",
        "Relevance is the selection of important content: the summary should include only the important "
        "information of the article; penalise redundancies and excess information."]},
]
CRITERION_OF = {c["name"]: c["name"].lower() for c in GEVAL_CRITERIA}  # metric name -> SummEval dimension

MT_BENCH_METRIC = {"name": "Overall", "params": ["input", "actual_output"], "evaluation_steps": [
    "Decide which answer follows the user's instructions and answers the user's question better.",
    "Consider helpfulness, relevance, accuracy, depth, creativity and the level of detail of each answer.",
    "Do not let the order of the answers, their length or the assistants' names decide; be as objective as possible."]}

# The published figures (cited in the report and the README). G-Eval, Liu et al., EMNLP 2023, Table 1:
# summary-level correlations with SummEval's expert ratings; MT-Bench, Zheng et al., NeurIPS 2023,
# Table 5: first-turn agreement with expert votes, S1 with ties counted, S2 without.
PUBLISHED_SUMMEVAL = [
    {"who": "G-Eval, GPT-4 (Liu et al. 2023, Table 1)", "statistic": "spearman",
     "coherence": 0.582, "relevance": 0.547, "average": 0.514},
    {"who": "G-Eval, GPT-4 (Liu et al. 2023, Table 1)", "statistic": "kendall", "average": 0.418},
    {"who": "G-Eval, GPT-3.5 (Liu et al. 2023, Table 1)", "statistic": "spearman", "average": 0.401},
]
PUBLISHED_MT_BENCH = [
    {"who": "GPT-4 pairwise vs expert humans (Zheng et al. 2023, Table 5)", "with_ties": 0.66, "without_ties": 0.85},
    {"who": "expert human vs expert human (Zheng et al. 2023, Table 5)", "with_ties": 0.63, "without_ties": 0.81},
]


# ---------------------------------------------------------------- items
def summeval_items(rows, articles: int | None, per_article: int | None, seed: int, path: str) -> list[dict]:
    """The summaries to judge, as judge items (instruction, input = the article, output = a reference
    summary, response = the system summary) with the experts' mean ratings: ``articles`` articles
    (seeded sample; None = all) x ``per_article`` summaries (the first ones; None = all)."""
    rows = list(rows)
    for i, r in enumerate(rows):
        for f in ("id", "text", "machine_summaries", *DIMENSIONS):
            if f not in r or r[f] is None:
                raise DataError(path, i, f, "missing (SummEval's format: id, text, machine_summaries, and one list of "
                                            "expert means per dimension)")
        n = len(r["machine_summaries"])
        for d in DIMENSIONS:
            if len(r[d]) != n:
                raise DataError(path, i, d, f"has {len(r[d])} ratings for {n} machine_summaries")
    order = sorted(range(len(rows)), key=lambda i: str(rows[i]["id"]))
    if articles is not None and articles < len(order):
        order = sorted(random.Random(seed).sample(order, articles), key=lambda i: str(rows[i]["id"]))
    items = []
    for i in order:
        r = rows[i]
        refs = r.get("human_summaries") or [""]
        for k, summary in enumerate(r["machine_summaries"][:per_article]):
            items.append({"id": f"{r['id']}/{k}", "article": str(r["id"]), "source": "summeval",
                          "instruction": SUMMARY_INSTRUCTION, "input": r["text"], "output": refs[0] or "",
                          "response": summary, "human": {d: float(r[d][k]) for d in DIMENSIONS}})
    return items


def _first_turn(conversation, path, i, field) -> tuple[str, str]:
    """(the user's first question, the assistant's first answer) of an MT-Bench conversation."""
    turns = [m for m in conversation or [] if isinstance(m, dict)]
    user = next((m["content"] for m in turns if m.get("role") == "user"), None)
    answer = next((m["content"] for m in turns if m.get("role") == "assistant"), None)
    if not isinstance(user, str) or not isinstance(answer, str):
        raise DataError(path, i, field, "needs a user turn and an assistant turn ({role, content} messages)")
    return user, answer


WINNERS = {"model_a": "a", "model_b": "b", "tie": "tie", "tie (bothbad)": "tie"}


def mt_bench_pairs(rows, pairs: int | None, seed: int, path: str) -> tuple[list[dict], list[dict]]:
    """(the first-turn pairs to judge, as pairwise rows with ``model A``/``model B`` answers; every expert
    vote on them: {id, question, judge, human}). A pair is (question, two models in sorted order): votes
    given with the models the other way round are flipped onto it. ``pairs``: a seeded sample (None = all)."""
    pairs_by_id, votes = {}, []
    for i, r in enumerate(rows):
        for f in ("question_id", "model_a", "model_b", "winner", "judge", "conversation_a", "conversation_b", "turn"):
            if f not in r or r[f] is None:
                raise DataError(path, i, f, "missing (MT-Bench human judgments' format)")
        if int(r["turn"]) != 1:
            continue
        if r["winner"] not in WINNERS:
            raise DataError(path, i, "winner", f"{r['winner']!r}: one of {sorted(WINNERS)}")
        q_a, ans_a = _first_turn(r["conversation_a"], path, i, "conversation_a")
        _, ans_b = _first_turn(r["conversation_b"], path, i, "conversation_b")
        human = WINNERS[r["winner"]]
        a, b = r["model_a"], r["model_b"]
        if b < a:  # one orientation per pair
            a, b, ans_a, ans_b = b, a, ans_b, ans_a
            human = {"a": "b", "b": "a", "tie": "tie"}[human]
        pid = f"{r['question_id']}/{a}/{b}"
        pairs_by_id.setdefault(pid, {"id": pid, "source": "mt_bench", "question": int(r["question_id"]),
                                     "instruction": q_a, "input": "", "output": "", "model_a": a, "model_b": b,
                                     "model A": ans_a, "model B": ans_b})
        votes.append({"id": pid, "question": int(r["question_id"]), "judge": str(r["judge"]), "human": human})
    ids = sorted(pairs_by_id)
    if pairs is not None and pairs < len(ids):
        ids = sorted(random.Random(seed).sample(ids, pairs))
    keep = set(ids)
    return [pairs_by_id[p] for p in ids], [v for v in votes if v["id"] in keep]


# ---------------------------------------------------------------- statistics
def _per_article(frame: pd.DataFrame, x: str, y: str, method: str) -> pd.Series:
    """Per article, the rank correlation of x and y over its summaries (NaN where either is constant)."""
    def corr(part):
        if len(part) < 2 or part[x].nunique() < 2 or part[y].nunique() < 2:
            return math.nan
        return float(part[x].corr(part[y], method=method))

    return frame.groupby("article", sort=True)[[x, y]].apply(corr)


def summary_level(frame: pd.DataFrame, scorer: str, n_boot: int, seed: int, level: float) -> pd.DataFrame:
    """Per SummEval dimension and statistic: the mean over articles of the per-article rank correlation
    between ``scorer``'s column ``<scorer>:<dimension>`` (or plain ``<scorer>`` for a baseline that scores
    every dimension the same) and the experts' ``human:<dimension>``, with a bootstrap CI over articles."""
    out = []
    rng = np.random.default_rng(seed)
    for method in ("spearman", "kendall"):
        per_dim = {}
        for d in DIMENSIONS:
            col = f"{scorer}:{d}" if f"{scorer}:{d}" in frame else scorer
            if col not in frame:
                continue
            per_dim[d] = _per_article(frame.dropna(subset=[col]), col, f"human:{d}", method)
        if not per_dim:
            continue
        table = pd.DataFrame(per_dim)  # article x dimension
        idx = rng.integers(0, len(table), size=(n_boot, len(table)))
        values = table.to_numpy(dtype=float)
        for j, d in enumerate([*table.columns, "average"]):
            v = values[:, j] if d != "average" else np.nanmean(values, axis=1)
            point = float(np.nanmean(v)) if np.isfinite(v).any() else math.nan
            boots = np.array([np.nanmean(v[i]) if np.isfinite(v[i]).any() else np.nan for i in idx])
            boots = boots[np.isfinite(boots)]
            lo, hi = (np.percentile(boots, [(1 - level) / 2 * 100, (1 + level) / 2 * 100]) if len(boots)
                      else (math.nan, math.nan))
            out.append({"scorer": scorer, "statistic": method, "dimension": d, "value": point, "lo": float(lo),
                        "hi": float(hi), "articles": int(np.isfinite(v).sum())})
    return pd.DataFrame(out, columns=["scorer", "statistic", "dimension", "value", "lo", "hi", "articles"])


def agreement(votes: pd.DataFrame, scorer: str, n_boot: int, seed: int, level: float) -> pd.DataFrame:
    """Agreement of ``scorer``'s verdict (column ``scorer``: a | b | tie) with every expert vote (``human``):
    with ties counted (S1) and without (S2: votes where neither said tie); bootstrap CI over questions."""
    out = []
    rng = np.random.default_rng(seed)
    for setup, part in (("with_ties", votes), ("without_ties", votes[(votes.human != "tie") & (votes[scorer] != "tie")])):
        part = part.dropna(subset=[scorer])
        hit = (part[scorer] == part["human"]).astype(float)
        by_q = pd.DataFrame({"q": part["question"].to_numpy(), "hit": hit.to_numpy()}).groupby("q")["hit"].agg(["sum", "count"])
        point = float(hit.mean()) if len(hit) else math.nan
        if len(by_q):
            idx = rng.integers(0, len(by_q), size=(n_boot, len(by_q)))
            s, c = by_q["sum"].to_numpy()[idx].sum(axis=1), by_q["count"].to_numpy()[idx].sum(axis=1)
            lo, hi = np.percentile(s / c, [(1 - level) / 2 * 100, (1 + level) / 2 * 100])
        else:
            lo = hi = math.nan
        out.append({"scorer": scorer, "setup": setup, "agreement": point, "lo": float(lo), "hi": float(hi),
                    "votes": len(part), "questions": len(by_q)})
    return pd.DataFrame(out, columns=["scorer", "setup", "agreement", "lo", "hi", "votes", "questions"])


def length_winner(row: dict) -> str:
    """The trivial MT-Bench baseline: the longer answer (in words) wins; equal lengths tie."""
    la, lb = len(row["model A"].split()), len(row["model B"].split())
    return "a" if la > lb else "b" if lb > la else "tie"


def summeval_frame(items: list[dict], rows_by_judge: dict[str, list[dict]]) -> pd.DataFrame:
    """One row per summary: article, the experts' mean per dimension (``human:<d>``), the length baseline
    (``length``) and each judge's 0-5 score per G-Eval criterion (``<judge>:<dimension>``; NaN for an error)."""
    frame = pd.DataFrame([{"id": it["id"], "article": it["article"], "length": len(it["response"].split()),
                           **{f"human:{d}": v for d, v in it["human"].items()}} for it in items]).set_index("id")
    for judge, rows in rows_by_judge.items():
        for r in rows:
            dim = CRITERION_OF.get(r["metric"])
            if dim is not None and r["id"] in frame.index:
                frame.loc[r["id"], f"{judge}:{dim}"] = r.get("score_5") if r.get("score_5") is not None else math.nan
    return frame.reset_index()


def mt_bench_frame(pairs: list[dict], votes: list[dict], rows_by_judge: dict[str, list[dict]]) -> pd.DataFrame:
    """One row per expert vote: question, the human's verdict, the length baseline's and each judge's."""
    frame = pd.DataFrame(votes, columns=["id", "question", "judge", "human"]).rename(columns={"judge": "voter"})
    frame["length"] = frame["id"].map({p["id"]: length_winner(p) for p in pairs})
    for judge, rows in rows_by_judge.items():
        frame[judge] = frame["id"].map({r["id"]: r.get("verdict") for r in rows})
    return frame


def summeval_metrics(spec: dict, judge_metrics: list[dict]) -> list[dict]:
    """The metrics SummEval's summaries are judged on: the four G-Eval criteria, and the project's own judge
    metrics beside them where ``meta_eval.summeval.judge_metrics`` asks."""
    return GEVAL_CRITERIA + (list(judge_metrics) if spec.get("judge_metrics") else [])


def verdicts(corr: pd.DataFrame, agree: pd.DataFrame, scorer: str) -> dict:
    """Whether a judge tracks the experts better than chance: its average summary-level Spearman's interval
    above 0 on SummEval, its agreement without ties above 50% (a coin) on MT-Bench."""
    s = corr[(corr.scorer == scorer) & (corr.statistic == "spearman") & (corr.dimension == "average")]
    a = agree[(agree.scorer == scorer) & (agree.setup == "without_ties")]
    return {"summeval": bool(len(s)) and float(s["lo"].iloc[0]) > 0,
            "mt_bench": bool(len(a)) and float(a["lo"].iloc[0]) > 0.5}


def _ci(v, lo, hi, pct: bool = False) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if pct:
        return f"{100 * v:.1f}% [{100 * lo:.1f}, {100 * hi:.1f}]"
    return f"{v:.3f} [{lo:.3f}, {hi:.3f}]"


def report_md(corr: pd.DataFrame, agree: pd.DataFrame, judges: dict[str, dict], level: float, *, summaries: int,
              pairs: int, votes: int) -> str:
    """The report section "Judge versus human experts": per judge (and the trivial baselines), SummEval's
    summary-level Spearman and Kendall per dimension and MT-Bench agreement with and without ties, each with
    its CI, beside the published figures; then whether each judge tracks the experts better than chance."""
    pct = f"{round(100 * level)}"
    from ..io import md_table  # escapes | in cells

    out = ["## Judge versus human experts", "",
           f"The judge on {summaries} SummEval summaries (G-Eval's four criteria as GEval metrics; the experts' mean "
           f"rating per summary) and {pairs} MT-Bench first-turn pairs (pairwise, both orders; {votes} expert votes). "
           f"Intervals: {pct}% bootstrap over articles (SummEval) and questions (MT-Bench). *length*: the trivial "
           "baseline (a longer summary scores higher; the longer answer wins).", "",
           "### SummEval: summary-level correlation with the experts", ""]
    rows = []
    for who in [*judges, "length"]:
        for stat in ("spearman", "kendall"):
            part = corr[(corr.scorer == who) & (corr.statistic == stat)].set_index("dimension")
            if not len(part):
                continue
            name = f"`{who}` ({judges[who]['backend']}/{judges[who]['model']})" if who in judges else "length (baseline)"
            rows.append([name, stat] + [_ci(*part.loc[d, ["value", "lo", "hi"]]) if d in part.index else "n/a"
                                        for d in (*DIMENSIONS, "average")])
    for pub in PUBLISHED_SUMMEVAL:
        rows.append([f"*published*: {pub['who']}", pub["statistic"]]
                    + [f"{pub[d]:.3f}" if d in pub else "--" for d in (*DIMENSIONS, "average")])
    out.append(md_table(["scorer", "statistic", *DIMENSIONS, "average"], rows))
    out += ["", "### MT-Bench: agreement with expert votes (first turn)", ""]
    rows = []
    for who in [*judges, "length"]:
        part = agree[agree.scorer == who].set_index("setup")
        name = f"`{who}`" if who in judges else "longer answer wins (baseline)"
        rows.append([name] + [_ci(*part.loc[s, ["agreement", "lo", "hi"]], pct=True) + f" ({int(part.loc[s, 'votes'])} votes)"
                              if s in part.index else "n/a" for s in ("with_ties", "without_ties")])
    for pub in PUBLISHED_MT_BENCH:
        rows.append([f"*published*: {pub['who']}", f"{100 * pub['with_ties']:.0f}%", f"{100 * pub['without_ties']:.0f}%"])
    out.append(md_table(["scorer", "agreement, ties counted (S1)", "agreement without ties (S2)"], rows))
    out += ["", "### Verdict", ""]
    for who in judges:
        v = verdicts(corr, agree, who)
        if all(v.values()):
            out.append(f"- `{who}` tracks the experts better than chance on both sets (SummEval Spearman's interval "
                       "above 0, MT-Bench agreement without ties above 50%); set its figures beside the published "
                       "ones above before trusting it as GPT-4 was trusted.")
        else:
            bad = [k for k, ok in v.items() if not ok]
            out.append(f"- **`{who}` does not track the experts better than chance on {' and '.join(bad)}**: its "
                       "scores there are no better than a coin; do not use it as the study's judge.")
    out += ["", "Published figures: G-Eval, Liu et al., EMNLP 2023, Table 1 (summary-level, SummEval); MT-Bench, "
            "Zheng et al., NeurIPS 2023, Table 5 (first turn; S1 counts ties, S2 leaves them out). '--': not quoted here."]
    return "\n".join(out)
