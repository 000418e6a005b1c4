"""The conda envs provide what their rules import (read, since conda channels are unreachable here),
and jobs import the library from the checkout, not from an env."""

import os
import subprocess
import sys
from pathlib import Path

from tunejudge.run import envcheck

ROOT = Path(__file__).resolve().parents[1]


def test_every_rule_env_provides_its_imports():
    before = dict(os.environ)
    assert envcheck.check_workflow(ROOT) == []
    assert dict(os.environ) == before  # the Snakefile's settings for its jobs stay out of this process


def test_a_rule_whose_env_lacks_an_import_is_named_with_the_importing_file(tmp_path):
    env = tmp_path / "data.yaml"
    text = (ROOT / "envs/data.yaml").read_text().replace("      - matplotlib==3.11.2\n", "")
    assert text != (ROOT / "envs/data.yaml").read_text()
    env.write_text(text)
    gaps = envcheck.check_rule("plots", envcheck.read_env(env), ROOT / "scripts/plots.py", ROOT / "src",
                               envcheck.module_providers())
    assert [g.module for g in gaps] == ["matplotlib"]
    assert "src/tunejudge/analysis/plots.py" in gaps[0].imported_by
    assert "rule plots" in str(gaps[0]) and str(env) in str(gaps[0])


def test_imports_are_followed_through_the_library_and_guarded_ones_are_optional(tmp_path):
    src = tmp_path / "src"
    pkg = src / "tunejudge"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("import yaml\n")
    (pkg / "sub" / "deep.py").write_text("from . import helper\n\ndef f():\n    import tqdm\n")
    (pkg / "sub" / "helper.py").write_text("try:\n    import not_installed_anywhere\nexcept ImportError:\n"
                                           "    pass\nimport numpy.linalg\n")
    script = tmp_path / "script.py"
    script.write_text("import json\nfrom tunejudge.sub.deep import f\n")
    found = envcheck.third_party_imports(script, src)
    assert set(found) == {"yaml", "numpy", "tqdm"}
    assert found["numpy"] == ["src/tunejudge/sub/helper.py"]


def test_conda_names_extras_and_lock_pins_are_read(tmp_path):
    env = tmp_path / "e.yaml"
    env.write_text("dependencies:\n  - python=3.11\n  - pip\n  - pytorch>=2.2\n  - pip:\n"
                   "      - llama-cpp-python[server]==0.3.36\n      - tqdm==0.0.1\n      - -e ..\n")
    e = envcheck.read_env(env)
    assert e.conda == ("torch",) and e.extras == {"llama-cpp-python": ("server",)}
    lock = envcheck.read_lock(ROOT / "requirements.lock")
    assert envcheck.lock_mismatches(e, lock) == [f"{env}: tqdm==0.0.1, requirements.lock has {lock['tqdm']}"]
    # the server extra's own dependencies count as installed (the judge starts `python -m llama_cpp.server`)
    assert "uvicorn" in envcheck.installed_by(["llama-cpp-python"], {"llama-cpp-python": ("server",)})
    assert "uvicorn" not in envcheck.installed_by(["llama-cpp-python"])


def test_a_job_imports_the_library_from_the_checkout_whatever_its_env(tmp_path):
    """One way for jobs to reach the library: the Snakefile puts the checkout's src/ first on every job's
    PYTHONPATH (venv, conda env or cluster node alike; no env installs it). An env without tunejudge
    installed imports the checkout's."""
    snakefile = (ROOT / "Snakefile").read_text()
    assert 'os.environ.update(PYTHONPATH=' in snakefile and 'os.path.join(workflow.basedir, "src")' in snakefile
    assert not list((ROOT / "envs").glob("*.post-deploy.sh"))  # no second way
    uv = Path(sys.executable).with_name("uv")
    env = tmp_path / "env"
    subprocess.run([str(uv), "venv", "-q", "--python", sys.executable, str(env)], check=True)
    clean = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    bare = subprocess.run([str(env / "bin/python"), "-c", "import tunejudge"], env=clean, cwd=tmp_path,
                          capture_output=True, text=True)
    assert bare.returncode != 0  # the env itself has no tunejudge
    out = subprocess.run([str(env / "bin/python"), "-c", "import tunejudge.errors as m; print(m.__file__)"], check=True,
                         env={**clean, "PYTHONPATH": str(ROOT / "src")}, cwd=tmp_path, capture_output=True,
                         text=True).stdout.strip()
    assert Path(out) == ROOT / "src/tunejudge/errors.py"
