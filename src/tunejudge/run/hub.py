"""The Hugging Face Hub: fetched once by download rules, read offline by every other job.

On a cluster, compute nodes often have no internet. So a Hub corpus is fetched by a *download*
rule (a Snakemake ``localrules`` job, on the submitting machine), through the real
``datasets.load_dataset(path, name=..., split=...)``, which fills the Hub and datasets caches
(``HF_HOME``) and writes a small manifest: the repository, the revision it resolved to, the
dataset's fingerprint, row count and columns. Every other job runs with the Hub offline
(``HF_HUB_OFFLINE=1``, ``HF_DATASETS_OFFLINE=1``) and loads the same call from that cache.

``HF_ENDPOINT`` names the Hub (a mirror, or a local stand-in for a rehearsal); nothing here names
a host.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from .telemetry import disable_telemetry

disable_telemetry()  # before datasets or huggingface_hub is imported

log = logging.getLogger(__name__)

OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
LOCAL_BUILDERS = {"json", "csv", "parquet", "text", "arrow"}  # datasets' packaged loaders: no Hub


def is_hub(loader: dict) -> bool:
    """A loader that names a Hub repository (not a packaged loader over local files)."""
    return loader.get("path") not in LOCAL_BUILDERS and not loader.get("data_files")


def dataset_key(loader: dict) -> str:
    """A file-name-safe name for one (repository, config, split, revision): ``abisee--cnn_dailymail--3.0.0--test``."""
    parts = [loader["path"].replace("/", "--"), loader.get("name") or "default", str(loader["split"])]
    if loader.get("revision"):
        parts.append(str(loader["revision"]))
    return re.sub(r"[^A-Za-z0-9._-]+", "_", "--".join(parts))


def go_offline() -> None:
    """Before ``datasets`` or ``huggingface_hub`` is imported: read the Hub only from the cache."""
    os.environ.update(OFFLINE_ENV)


def go_online() -> None:
    """For download rules: the Hub may be reached (undo what the Snakefile set for every job)."""
    for k in OFFLINE_ENV:
        os.environ.pop(k, None)


def endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co")


def revision(kind: str, repo: str, rev: str | None = None) -> str:
    """The commit a Hub repository's ``rev`` (default ``main``) resolves to; ``kind``: dataset or model."""
    from huggingface_hub import HfApi

    api = HfApi(endpoint=endpoint())
    return (api.dataset_info if kind == "dataset" else api.model_info)(repo, revision=rev or "main").sha


def recorded_revision(kind: str, repo: str, rev: str | None = None) -> str | None:
    try:
        return revision(kind, repo, rev)
    except Exception as e:  # the data is downloaded already; a missing revision is recorded, not fatal
        log.warning("%s: could not read the repository's revision (%s)", repo, e)
        return None


def fetch_model_file(repo: str, filename: str, dest_dir) -> tuple[str, str | None]:
    """Download rule: ``hf_hub_download`` one file of a model repository; (local path, revision)."""
    from huggingface_hub import hf_hub_download

    got = hf_hub_download(repo_id=repo, filename=filename, local_dir=dest_dir)
    return got, recorded_revision("model", repo)


# the files a causal LM needs from its repository (weights, config, tokenizer, chat template)
MODEL_PATTERNS = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "*.tiktoken"]


def fetch_model_snapshot(repo: str, revision: str | None) -> dict:
    """Download rule: a model repository's files at ``revision`` into the Hub cache (``HF_HOME``),
    where ``from_pretrained(repo, revision=...)`` finds them offline. Returns where they came from."""
    from huggingface_hub import snapshot_download

    folder = snapshot_download(repo_id=repo, revision=revision, allow_patterns=MODEL_PATTERNS)
    files = sorted(p.name for p in Path(folder).iterdir())
    resolved = Path(folder).name  # the snapshot folder is named after the commit it resolved to
    return {"repo": repo, "revision": revision, "commit": resolved, "endpoint": endpoint(), "files": files}
