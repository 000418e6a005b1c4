"""Corpora load through ``datasets.load_dataset``: Hub datasets and local sample files alike.

The Hub itself (endpoint, revisions, offline switches, model files) is ``tunejudge.run.hub``, which
imports no ``datasets``: the model rules use it in an env without it.
"""

from __future__ import annotations

import logging
import os
import re

from ..errors import ConfigError, DataError, TunejudgeError
from ..run.hub import endpoint, is_hub, recorded_revision

log = logging.getLogger(__name__)


def load_corpus(loader: dict, *, limit: int | None = None, select: str = "shuffle", seed: int = 123,
                key: str = "loader"):
    """``datasets.load_dataset(**loader)``, then ``limit`` rows (seeded shuffle, or the first rows).

    ``loader`` holds load_dataset's own arguments, e.g. ``{path: abisee/cnn_dailymail, name: 3.0.0,
    split: train}`` for the Hub or ``{path: json, data_files: data/samples/cnn_dailymail.jsonl,
    split: train}`` for a local file: one call, only the path differs. ``key`` names the loader in
    the config for error messages (``sources.sst2.loader``).
    """
    ds = load_dataset(loader, key)
    n = len(ds)
    if limit is not None and n > limit:
        if select == "shuffle":
            ds = ds.shuffle(seed=seed).select(range(limit))
        elif select == "first":
            ds = ds.select(range(limit))
        else:
            raise ConfigError(f"select: unknown value {select!r} (shuffle or first)")
    log.info("loaded %d of %d rows from %s", len(ds), n, loader.get("data_files") or loader["path"])
    return ds


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


def fetch_dataset(loader: dict, key: str) -> dict:
    """Download rule: load the split from the Hub (filling the cache); return its manifest.

    The repository's own files are read; ``datasets`` would also ask the Hub's dataset viewer
    (``datasets-server.<endpoint>``) for the infos of its parquet export, a second service a mirror
    rarely has and the data does not need, so that is off.
    """
    import datasets

    datasets.config.USE_PARQUET_EXPORT = False
    # opt-in only, as for every usage ping (tunejudge.run.telemetry): a user who exported it keeps it
    datasets.config.HF_UPDATE_DOWNLOAD_COUNTS = (
        os.environ.get("HF_UPDATE_DOWNLOAD_COUNTS", "false").upper() in datasets.config.ENV_VARS_TRUE_VALUES)
    ds = load_dataset(loader, key)
    commit = recorded_revision("dataset", loader["path"], loader.get("revision"))
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
