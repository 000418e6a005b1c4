"""Corpora load through ``datasets.load_dataset``: Hub datasets and local sample files alike."""

from __future__ import annotations

import logging

from ..errors import ConfigError, DataError

log = logging.getLogger(__name__)


def load_corpus(loader: dict, *, limit: int | None = None, select: str = "shuffle", seed: int = 123):
    """``datasets.load_dataset(**loader)``, then ``limit`` rows (seeded shuffle, or the first rows).

    ``loader`` holds load_dataset's own arguments, e.g. ``{path: abisee/cnn_dailymail, name: 3.0.0,
    split: train}`` for the Hub or ``{path: json, data_files: data/samples/cnn_dailymail.jsonl,
    split: train}`` for a local file: one call, only the path differs.
    """
    import datasets

    if "path" not in loader or "split" not in loader:
        raise ConfigError(f"loader {loader!r}: needs at least 'path' and 'split'")
    kwargs = dict(loader)
    path = kwargs.pop("path")
    try:
        ds = datasets.load_dataset(path, **kwargs)
    except (datasets.exceptions.DatasetGenerationError, ValueError) as e:
        where = kwargs.get("data_files") or path
        cause = e.__cause__ or e.__context__
        detail = f"{e}" + (f" ({type(cause).__name__}: {str(cause)[:300]})" if cause else "")
        raise DataError(where, problem=f"cannot be read by datasets.load_dataset: {detail}") from None
    except ConnectionError as e:
        raise DataError(path, problem=f"cannot reach the dataset ({e}); run with the offline default config "
                        "or place the files locally and point 'data_files' at them") from None
    n = len(ds)
    if limit is not None and n > limit:
        if select == "shuffle":
            ds = ds.shuffle(seed=seed).select(range(limit))
        elif select == "first":
            ds = ds.select(range(limit))
        else:
            raise ConfigError(f"select: unknown value {select!r} (shuffle or first)")
    log.info("loaded %d of %d rows from %s", len(ds), n, kwargs.get("data_files") or path)
    return ds
