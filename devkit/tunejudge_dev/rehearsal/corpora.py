"""Corpus files in each corpus's own public format, read into the Hub's schema, and written back.

What a user may hold (any real copy works; the bundled samples are exported to the same shapes):

| corpus | files under the corpora folder | public format |
| --- | --- | --- |
| CNN/DailyMail | ``cnn_dailymail/{train,validation,test}.csv`` | CSV with header ``id,article,highlights`` |
| SST-2 | ``SST-2/{train,dev}.tsv`` (``test.tsv`` optional) | GLUE TSV: ``sentence<TAB>label`` (test: ``index<TAB>sentence``) |
| AG News | ``ag_news_csv/{train,test}.csv`` | no header: class index 1-4, title, description |
| SQuAD v1.1 | ``squad/{train,dev}-v1.1.json`` | SQuAD JSON: data / paragraphs / qas / answers |
| Raschka | ``instruction-data.json`` | a JSON list of ``{instruction, input, output}`` |
| SummEval | ``summeval/test.jsonl`` | ``mteb/summeval``'s rows as JSON lines (experts' means per dimension) |
| MT-Bench human judgments | ``mt_bench_human_judgments/human.jsonl`` | ``lmsys/mt_bench_human_judgments``'s rows as JSON lines |

Read, each becomes the rows and the ``datasets`` features of its Hub repository
(``abisee/cnn_dailymail`` 3.0.0, ``stanfordnlp/sst2``, ``fancyzhx/ag_news``, ``rajpurkar/squad``,
``mteb/summeval``, ``lmsys/mt_bench_human_judgments``). The bundled meta-evaluation sets are this project's
own (``tunejudge_dev.testing.meta``), in those two formats.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

from tunejudge.errors import DataError

AG_NEWS_LABELS = ["World", "Sports", "Business", "Sci/Tech"]
SST2_LABELS = ["negative", "positive"]


@dataclass
class HubDataset:
    """One Hub dataset repository: its id, config name, the folder its shards sit in, and splits."""

    repo: str
    config: str
    folder: str
    splits: dict  # split name -> list of rows in the Hub schema
    features: object  # datasets.Features


def _features(kind: str):
    from datasets import ClassLabel, Features, Sequence, Value

    return {
        "cnn_dailymail": Features({"article": Value("string"), "highlights": Value("string"), "id": Value("string")}),
        "sst2": Features({"idx": Value("int32"), "sentence": Value("string"),
                          "label": ClassLabel(names=SST2_LABELS)}),
        "ag_news": Features({"text": Value("string"), "label": ClassLabel(names=AG_NEWS_LABELS)}),
        "squad": Features({"id": Value("string"), "title": Value("string"), "context": Value("string"),
                           "question": Value("string"),
                           "answers": Sequence({"text": Value("string"), "answer_start": Value("int32")})}),
        "summeval": Features({"machine_summaries": Sequence(Value("string")), "human_summaries": Sequence(Value("string")),
                              **{d: Sequence(Value("float64")) for d in ("relevance", "coherence", "fluency", "consistency")},
                              "text": Value("string"), "id": Value("string")}),
        "mt_bench": Features({"question_id": Value("int64"), "model_a": Value("string"), "model_b": Value("string"),
                              "winner": Value("string"), "judge": Value("string"),
                              "conversation_a": [{"content": Value("string"), "role": Value("string")}],
                              "conversation_b": [{"content": Value("string"), "role": Value("string")}],
                              "turn": Value("int64")}),
    }[kind]


def _jsonl_split(path: Path, split: str) -> dict:
    if not path.exists():
        return {}
    return {split: [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]}


def _csv_rows(path: Path, header: bool) -> list:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f)) if header else list(csv.reader(f))


def read_cnn_dailymail(folder: Path) -> dict:
    out = {}
    for split in ("train", "validation", "test"):
        path = folder / "cnn_dailymail" / f"{split}.csv"
        if path.exists():
            rows = _csv_rows(path, header=True)
            for i, r in enumerate(rows):  # empty values pass: the builders and curation judge them
                for field in ("id", "article", "highlights"):
                    if r.get(field) is None:
                        raise DataError(path, i, field, "missing (header: id,article,highlights)")
            out[split] = [{"article": r["article"], "highlights": r["highlights"], "id": r["id"]} for r in rows]
    return out


def read_sst2(folder: Path) -> dict:
    out = {}
    for split, name in (("train", "train.tsv"), ("validation", "dev.tsv"), ("test", "test.tsv")):
        path = folder / "SST-2" / name
        if not path.exists():
            continue
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
        head, rows = lines[0].split("\t"), []
        for i, line in enumerate(lines[1:]):
            cells = dict(zip(head, line.split("\t")))
            if split == "test":
                rows.append({"idx": int(cells["index"]), "sentence": cells["sentence"], "label": -1})
                continue
            try:  # -1 (unlabelled) passes, as in the Hub's test split: the builder skips such rows
                label = int(cells.get("label"))
            except (TypeError, ValueError):
                raise DataError(path, i, "label", f"expected an integer, got {cells.get('label')!r}") from None
            rows.append({"idx": i, "sentence": cells["sentence"], "label": label})
        out[split] = rows
    return out


def read_ag_news(folder: Path) -> dict:
    out = {}
    for split in ("train", "test"):
        path = folder / "ag_news_csv" / f"{split}.csv"
        if not path.exists():
            continue
        rows = []
        for i, cells in enumerate(_csv_rows(path, header=False)):
            if len(cells) != 3 or not cells[0].lstrip("-").isdigit():
                raise DataError(path, i, "class index", "expected 3 columns: class index 1-4, title, description")
            rows.append({"text": f"{cells[1]} {cells[2]}".strip(), "label": int(cells[0]) - 1})
        out[split] = rows
    return out


def read_squad(folder: Path) -> dict:
    out = {}
    for split, name in (("train", "train-v1.1.json"), ("validation", "dev-v1.1.json")):
        path = folder / "squad" / name
        if not path.exists():
            continue
        rows = []
        for article in json.loads(path.read_text(encoding="utf-8"))["data"]:
            for para in article["paragraphs"]:
                for qa in para["qas"]:
                    rows.append({"id": qa["id"], "title": article["title"], "context": para["context"],
                                 "question": qa["question"],
                                 "answers": {"text": [a["text"] for a in qa["answers"]],
                                             "answer_start": [a["answer_start"] for a in qa["answers"]]}})
        out[split] = rows
    return out


def read_corpora(folder) -> list[HubDataset]:
    """Every corpus found under ``folder`` as its Hub repository."""
    folder = Path(folder)
    found = []
    for repo, config, shard_dir, kind, read in (
        ("abisee/cnn_dailymail", "3.0.0", "3.0.0", "cnn_dailymail", read_cnn_dailymail),
        ("stanfordnlp/sst2", "default", "data", "sst2", read_sst2),
        ("fancyzhx/ag_news", "default", "data", "ag_news", read_ag_news),
        ("rajpurkar/squad", "plain_text", "plain_text", "squad", read_squad),
        ("mteb/summeval", "default", "data", "summeval", lambda f: _jsonl_split(f / "summeval" / "test.jsonl", "test")),
        ("lmsys/mt_bench_human_judgments", "default", "data", "mt_bench",
         lambda f: _jsonl_split(f / "mt_bench_human_judgments" / "human.jsonl", "human")),
    ):
        splits = read(folder)
        if splits:
            found.append(HubDataset(repo, config, shard_dir, splits, _features(kind)))
    return found


def export_samples(samples, out) -> Path:
    """The bundled samples (Hub schema, JSON lines) written in each corpus's public format.

    CNN/DailyMail articles go two thirds to train and one third to test (the study's RAGAS
    generation reads the test split); SST-2 and AG News rows alternate between the two splits
    the Hub has; SQuAD keeps one article title per paragraph group.
    """
    samples, out = Path(samples), Path(out)

    def jsonl(name):
        return [json.loads(line) for line in (samples / name).read_text(encoding="utf-8").splitlines() if line.strip()]

    cnn = jsonl("cnn_dailymail.jsonl")
    (out / "cnn_dailymail").mkdir(parents=True, exist_ok=True)
    for split, rows in (("train", [r for i, r in enumerate(cnn) if i % 3 != 2]),
                        ("test", [r for i, r in enumerate(cnn) if i % 3 == 2])):
        with open(out / "cnn_dailymail" / f"{split}.csv", "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["id", "article", "highlights"])
            w.writerows([r["id"], r["article"], r["highlights"]] for r in rows)

    sst = jsonl("sst2.jsonl")
    (out / "SST-2").mkdir(parents=True, exist_ok=True)
    for name, rows in (("train.tsv", sst[0::2]), ("dev.tsv", sst[1::2])):
        text = "sentence\tlabel\n" + "".join(f"{r['sentence']}\t{r['label']}\n" for r in rows)
        (out / "SST-2" / name).write_text(text, encoding="utf-8")

    ag = jsonl("ag_news.jsonl")
    (out / "ag_news_csv").mkdir(parents=True, exist_ok=True)
    for split, rows in (("train", ag[0::2]), ("test", ag[1::2])):
        with open(out / "ag_news_csv" / f"{split}.csv", "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f, quoting=csv.QUOTE_ALL)
            for r in rows:
                words = r["text"].split(" ")
                w.writerow([r["label"] + 1, " ".join(words[:6]), " ".join(words[6:])])

    squad = jsonl("squad.jsonl")
    (out / "squad").mkdir(parents=True, exist_ok=True)
    for name, rows in (("train-v1.1.json", squad[0::2]), ("dev-v1.1.json", squad[1::2])):
        data: dict = {}
        for r in rows:
            paras = data.setdefault(r["title"], {})
            paras.setdefault(r["context"], []).append(
                {"id": r["id"], "question": r["question"],
                 "answers": [{"text": t, "answer_start": s}
                             for t, s in zip(r["answers"]["text"], r["answers"]["answer_start"])]})
        doc = {"version": "1.1", "data": [
            {"title": title, "paragraphs": [{"context": c, "qas": qas} for c, qas in paras.items()]}
            for title, paras in data.items()]}
        (out / "squad" / name).write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")

    (out / "instruction-data.json").write_bytes((samples / "instruction-data.json").read_bytes())
    for name, folder, split in (("summeval.jsonl", "summeval", "test"),
                                ("mt_bench_human.jsonl", "mt_bench_human_judgments", "human")):
        (out / folder).mkdir(parents=True, exist_ok=True)
        (out / folder / f"{split}.jsonl").write_bytes((samples / name).read_bytes())
    return out
