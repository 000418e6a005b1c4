import pytest

from tunejudge.errors import TunejudgeError
from tunejudge.models.gpt2 import tokenizer


def test_known_ids(enc):
    assert enc.encode("Hello, world!") == [15496, 11, 995, 0]
    assert enc.encode("<|endoftext|>", allowed_special="all") == [tokenizer.EOT_ID]
    assert enc.n_vocab == 50257


def test_roundtrip_unicode(enc):
    text = "São Paulo, Zürich, ありがとう, €8 million — “quoted”"
    assert enc.decode(enc.encode(text)) == text


def test_whisper_ranks_are_shipped():
    assert tokenizer.whisper_ranks_path() is not None


def test_unknown_source_is_a_clear_error():
    with pytest.raises(TunejudgeError, match="tokenizer.source"):
        tokenizer.get_tokenizer("sentencepiece")


def test_neither_available_is_one_clear_error(monkeypatch):
    monkeypatch.setattr(tokenizer, "whisper_ranks_path", lambda: None)

    def offline(name):
        raise ConnectionError("no network")

    monkeypatch.setattr(tokenizer.tiktoken, "get_encoding", offline)
    tokenizer.get_tokenizer.cache_clear()
    try:
        with pytest.raises(TunejudgeError, match="cannot load the GPT-2 tokenizer.*openai-whisper"):
            tokenizer.get_tokenizer("auto")
    finally:
        tokenizer.get_tokenizer.cache_clear()
