"""The GPT-2 tokenizer: tiktoken's ``gpt2`` encoding, from tiktoken or from identical offline ranks.

tiktoken downloads the GPT-2 BPE files on first use. Offline, the ``openai-whisper`` sdist ships the
very same 50,256 mergeable ranks as ``whisper/assets/gpt2.tiktoken``; with ``<|endoftext|>`` = 50256
and tiktoken's GPT-2 split pattern this is the ``gpt2`` encoding, token for token.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import os
from pathlib import Path

import tiktoken

from ...errors import TunejudgeError

log = logging.getLogger(__name__)

EOT = "<|endoftext|>"
EOT_ID = 50256
N_VOCAB = 50257
# tiktoken's GPT-2 pre-tokenisation pattern (tiktoken_ext.openai_public.gpt2)
GPT2_PAT = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
SOURCES = ("auto", "tiktoken", "whisper")
RANKS_ENV = "TUNEJUDGE_GPT2_TIKTOKEN"  # path of a gpt2.tiktoken ranks file, for machines without either


def whisper_ranks_path() -> Path | None:
    """Path of ``gpt2.tiktoken``: ``$TUNEJUDGE_GPT2_TIKTOKEN``, else inside an installed openai-whisper
    (found without importing whisper, whose own dependencies are heavy)."""
    if os.environ.get(RANKS_ENV):
        p = Path(os.environ[RANKS_ENV])
        if not p.is_file():
            raise TunejudgeError(f"{RANKS_ENV}={p}: no such file")
        return p
    spec = importlib.util.find_spec("whisper")
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        p = Path(loc) / "assets" / "gpt2.tiktoken"
        if p.is_file():
            return p
    return None


def _from_ranks_file(path: Path) -> tiktoken.Encoding:
    from tiktoken.load import load_tiktoken_bpe

    ranks = load_tiktoken_bpe(str(path))
    if len(ranks) != EOT_ID:
        raise TunejudgeError(f"{path}: expected {EOT_ID} GPT-2 ranks, found {len(ranks)}")
    return tiktoken.Encoding(
        name="gpt2", pat_str=GPT2_PAT, mergeable_ranks=ranks, special_tokens={EOT: EOT_ID}, explicit_n_vocab=N_VOCAB
    )


@functools.cache
def get_tokenizer(source: str = "auto") -> tiktoken.Encoding:
    """The GPT-2 encoding.

    ``tiktoken``: ``tiktoken.get_encoding("gpt2")`` (downloads once, then tiktoken's cache).
    ``whisper``: the identical ranks from the installed openai-whisper sdist, no network.
    ``auto``: the local ranks when installed (no network call that could hang), else tiktoken.
    """
    if source not in SOURCES:
        raise TunejudgeError(f"tokenizer.source: unknown value {source!r} (choose one of {', '.join(SOURCES)})")
    tried = []
    if source in ("auto", "whisper"):
        path = whisper_ranks_path()
        if path is not None:
            log.debug("GPT-2 tokenizer from %s", path)
            return _from_ranks_file(path)
        tried.append("the openai-whisper sdist's whisper/assets/gpt2.tiktoken (openai-whisper is not installed)")
    if source in ("auto", "tiktoken"):
        try:
            return tiktoken.get_encoding("gpt2")
        except Exception as e:  # network errors come in many types (requests, urllib, OSError)
            tried.append(f'tiktoken.get_encoding("gpt2") ({type(e).__name__}: {str(e)[:160]})')
    raise TunejudgeError(
        "cannot load the GPT-2 tokenizer. Tried: " + "; ".join(tried) + ". Fix: `pip install --no-deps "
        "openai-whisper` (ships the ranks, no network at run time), or allow tiktoken to download once."
    )
