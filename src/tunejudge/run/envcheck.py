"""Check the conda envs against what their rules import, without conda.

Conda channels are out of reach on machines like ours, so `--sdm conda` cannot be run in the test
suite; this reads instead. For every rule with a `conda:` env and a `script:`, it follows the
script's imports through the tunejudge library (every `import`, also those inside functions, since
a rule may reach them), and asks, for each third-party module, whether a package listed in the env
file, or a dependency of one, installs it. Dependencies and module names come from the packages'
metadata in the running environment (the project venv, installed from requirements.lock).

    python -m tunejudge.run.envcheck            # every rule of the Snakefile; exit 1 on a gap
"""

from __future__ import annotations

import ast
import importlib.metadata as md
import os
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import yaml

# conda-forge names of packages whose PyPI name differs
CONDA_TO_PYPI = {"pytorch": "torch"}
# conda packages that are the interpreter or its tooling, not importable libraries
NOT_LIBRARIES = {"python", "pip", "setuptools", "wheel"}
PROJECT = "tunejudge"


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(spec: str) -> str | None:
    """The package a conda or pip requirement names ('datasets==5.0.1', 'pytorch>=2.2',
    'llama-cpp-python[server]==0.3.36'); None for options and paths ('-e ..')."""
    spec = spec.strip()
    if not spec or spec.startswith(("-", ".", "/", "file:")):
        return None
    m = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", spec.split("::")[-1])
    return canonical(m.group(0)) if m else None


@dataclass(frozen=True)
class Env:
    path: Path
    conda: tuple[str, ...]  # canonical names, as PyPI calls them
    pip: dict[str, str]  # canonical name -> pinned version ("" when not pinned)
    extras: dict[str, tuple[str, ...]]  # canonical name -> extras asked for ('llama-cpp-python[server]')

    @property
    def packages(self) -> set[str]:
        return set(self.conda) | set(self.pip)


def read_env(path: str | Path) -> Env:
    path = Path(path)
    doc = yaml.safe_load(path.read_text()) or {}
    conda, pip, extras = [], {}, {}
    for dep in doc.get("dependencies") or []:
        if isinstance(dep, dict):
            for spec in dep.get("pip") or []:
                name = _requirement_name(spec)
                if name:
                    m = re.search(r"==\s*([^\s;,]+)", spec)
                    pip[name] = m.group(1) if m else ""
                    x = re.search(r"\[([^\]]+)\]", spec)
                    if x:
                        extras[name] = tuple(e.strip() for e in x.group(1).split(","))
            continue
        name = _requirement_name(str(dep))
        if name and name not in NOT_LIBRARIES:
            conda.append(canonical(CONDA_TO_PYPI.get(name, name)))
    return Env(path, tuple(conda), pip, extras)


# --- what a script imports ---------------------------------------------------------------------


def _optional(handlers: list[ast.ExceptHandler]) -> bool:
    for h in handlers:
        names = [h.type] if not isinstance(h.type, ast.Tuple) else list(h.type.elts)
        if any(isinstance(n, ast.Name) and n.id in {"ImportError", "ModuleNotFoundError"} for n in names):
            return True
    return False


def imports_of(path: Path) -> set[str]:
    """Dotted names of every module a file imports (also `from a import b` as 'a.b', in case b is a
    module); imports guarded by `except ImportError` are left out: the code runs without them."""
    tree = ast.parse(path.read_text(), filename=str(path))
    guarded: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and _optional(node.handlers):
            for sub in node.body:
                guarded.update(id(n) for n in ast.walk(sub))
    out: set[str] = set()
    package = path.parent
    for node in ast.walk(tree):
        if id(node) in guarded:
            continue
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolved against the file's package by the caller
                base = ".".join(["." * node.level + (node.module or "")])
                out.update(f"{base}|{package}|{a.name}" for a in node.names)
            else:
                out.add(node.module)
                out.update(f"{node.module}.{a.name}" for a in node.names)
    return out


def _library_file(name: str, src: Path) -> Path | None:
    parts = name.split(".")
    mod = src.joinpath(*parts)
    for cand in (mod.with_suffix(".py"), mod / "__init__.py"):
        if cand.is_file():
            return cand
    return None


def _resolve_relative(entry: str, src: Path) -> list[str]:
    dots_mod, package, name = entry.split("|")
    level = len(dots_mod) - len(dots_mod.lstrip("."))
    pkg = Path(package)
    for _ in range(level - 1):
        pkg = pkg.parent
    base = ".".join(pkg.relative_to(src).parts)
    mod = dots_mod.lstrip(".")
    full = f"{base}.{mod}" if mod else base
    return [full, f"{full}.{name}"]


def third_party_imports(script: Path, src: Path) -> dict[str, list[str]]:
    """Top-level third-party module -> the files (script or library) that import it, following
    every tunejudge module the script reaches."""
    stdlib = set(sys.stdlib_module_names)
    seen: set[Path] = set()
    todo = [script]
    found: dict[str, list[str]] = {}
    while todo:
        f = todo.pop()
        if f in seen:
            continue
        seen.add(f)
        for name in sorted(imports_of(f)):
            names = _resolve_relative(name, src) if "|" in name else [name]
            for n in names:
                top = n.split(".")[0]
                if top == PROJECT:
                    lib = _library_file(n, src)
                    if lib is not None:
                        todo.append(lib)
                        # a module's package __init__ runs first
                        for i in range(1, len(n.split("."))):
                            init = _library_file(".".join(n.split(".")[:i]), src)
                            if init is not None:
                                todo.append(init)
                elif top not in stdlib and top != "__future__" and top != "snakemake":
                    where = str(f.relative_to(src.parent)) if f.is_relative_to(src.parent) else str(f)
                    found.setdefault(top, [])
                    if where not in found[top]:
                        found[top].append(where)
    return found


