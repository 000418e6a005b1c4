"""Builders: one function per corpus, rows in the corpus's own schema -> instruction records.

Every builder takes the rows and the source's config section and returns ``(records, skipped)``:
``skipped`` counts rows that cannot become an instruction (an unlabelled SST-2 test row, a SQuAD
question without an answer) by reason. Quality filtering is curation's job, not the builders': each
builder declares the record fields its task cannot do without (:func:`required_fields`), and
curation drops a record with one of them empty. Extractive QA records carry ``meta.answer_start``,
the answer's offset in the input, so that curation can keep the answer when it shortens the input.
"""

from __future__ import annotations

import html
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping

from ..errors import ConfigError, DataError
from .records import article_group, make_record

CNN = "cnn_dailymail"  # the group-key prefix of CNN/DailyMail articles, shared by the summaries and the QA

Row = Mapping
Result = tuple[list[dict], Counter]


def _need(row: Row, field: str, i: int, corpus: str):
    if field not in row:
        raise DataError(corpus, i, field, "missing from the corpus row")
    return row[field]


def _label_name(labels: list[str], value, i: int, corpus: str, field: str = "label") -> str | None:
    if value is None or value == -1:
        return None  # unlabelled rows (SST-2 / GLUE test splits use -1)
    if not isinstance(value, int) or not 0 <= value < len(labels):
        raise DataError(corpus, i, field, f"label {value!r} outside 0..{len(labels) - 1} ({', '.join(labels)})")
    return labels[value]


def summarization_cnn(rows: Iterable[Row], cfg: dict, source: str) -> Result:
    """CNN/DailyMail: article -> highlights."""
    out, skipped = [], Counter()
    for i, row in enumerate(rows):
        article = _need(row, "article", i, source)
        highlights = _need(row, "highlights", i, source)
        article_id = row.get("id") or ""
        out.append(make_record(cfg["instruction"], article.strip(), highlights.strip(), source,
                               {"article_id": article_id}, group=[article_group(CNN, article_id, article)]))
    return out, skipped


def qa_cnn(rows: Iterable[Row], cfg: dict, source: str) -> Result:
    """RAGAS test-set rows (user_input, reference, reference_contexts, persona_name, synthesizer_name).

    As in the study, the question becomes the instruction and the input stays empty (closed book);
    ``input_mode: context`` puts the reference contexts in the input instead.
    """
    mode = cfg.get("input_mode", "closed_book")
    if mode not in ("closed_book", "context"):
        raise ConfigError(f"sources.{source}.input_mode: {mode!r} (closed_book or context)")
    out, skipped = [], Counter()
    for i, row in enumerate(rows):
        question = _need(row, "user_input", i, source)
        reference = _need(row, "reference", i, source)
        contexts = _need(row, "reference_contexts", i, source) or []
        if not isinstance(contexts, list):
            raise DataError(source, i, "reference_contexts", f"expected a list, got {type(contexts).__name__}")
        meta = {
            "persona_name": row.get("persona_name") or "",
            "synthesizer_name": row.get("synthesizer_name") or "",
            "query_style": row.get("query_style") or "",
            "article_id": row.get("article_id") or "",
            "reference_contexts": list(contexts),
        }
        inp = "\n\n".join(contexts) if mode == "context" else ""
        # the question stays with its article(s): a multi-hop question joins every article it read
        ids = [a for a in (row.get("article_ids") or [meta["article_id"]]) if a]
        out.append(make_record((question or "").strip(), inp, (reference or "").strip(), source, meta,
                               group=[article_group(CNN, a) for a in dict.fromkeys(ids)] or None))
    return out, skipped


_AG_ESCAPE = re.compile(r"(?<![&#\w])#(\d{1,6});")  # AG News writes '$' as '#36;' (an entity without its '&')
_TAG = re.compile(r"</?[A-Za-z][^<>]{0,300}>")


def clean_agnews(text: str) -> str:
    """AG News's markup as plain text: ``#36;`` escapes and HTML entities (also double-escaped ones),
    HTML tags, and the backslashes the corpus writes for line breaks; whitespace collapsed."""
    text = _AG_ESCAPE.sub(r"&#\1;", text)
    for _ in range(3):  # '&amp;lt;b&amp;gt;' -> '&lt;b&gt;' -> '<b>'
        unescaped = html.unescape(text)
        if unescaped == text:
            break
        text = unescaped
    text = _TAG.sub(" ", text)
    text = text.replace("\\", " ")
    return " ".join(text.split())


