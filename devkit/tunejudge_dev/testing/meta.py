"""Meta-evaluation sets this project makes, in SummEval's and MT-Bench human judgments' public formats, and
scripted judges that score them by the human label (plus noise) or at random.

No third-party rows: the articles and instructions are the shipped samples' (``data/samples``), the
summaries and answers are made from them by rule (the article's highlights; its lead; a sentence of
another article; the highlights' words shuffled; ...), and each variant's "expert" rating is set by
construction (with a little seeded jitter). They prove the machinery -- a judge that reads the texts as
intended correlates with these ratings, a random one does not -- never a judge's quality: only the real
sets (``config/paper.yaml``: ``mteb/summeval``, ``lmsys/mt_bench_human_judgments``) measure that.
"""

from __future__ import annotations

import hashlib
import json
import random
import re

from .openai_server import Reply, _section, prompt_of, response_schema

# summary variant -> (how it is made, its rating per dimension: coherence, consistency, fluency, relevance)
_VARIANTS = {
    "highlights": (4.7, 4.9, 4.8, 4.6),
    "lead": (4.0, 4.8, 4.6, 3.8),
    "foreign": (2.6, 1.6, 4.2, 2.2),
    "shuffled": (1.3, 2.9, 1.2, 2.7),
    "repeated": (2.0, 4.6, 3.1, 2.0),
    "tail": (3.1, 4.7, 4.5, 1.9),
}


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in re.split(r"(?<=[.!?])\s+", text) if len(s.split()) > 3]


def summeval_rows(articles: list[dict], seed: int = 0) -> list[dict]:
    """SummEval-format rows (id, text, machine_summaries, human_summaries, and the experts' mean rating per
    dimension, aligned with machine_summaries) from CNN/DailyMail-schema rows (id, article, highlights)."""
    rng = random.Random(seed)
    out = []
    for i, a in enumerate(articles):
        sents = _sentences(a["article"]) or [a["article"]]
        other = _sentences(articles[(i + 1) % len(articles)]["article"]) or sents
        hl = " ".join(a["highlights"].split())
        words = hl.split()
        rng.shuffle(words)
        made = {"highlights": hl, "lead": " ".join(sents[:2]), "foreign": f"{sents[0]} {other[-1]}",
                "shuffled": " ".join(words), "repeated": " ".join([sents[0]] * 3), "tail": sents[-1]}
        ratings = {d: [] for d in ("coherence", "consistency", "fluency", "relevance")}
        for c, k, f, r in _VARIANTS.values():
            for d, v in zip(ratings, (c, k, f, r)):
                ratings[d].append(round(min(5.0, max(1.0, v + rng.uniform(-0.3, 0.3))), 4))
        out.append({"id": f"dm-test-{hashlib.sha1(a['id'].encode()).hexdigest()[:12]}", "text": a["article"],
                    "machine_summaries": [made[n] for n in _VARIANTS], "human_summaries": [hl], **ratings})
    return out


def mt_bench_rows(records: list[dict], seed: int = 0, voters: int = 2) -> list[dict]:
    """MT-Bench human-judgment rows (question_id, model_a, model_b, winner, judge, conversation_a/_b,
    turn) from instruction records: three assistants -- ``helpful`` (the reference answer), ``terse`` (its
    first words), ``offtopic`` (another record's answer) -- compared in every pair, first and second
    turn, by ``voters`` experts who mostly prefer the better one (a few ties and dissents)."""
    rng = random.Random(seed)
    quality = {"helpful": 3, "terse": 2, "offtopic": 1}
    out = []
    for q, rec in enumerate(records):
        question = rec["instruction"] + (f"\n\n{rec['input']}" if rec.get("input") else "")
        answers = {"helpful": rec["output"], "terse": " ".join(rec["output"].split()[:3]) or "Yes.",
                   "offtopic": records[(q + 1) % len(records)]["output"]}
        for a, b in (("helpful", "terse"), ("terse", "offtopic"), ("offtopic", "helpful")):
            for turn in (1, 2):
                for v in range(voters):
                    draw = rng.random()
                    better = "model_a" if quality[a] > quality[b] else "model_b"
                    worse = "model_b" if better == "model_a" else "model_a"
                    winner = better if draw < 0.8 else "tie" if draw < 0.92 else worse
                    conv = [{"role": "user", "content": question}]
                    out.append({"question_id": 81 + q, "model_a": a, "model_b": b, "winner": winner,
                                "judge": f"expert_{v}", "turn": turn,
                                "conversation_a": conv + [{"role": "assistant", "content": answers[a]}],
                                "conversation_b": conv + [{"role": "assistant", "content": answers[b]}]})
    return out