# --- what an env installs ----------------------------------------------------------------------


def _requires(dist: str, extras: tuple[str, ...] = ()) -> list[str]:
    """Packages a distribution needs, with the extras asked for, as its installed metadata says."""
    try:
        reqs = md.requires(dist) or []
    except md.PackageNotFoundError:
        return []
    from packaging.requirements import Requirement

    out = []
    for r in reqs:
        req = Requirement(r)
        if req.marker is not None and not any(req.marker.evaluate({"extra": e}) for e in ("", *extras)):
            continue
        out.append(canonical(req.name))
    return out


def installed_by(packages: Iterable[str], extras: dict[str, tuple[str, ...]] | None = None) -> set[str]:
    """The packages and everything they depend on."""
    extras = extras or {}
    out: set[str] = set()
    todo = [canonical(p) for p in packages]
    while todo:
        p = todo.pop()
        if p in out:
            continue
        out.add(p)
        todo.extend(_requires(p, extras.get(p, ())))
    return out


def module_providers() -> dict[str, set[str]]:
    """Top-level module -> canonical names of the installed distributions that provide it."""
    return {mod: {canonical(d) for d in dists} for mod, dists in md.packages_distributions().items()}


@dataclass(frozen=True)
class Gap:
    rule: str
    env: str
    module: str
    imported_by: tuple[str, ...]

    def __str__(self) -> str:
        return (f"rule {self.rule}: {self.env} installs nothing that provides `{self.module}` "
                f"(imported by {', '.join(self.imported_by)})")


def check_rule(rule: str, env: Env, script: Path, src: Path, providers: dict[str, set[str]]) -> list[Gap]:
    have = installed_by(env.packages, env.extras)
    gaps = []
    for mod, files in sorted(third_party_imports(script, src).items()):
        dists = providers.get(mod)
        if dists is None:
            # not installed here either; nobody can say which package it is: report it
            gaps.append(Gap(rule, str(env.path), mod, tuple(files)))
        elif not dists & have:
            gaps.append(Gap(rule, str(env.path), mod, tuple(files)))
    return gaps


def lock_mismatches(env: Env, lock: dict[str, str]) -> list[str]:
    """Pinned versions in the env that differ from requirements.lock's."""
    return [f"{env.path}: {name}=={v}, requirements.lock has {lock[name]}"
            for name, v in sorted(env.pip.items()) if v and name in lock and lock[name] != v]


def read_lock(path: str | Path) -> dict[str, str]:
    out = {}
    for line in Path(path).read_text().splitlines():
        m = re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", line)
        if m:
            out[canonical(m.group(1))] = m.group(2)
    return out


def workflow_rules(snakefile: str | Path) -> list[tuple[str, str | None, str | None]]:
    """(rule, conda env path, script path), paths relative to the Snakefile's directory, from
    Snakemake's own parse of the workflow (default config)."""
    snakefile = Path(snakefile).resolve()
    out = []
    saved_env, saved_path = dict(os.environ), list(sys.path)  # the Snakefile sets both for its jobs
    try:
        _parse_rules(snakefile, out)
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
        sys.path[:] = saved_path
    return out


def _parse_rules(snakefile: Path, out: list) -> None:
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import ResourceSettings

    with SnakemakeApi() as api:
        wf = api.workflow(resource_settings=ResourceSettings(), snakefile=snakefile, workdir=snakefile.parent)
        for r in wf._workflow.rules:
            here = Path(r.snakefile).parent
            env, script = ((str((here / p).resolve().relative_to(snakefile.parent)) if p else None)
                           for p in (r.conda_env, r.script))
            out.append((r.name, env, script))


def check_workflow(root: str | Path = ".") -> list[str]:
    """Every gap between the workflow's rules and their envs, as lines; empty when none."""
    root = Path(root).resolve()
    src = root / "src"
    providers = module_providers()
    lock = read_lock(root / "requirements.lock")
    problems: list[str] = []
    envs: dict[str, Env] = {}
    for rule, env_path, script in workflow_rules(root / "Snakefile"):
        if not env_path or not script:
            continue
        env = envs.setdefault(env_path, read_env(root / env_path))
        problems += [str(g) for g in check_rule(rule, env, root / script, src, providers)]
    for env in envs.values():
        problems += lock_mismatches(env, lock)
    return problems


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m tunejudge.run.envcheck", description=__doc__.split("\n\n")[0])
    ap.add_argument("root", nargs="?", default=".", help="the checkout (default: .)")
    args = ap.parse_args(argv)
    problems = check_workflow(args.root)
    for p in problems:
        print(f"ERROR {p}", file=sys.stderr)
    if not problems:
        print("envcheck: every rule's env provides what its script imports")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