def _classification(rows: Iterable[Row], cfg: dict, source: str, text_field: str,
                    clean: Callable[[str], str] | None = None) -> Result:
    """Labelled text -> the label's name from ``cfg['labels']`` (index = the corpus's label id)."""
    out, skipped = [], Counter()
    labels = cfg["labels"]
    for i, row in enumerate(rows):
        label = _label_name(labels, _need(row, "label", i, source), i, source)
        if label is None:
            skipped["unlabelled row"] += 1
            continue
        text = _need(row, text_field, i, source)
        if not isinstance(text, str):
            raise DataError(source, i, text_field, f"expected a string, got {type(text).__name__}")
        text = clean(text) if clean else text.strip()
        out.append(make_record(cfg["instruction"], text, label, source))
    return out, skipped


def sst2(rows: Iterable[Row], cfg: dict, source: str) -> Result:
    """SST-2: sentence -> Negative / Positive."""
    return _classification(rows, cfg, source, "sentence")


def agnews(rows: Iterable[Row], cfg: dict, source: str) -> Result:
    """AG News: text -> World / Sports / Business / Science/Technology; the corpus's markup cleaned
    (``clean_markup: false`` keeps it raw)."""
    return _classification(rows, cfg, source, "text", clean_agnews if cfg.get("clean_markup", True) else None)


def qa_squad(rows: Iterable[Row], cfg: dict, source: str) -> Result:
    """SQuAD v1.1: question + context -> first gold answer."""
    out, skipped = [], Counter()
    tmpl_ins = cfg.get("instruction_template", "{question}")
    tmpl_in = cfg.get("input_template", "{context}")
    for i, row in enumerate(rows):
        question = _need(row, "question", i, source).strip()
        context = _need(row, "context", i, source).strip()
        answers = _need(row, "answers", i, source)
        texts = answers.get("text") if isinstance(answers, Mapping) else None
        if texts is None:
            raise DataError(source, i, "answers", "expected {text: [...], answer_start: [...]}")
        if not texts:
            skipped["no gold answer"] += 1
            continue
        fields = {"question": question, "context": context, "title": row.get("title", "")}
        answer, inp = texts[0].strip(), tmpl_in.format(**fields)
        meta = {"squad_id": row.get("id", "")}
        start = _answer_offset(inp, context, _need(row, "context", i, source), answer, answers.get("answer_start"))
        if start is not None:
            meta["answer_start"] = start
        out.append(make_record(tmpl_ins.format(**fields), inp, answer, source, meta))
    return out, skipped


def _answer_offset(inp: str, context: str, raw_context: str, answer: str, starts) -> int | None:
    """Where the gold answer sits in the record's input: SQuAD's own ``answer_start`` (an offset
    into the unstripped context) moved to the input, else the answer's first occurrence."""
    if not answer:
        return None
    base = inp.find(context) if context else -1
    if base >= 0 and starts:
        start = base + int(starts[0]) - (len(raw_context) - len(raw_context.lstrip()))
        if inp[start : start + len(answer)] == answer:
            return start
    found = inp.find(answer)
    return found if found >= 0 else None


def sebastian(rows: Iterable[Row], cfg: dict, source: str) -> Result:
    """Raschka's instruction-data.json: already instruction / input / output."""
    out, skipped = [], Counter()
    for i, row in enumerate(rows):
        out.append(make_record(_need(row, "instruction", i, source), row.get("input") or "",
                               _need(row, "output", i, source), source))
    return out, skipped


# The record fields each task cannot do without: curation drops a record with one of them empty.
REQUIRED = {
    "summarization_cnn": ("instruction", "input", "output"),  # the article
    "qa_cnn": ("instruction", "output"),  # closed book: the question alone
    "sst2": ("instruction", "input", "output"),  # the sentence
    "agnews": ("instruction", "input", "output"),  # the news text
    "qa_squad": ("instruction", "input", "output"),  # the context
    "sebastian": ("instruction", "output"),  # Raschka's items often have no input
}


def required_fields(builder: str, cfg: Mapping) -> tuple[str, ...]:
    """The record fields a source's task needs non-empty."""
    need = REQUIRED.get(builder, ("instruction", "output"))
    if builder == "qa_cnn" and cfg.get("input_mode") == "context":
        need += ("input",)
    return need


BUILDERS: dict[str, Callable[[Iterable[Row], dict, str], Result]] = {
    "summarization_cnn": summarization_cnn,
    "qa_cnn": qa_cnn,
    "sst2": sst2,
    "agnews": agnews,
    "qa_squad": qa_squad,
    "sebastian": sebastian,
}


def build(builder: str, rows: Iterable[Row], cfg: dict, source: str, where: str | None = None) -> Result:
    """Run ``builder``; a bad row stops with ``where`` (the corpus file or Hub id), row index and field."""
    if builder not in BUILDERS:
        raise ConfigError(f"sources.{source}.builder: unknown builder {builder!r} (one of {', '.join(BUILDERS)})")
    try:
        return BUILDERS[builder](rows, cfg, source)
    except DataError as e:
        raise DataError(where or source, e.index, e.field, e.problem) from None
