"""Builders: one function per corpus, rows in the corpus's own schema -> instruction records.

Every builder takes the rows and the source's config section and returns ``(records, skipped)``:
``skipped`` counts rows that cannot become an instruction (an unlabelled SST-2 test row, a SQuAD
question without an answer) by reason. Quality filtering is curation's job, not the builders'.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping

from ..errors import ConfigError, DataError
from ..records import make_record

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
        out.append(make_record(cfg["instruction"], article.strip(), highlights.strip(), source,
                               {"article_id": row.get("id", "")}))
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
        out.append(make_record((question or "").strip(), inp, (reference or "").strip(), source, meta))
    return out, skipped


def _classification(rows: Iterable[Row], cfg: dict, source: str, text_field: str) -> Result:
    """Labelled text -> the label's name from ``cfg['labels']`` (index = the corpus's label id)."""
    out, skipped = [], Counter()
    labels = cfg["labels"]
    for i, row in enumerate(rows):
        label = _label_name(labels, _need(row, "label", i, source), i, source)
        if label is None:
            skipped["unlabelled row"] += 1
            continue
        out.append(make_record(cfg["instruction"], _need(row, text_field, i, source).strip(), label, source))
    return out, skipped


def sst2(rows: Iterable[Row], cfg: dict, source: str) -> Result:
    """SST-2: sentence -> Negative / Positive."""
    return _classification(rows, cfg, source, "sentence")


def agnews(rows: Iterable[Row], cfg: dict, source: str) -> Result:
    """AG News: text -> World / Sports / Business / Science/Technology."""
    return _classification(rows, cfg, source, "text")


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
        out.append(make_record(tmpl_ins.format(**fields), tmpl_in.format(**fields), texts[0].strip(), source,
                               {"squad_id": row.get("id", "")}))
    return out, skipped


def sebastian(rows: Iterable[Row], cfg: dict, source: str) -> Result:
    """Raschka's instruction-data.json: already instruction / input / output."""
    out, skipped = [], Counter()
    for i, row in enumerate(rows):
        out.append(make_record(_need(row, "instruction", i, source), row.get("input") or "",
                               _need(row, "output", i, source), source))
    return out, skipped


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
