"""The QA auditor against a scripted OpenAI-compatible server, and curation acting on its verdicts."""

import contextlib
import json

import pytest
from test_judge import FAKE_KEY, KEY_ENV, judge_cfg
from tunejudge_dev.testing.openai_server import Reply, ScriptedOpenAI, prompt_of

from tunejudge.data.audit import PROMPT, audit_records, run_audit
from tunejudge.data.curate import curate, drop_reason
from tunejudge.data.records import make_record
from tunejudge.errors import DataError

CONTEXT = ("Cui Hongfang, a 61-year-old grandmother from Heilongjiang Province, has become an online "
           "sensation after posting videos of herself learning to skateboard.")


def rec(question, answer, persona="Local News Reader"):
    return make_record(question, "", answer, "qa_cnn",
                       {"persona_name": persona, "reference_contexts": [CONTEXT], "article_id": "a1"})


RECORDS = [
    rec("Where is Cui Hongfang from?", "Cui Hongfang is from Heilongjiang Province."),  # kept
    rec("How old is Cui Hongfang?", "Cui Hongfang is 61 and a former Olympic skater."),  # ungrounded
    rec("Which province is she from?", "Heilongjiang."),  # needs the question
    rec("Whee wa Cui from?", "Cui was from Heilongjiang Province.", persona="Hurried Commuter"),  # noisy
]
VERDICTS = {
    "Cui Hongfang is from Heilongjiang Province.": (True, True, "Stated in the context, a full sentence."),
    "Cui Hongfang is 61 and a former Olympic skater.": (False, True, "The context never mentions Olympic skating."),
    "Heilongjiang.": (True, False, "A bare place name; it needs the question to mean anything."),
}


def auditor(body, seen):
    prompt = prompt_of(body)
    answer = prompt.split("Answer: ", 1)[1].split("\n", 1)[0]
    grounded, standalone, reason = VERDICTS[answer]
    return Reply(content=json.dumps({"reason": reason, "grounded": grounded, "standalone": standalone}))


@pytest.fixture(autouse=True)
def key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, FAKE_KEY)


def audit(srv, tmp_path, records=RECORDS, **cfg_over):
    cfg = {**judge_cfg(srv.base_url, **cfg_over), "cache": str(tmp_path / "answers")}
    return run_audit(records, "data/instructions/qa_cnn_instruction_data.json", {"max_tokens": 200}, cfg,
                     noisy_personas=["Hurried Commuter"])


def test_kept_and_dropped_with_the_auditors_reasons(tmp_path, enc):
    with ScriptedOpenAI(auditor) as srv:
        verdicts, stats = audit(srv, tmp_path)
        assert srv.chat_requests == 3  # the noisy-persona item is not sent
        body = srv.requests[0]
    assert body["max_tokens"] == 200 and body["response_format"]["json_schema"]["schema"]["title"] == "QAAudit"
    assert "Reference context (from the article):\n" + CONTEXT in prompt_of(body)
    assert stats == {"kept": 1, "dropped": 2, "skipped": 1, "asked": 3}
    res = curate([dict(r) for r in RECORDS], {"max_tokens": 512, "noisy_personas": ["Hurried Commuter"]}, enc,
                 {v["id"]: v for v in verdicts})
    assert [r["id"] for r in res.kept] == [RECORDS[0]["id"]]
    why = {d["record"]["id"]: (d["reason"], d["detail"]) for d in res.dropped}
    assert why[RECORDS[1]["id"]][0] == "audit_not_grounded"
    assert "Olympic skating" in why[RECORDS[1]["id"]][1]
    assert why[RECORDS[2]["id"]][0] == "audit_question_dependent"
    assert "bare place name" in why[RECORDS[2]["id"]][1]
    assert why[RECORDS[3]["id"]][0] == "noisy_persona"


def test_verdicts_are_cached(tmp_path):
    with ScriptedOpenAI(auditor) as srv:
        first, _ = audit(srv, tmp_path)
        second, stats = audit(srv, tmp_path)
        assert srv.chat_requests == 3 and stats["asked"] == 0
    assert first == second


def test_malformed_verdicts_drop_as_unaudited_and_are_asked_again(tmp_path):
    def broken(body, seen):
        return Reply("malformed", content='{"reason": "fine", "grounded": "yes"}')

    with ScriptedOpenAI(broken) as srv:
        verdicts, stats = audit(srv, tmp_path)
        assert stats["error"] == 3 and srv.chat_requests == 9  # 1 + 2 retries each
        audit(srv, tmp_path)
        assert srv.chat_requests == 18  # errors are not cached
    reason, detail = drop_reason(verdicts[0])
    assert reason == "audit_unavailable" and "'grounded' must be true or false" in detail


def test_an_item_without_its_context_names_file_record_and_field(tmp_path):
    bad = [RECORDS[0], make_record("Q?", "", "A.", "qa_cnn", {"persona_name": "x"})]
    with ScriptedOpenAI(auditor) as srv, pytest.raises(
            DataError, match=r"qa_cnn_instruction_data.json: record 1: field 'meta.reference_contexts'"):
        audit(srv, tmp_path, bad)


def test_curation_refuses_a_stale_audit(enc):
    with pytest.raises(DataError, match="no verdict for record"):
        curate([dict(RECORDS[0])], {"max_tokens": 512}, enc, {}, audit_path="data/audit/qa_cnn.json")


def test_nothing_is_asked_when_everything_is_cached_or_noisy(tmp_path):
    @contextlib.contextmanager
    def never():
        raise AssertionError("the endpoint must not be opened")
        yield

    from tunejudge.llm.store import AnswerStore

    with AnswerStore(tmp_path / "answers") as cache:
        rows, stats = audit_records(RECORDS[3:], "f", auditor={"a": 1}, cache=cache, connect=never,
                                    noisy_personas=["Hurried Commuter"])
    assert stats == {"skipped": 1, "asked": 0} and rows[0]["skipped"] == "noisy_persona"
    assert "{context}" in PROMPT
