"""What the project claims about Python agrees with what it resolves and tests."""

import re
import sys

from conftest import REPO


def test_requires_python_matches_the_lock():
    pyproject = (REPO / "pyproject.toml").read_text()
    claim = re.search(r'requires-python = ">=(\d+\.\d+)"', pyproject).group(1)
    lock_python = re.search(r"^LOCK_PYTHON := (\d+\.\d+)$", (REPO / "Makefile").read_text(), re.M).group(1)
    assert claim == lock_python == f"{sys.version_info[0]}.{sys.version_info[1]}"  # the suite runs on it
    assert re.search(rf'target-version = "py{claim.replace(".", "")}"', pyproject)
