"""News articles this project makes that name the same people, in CNN/DailyMail's schema (``id``,
``article``), so that RAGAS's knowledge graph links them as it links real coverage of one story.

Three articles, each on two of three people of a harbour town (every pair once), built by rule from
a few phrases. ``long=False``: about 210 ``cl100k_base`` tokens each (RAGAS's short-article
transforms); ``long=True``: four headed sections, about 1,250 tokens each (its headline splitter
and chunks). Under :func:`tunejudge_dev.testing.openai_server.linking_extractor` their entities are the
people's names, so each pair of articles shares one.
"""

from __future__ import annotations

PEOPLE = [("Maria Lopez", "the harbour master"), ("Tom Reyes", "the council treasurer"),
          ("Ana Ruiz", "the ferry operator")]
_NOUNS = ["budget", "harbour wall", "ferry timetable", "fishing quota", "storm barrier", "school bus route",
          "market licence"]
_VERBS = ["be reviewed", "be delayed", "cost more", "be put to a vote", "go ahead", "be cut"]
_TIMES = ["the end of the month", "the spring tides", "the next council meeting", "the summer season"]
_HEADS = ["Harbour plans", "What residents said", "The vote ahead", "Money and time"]


def _sentences(people: list[tuple[str, str]], n: int, salt: int) -> list[str]:
    out = []
    for i in range(n):
        name, role = people[i % len(people)]
        k = i + salt
        out.append(f"{name}, {role}, said the {_NOUNS[k % len(_NOUNS)]} would {_VERBS[k % len(_VERBS)]} before "
                   f"{_TIMES[k % len(_TIMES)]}, and that residents had been told in a letter sent to every household.")
    return out


def linked_articles(long: bool = False) -> list[dict]:
    """Three ``{"id", "article"}`` rows; articles i and j (i < j) share one person."""
    rows = []
    for a, pair in enumerate([(PEOPLE[0], PEOPLE[1]), (PEOPLE[0], PEOPLE[2]), (PEOPLE[1], PEOPLE[2])]):
        if long:
            text = "\n\n".join(head + "\n" + " ".join(_sentences(list(pair), 9, 7 * a + 3 * h))
                               for h, head in enumerate(_HEADS))
        else:
            text = " ".join(_sentences(list(pair), 6, 7 * a))
        rows.append({"id": f"linked-{a}", "article": text})
    return rows
