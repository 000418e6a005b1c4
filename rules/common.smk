# Shared helpers: names, wildcard constraints and the targets of `all`. Wiring only.
from pathlib import Path

SOURCES = list(config["sources"])
EXPERIMENTS = list(config["experiments"])
LOGS = "results/logs"
BENCH = "results/benchmarks"


wildcard_constraints:
    source="|".join(SOURCES),
    experiment="|".join(EXPERIMENTS),


def source_download(source):
    return config["sources"][source].get("download")


def source_files(wildcards):
    """Local files a source's builder reads: its download, or the loader's data_files."""
    spec = config["sources"][wildcards.source]
    if spec.get("download"):
        return [f"data/raw/{wildcards.source}/{spec['download']['file']}"]
    files = spec["loader"].get("data_files") or []
    return [files] if isinstance(files, str) else list(files)


def split_outputs():
    return ["data/splits/test.json"] + expand(
        "data/splits/{experiment}/{part}.json", experiment=EXPERIMENTS, part=["train", "val"]
    )


def all_targets():
    return split_outputs()
