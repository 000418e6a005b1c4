"""Corpora load through ``datasets.load_dataset``: Hub datasets and local sample files alike."""

from __future__ import annotations

import logging

from ..errors import ConfigError

log = logging.getLogger(__name__)


def load_corpus(loader: dict, *, limit: int | None = None, select: str = "shuffle", seed: int = 123,
                key: str = "loader"):
    """``datasets.load_dataset(**loader)``, then ``limit`` rows (seeded shuffle, or the first rows).

    ``loader`` holds load_dataset's own arguments, e.g. ``{path: abisee/cnn_dailymail, name: 3.0.0,
    split: train}`` for the Hub or ``{path: json, data_files: data/samples/cnn_dailymail.jsonl,
    split: train}`` for a local file: one call, only the path differs. ``key`` names the loader in
    the config for error messages (``sources.sst2.loader``).
    """
    from ..hub import load_dataset

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
