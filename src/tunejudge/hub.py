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

from .errors import ConfigError, DataError, TunejudgeError
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


def load_error(e: BaseException, loader: dict, key: str) -> TunejudgeError:
    """One line naming what the Hub or ``datasets`` refused and what to do about it."""
    import datasets

    path, name, split = loader["path"], loader.get("name"), loader.get("split")
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    where = f"{key}.path = {path!r}"
    if isinstance(e, datasets.exceptions.DatasetNotFoundError) or "doesn't exist on the Hub" in text:
        return ConfigError(f"{where}: no such dataset on the Hub at {endpoint()} (or it is gated and no "
                           f"HF_TOKEN is set); check the repository id")
    m = re.search(r"BuilderConfig '([^']*)' not found\. Available: (\[.*?\])", text)
    if m or "config name is missing" in text.lower():
        avail = m.group(2) if m else text
        return ConfigError(f"{key}.name = {name!r}: {path} has no such config; available: {avail}")
    m = re.search(r"Unknown split \"?([^\".]*)\"?\. Should be one of (\[.*?\])", text)
    if m:
        return ConfigError(f"{key}.split = {split!r}: {path} has no such split; available: {m.group(2)}")
    if isinstance(e, ConnectionError) or "offline" in text.lower() or "connect" in text.lower():
        return DataError(path, problem=f"cannot reach the Hub at {endpoint()} ({type(e).__name__}: {text[:200]}); "
                         "run the download rules where there is network (they are localrules), or use the "
                         "offline default config")
    return DataError(path, problem=f"datasets.load_dataset failed ({type(e).__name__}: {text[:300]})")


def load_dataset(loader: dict, key: str):
    """``datasets.load_dataset(**loader)`` with every failure turned into one clear line."""
    import datasets

    if "path" not in loader or "split" not in loader:
        raise ConfigError(f"{key} {loader!r}: needs at least 'path' and 'split'")
    kwargs = dict(loader)
    path = kwargs.pop("path")
    try:
        return datasets.load_dataset(path, **kwargs)
    except (datasets.exceptions.DatasetGenerationError, ValueError, ConnectionError, OSError) as e:
        if is_hub(loader):
            raise load_error(e, loader, key) from None
        cause = e.__cause__ or e.__context__
        detail = f"{e}" + (f" ({type(cause).__name__}: {str(cause)[:300]})" if cause else "")
        raise DataError(loader.get("data_files") or path,
                        problem=f"cannot be read by datasets.load_dataset: {detail}") from None


def revision(kind: str, repo: str, rev: str | None = None) -> str:
    """The commit a Hub repository's ``rev`` (default ``main``) resolves to; ``kind``: dataset or model."""
    from huggingface_hub import HfApi

    api = HfApi(endpoint=endpoint())
    return (api.dataset_info if kind == "dataset" else api.model_info)(repo, revision=rev or "main").sha


def _recorded_revision(kind: str, repo: str, rev: str | None = None) -> str | None:
    try:
        return revision(kind, repo, rev)
    except Exception as e:  # the data is downloaded already; a missing revision is recorded, not fatal
        log.warning("%s: could not read the repository's revision (%s)", repo, e)
        return None


def fetch_dataset(loader: dict, key: str) -> dict:
    """Download rule: load the split from the Hub (filling the cache); return its manifest.

    The repository's own files are read; ``datasets`` would also ask the Hub's dataset viewer
    (``datasets-server.<endpoint>``) for the infos of its parquet export, a second service a mirror
    rarely has and the data does not need, so that is off.
    """
    import datasets

    datasets.config.USE_PARQUET_EXPORT = False
    # opt-in only, as for every usage ping (tunejudge.telemetry): a user who exported it keeps it
    datasets.config.HF_UPDATE_DOWNLOAD_COUNTS = (
        os.environ.get("HF_UPDATE_DOWNLOAD_COUNTS", "false").upper() in datasets.config.ENV_VARS_TRUE_VALUES)
    ds = load_dataset(loader, key)
    commit = _recorded_revision("dataset", loader["path"], loader.get("revision"))
    manifest = {
        "loader": dict(loader),
        "endpoint": endpoint(),
        "revision": commit,
        "fingerprint": ds._fingerprint,
        "num_rows": len(ds),
        "columns": list(ds.column_names),
        "features": {k: str(v) for k, v in ds.features.items()},
    }
    log.info("%s: %d rows, revision %s, fingerprint %s", key, len(ds), commit, ds._fingerprint)
    return manifest


def fetch_model_file(repo: str, filename: str, dest_dir) -> tuple[str, str | None]:
    """Download rule: ``hf_hub_download`` one file of a model repository; (local path, revision)."""
    from huggingface_hub import hf_hub_download

    got = hf_hub_download(repo_id=repo, filename=filename, local_dir=dest_dir)
    return got, _recorded_revision("model", repo)