# ---------------------------------------------------------------- scripted judges
def oracle_judge(summeval: list[dict], mt_bench: list[dict], noise: float = 0.5, seed: int = 0):
    """A scripted judge that scores by the human label plus noise: a GEval verdict from the summary's
    expert rating on the criterion the prompt names (0-10), a pairwise winner from the experts' majority."""
    rating = {}
    for r in summeval:
        for k, s in enumerate(r["machine_summaries"]):
            for d in ("coherence", "consistency", "fluency", "relevance"):
                rating[(" ".join(s.split()), d)] = r[d][k]
    votes: dict = {}
    for r in mt_bench:
        if r["turn"] != 1:
            continue
        a = " ".join(r["conversation_a"][-1]["content"].split())
        b = " ".join(r["conversation_b"][-1]["content"].split())
        w = {"model_a": 1, "model_b": -1}.get(r["winner"], 0)
        votes[(a, b)] = votes.get((a, b), 0) + w
        votes[(b, a)] = votes.get((b, a), 0) - w

    def script(body: dict, seen: int) -> Reply:
        prompt = prompt_of(body)
        rng = random.Random(f"{seed}:{prompt}")
        title = (response_schema(body) or {}).get("title")
        if title == "ReasonScore":
            actual = " ".join((_section(prompt, "Actual Output") or "").split())
            dim = _criterion(prompt)
            v = rating.get((actual, dim))
            if v is None:
                return Reply()
            score = round(min(10, max(0, 2.5 * (v - 1) + rng.gauss(0, noise))))
            return Reply(content=json.dumps({"reason": f"Rated as an expert would ({dim}).", "score": score}))
        if title == "PairwiseVerdict":
            a, b = _answer(prompt, "A"), _answer(prompt, "B")
            m = votes.get((a, b), 0) + rng.gauss(0, noise)
            winner = "A" if m > 0.5 else "B" if m < -0.5 else "tie"
            return Reply(content=json.dumps({"reason": "The experts' choice.", "winner": winner}))
        return Reply()

    return script


def random_judge(seed: int = 0):
    """A scripted judge that answers at random: GEval scores 0-10, pairwise winners A / B / tie."""
    def script(body: dict, seen: int) -> Reply:
        rng = random.Random(f"{seed}:{prompt_of(body)}")
        title = (response_schema(body) or {}).get("title")
        if title == "ReasonScore":
            return Reply(content=json.dumps({"reason": "A coin decided.", "score": rng.randint(0, 10)}))
        if title == "PairwiseVerdict":
            return Reply(content=json.dumps({"reason": "A coin decided.", "winner": rng.choice(["A", "B", "tie"])}))
        return Reply()

    return script


def _criterion(prompt: str) -> str | None:
    """The G-Eval criterion a GEval prompt asks about (its evaluation steps name it)."""
    low = prompt.lower()
    for d in ("coherence", "consistency", "fluency", "relevance"):
        if f"{d} is" in low:
            return d
    if "grammar, spelling" in low:
        return "fluency"
    return None


def _answer(prompt: str, label: str) -> str:
    m = re.search(rf"\[Answer {label}\]\n(.*?)\n\[End of answer {label}\]", prompt, re.S)
    return " ".join(m.group(1).split()) if m else ""


def write_samples(samples) -> None:
    """data/samples/summeval.jsonl and mt_bench_human.jsonl, made from the shipped CNN/DailyMail and
    instruction samples (``python -m tunejudge_dev.testing.meta data/samples``; a test checks they match)."""
    from pathlib import Path

    samples = Path(samples)
    cnn = [json.loads(line) for line in (samples / "cnn_dailymail.jsonl").read_text(encoding="utf-8").splitlines() if line]
    records = json.loads((samples / "instruction-data.json").read_text(encoding="utf-8"))
    for name, rows in (("summeval.jsonl", summeval_rows(cnn[:8])), ("mt_bench_human.jsonl", mt_bench_rows(records[:8]))):
        (samples / name).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


if __name__ == "__main__":
    import sys

    write_samples(sys.argv[1] if len(sys.argv) > 1 else "data/samples")
