"""One builder per source: corpus rows (a ``datasets.Dataset`` or any rows) -> instruction records."""

from .builders import BUILDERS, build
from .load import load_corpus

__all__ = ["BUILDERS", "build", "load_corpus"]
