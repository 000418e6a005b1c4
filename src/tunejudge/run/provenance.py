"""``results/provenance.json``: what a run's results rest on, for a reader who must trust them.

The config as merged, each Hub corpus's repository revision and dataset fingerprint, each
downloaded file's sha256, every base's weights (repository, revision, sha256, perplexity check),
the judge model ids the endpoint reported, what computed each run's training and answers (device, dtype,
kernel path), and the versions of the packages that shape results.
"""

from __future__ import annotations

import platform
import subprocess
import sys
from collections import Counter
from importlib import metadata
from pathlib import Path

from ..io import read_json, read_jsonl, sha256_file

PACKAGES = ("tunejudge", "torch", "transformers", "peft", "gguf", "datasets", "huggingface-hub", "tiktoken", "deepeval",
            "ragas", "openai", "snakemake", "pandas", "numpy", "safetensors", "llama-cpp-python", "sentence-transformers")


def package_versions() -> dict:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_commit(repo_dir) -> str | None:
    try:
        proc = subprocess.run(["git", "-C", str(repo_dir), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None
    dirty = subprocess.run(["git", "-C", str(repo_dir), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True, timeout=10).stdout.strip()
    return proc.stdout.strip() + ("+dirty" if dirty else "")


def weights_digest(path) -> dict:
    """sha256 of a weights file, or of each weights file of a from_pretrained folder."""
    path = Path(path)
    if path.is_dir():
        return {"folder": str(path), "sha256": {p.name: sha256_file(p) for p in sorted(path.glob("*.safetensors"))}}
    return {"file": str(path), "sha256": sha256_file(path)}


def made_by(responses=(), histories=()) -> dict:
    """What computed each run's training and answers (device, dtype, kernel path, versions): the
    ``made_by`` each history and answers file records, by run."""
    out: dict = {}
    for kind, paths in (("train", histories), ("respond", responses)):
        for path in paths:
            doc = read_json(path)
            if doc.get("made_by"):
                out.setdefault(doc["model"], {})[kind] = doc["made_by"]
    return out


def collect(config: dict, *, manifests=(), downloads=(), bases: dict | None = None, judge_files=(),
            workflow_dir=None, responses=(), histories=()) -> dict:
    """``bases``: name -> {"label", "weights" (file or folder), "source" and "check" (json files or None)};
    ``responses`` and ``histories``: every run's answers and training history files."""
    served, judged = Counter(), Counter()
    for path in judge_files:
        for row in read_jsonl(path):
            judged[row["judge"]["model"]] += 1
            if row.get("served_by"):
                served[row["served_by"]] += 1
    return {
        "config": config,
        "datasets": [read_json(p) for p in manifests],
        "downloads": [{"file": str(p), "sha256": sha256_file(p)} for p in downloads],
        "bases": {name: {"label": b["label"], **weights_digest(b["weights"]),
                         "source": read_json(b["source"]) if b.get("source") else None,
                         "perplexity_check": read_json(b["check"]) if b.get("check") else None}
                  for name, b in (bases or {}).items()},
        "judge": {"backend": config["judge"]["backend"], "configured_models": dict(judged),
                  "reported_models": dict(served)},
        "made_by": made_by(responses, histories),
        "packages": package_versions(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "tunejudge_commit": git_commit(workflow_dir) if workflow_dir else None,
    }

