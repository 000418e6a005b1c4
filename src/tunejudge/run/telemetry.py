"""Opt out of the usage tracking that deepeval and ragas switch on by default.

Call before importing either package. ``setdefault`` keeps a user's explicit choice: a user who
exports ``DEEPEVAL_TELEMETRY_OPT_OUT=0`` or ``RAGAS_DO_NOT_TRACK=false`` opts back in.
"""

from __future__ import annotations

import os

QUIET_ENV = {
    "DEEPEVAL_TELEMETRY_OPT_OUT": "1",  # deepeval's anonymous usage events
    "DEEPEVAL_UPDATE_WARNING_OPT_IN": "0",  # no PyPI version check at import
    "DEEPEVAL_DISABLE_DOTENV": "1",  # do not read a stray .env (keys come from our own config)
    "DEEPEVAL_GRPC_LOGGING": "0",
    "RAGAS_DO_NOT_TRACK": "true",  # ragas's usage tracking
    "ANONYMIZED_TELEMETRY": "False",  # chromadb, pulled in by some langchain paths
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_UPDATE_DOWNLOAD_COUNTS": "false",  # datasets' download-count ping (a HEAD to an S3 bucket)
}


def disable_telemetry() -> None:
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
