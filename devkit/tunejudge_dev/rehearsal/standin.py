"""A local stand-in for the Hugging Face Hub: git repositories in the Hub's own layouts.

``build_mirror`` lays out, under ``<out>/datasets/<org>/<name>`` and ``<out>/models/<org>/<name>``,
one git repository (branch ``main``) per corpus, per GPT-2 size and per transformers base named by
Hub id, as the Hub holds them:
parquet shards per config and split (``3.0.0/test-00000-of-00001.parquet``,
``data/train-00000-of-00001.parquet``) with ``datasets``' features (class labels, SQuAD's
``answers`` as a dict of lists) in their metadata, a README whose YAML ``configs:`` maps config
names and splits to those files, and ``model.safetensors`` in the Hub's key layout. Large files
are git-LFS pointers with their objects under ``.git/lfs/objects``, as on the Hub. ``olah`` (a
self-hosted Hub mirror) serves that folder over the Hub's HTTP API, so ``datasets`` and
``huggingface_hub`` run their real code against it with only ``HF_ENDPOINT`` changed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import yaml

from .corpora import HubDataset

GIT_ENV = {"GIT_AUTHOR_NAME": "tunejudge rehearsal", "GIT_AUTHOR_EMAIL": "rehearsal@localhost",
           "GIT_COMMITTER_NAME": "tunejudge rehearsal", "GIT_COMMITTER_EMAIL": "rehearsal@localhost",
           "GIT_AUTHOR_DATE": "2024-01-01T00:00:00Z", "GIT_COMMITTER_DATE": "2024-01-01T00:00:00Z"}
LFS_SUFFIXES = (".parquet", ".safetensors", ".bin")


def _lfs_pointer(repo_dir: Path, rel: str, data_path: Path) -> None:
    """Replace ``rel``'s content by a git-LFS pointer; the content goes to .git/lfs/objects."""
    digest = hashlib.sha256(data_path.read_bytes()).hexdigest()
    size = data_path.stat().st_size
    obj = repo_dir / ".git" / "lfs" / "objects" / digest[:2] / digest[2:4] / digest
    obj.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(data_path), obj)
    (repo_dir / rel).write_text(f"version https://git-lfs.github.com/spec/v1\noid sha256:{digest}\nsize {size}\n")


def _commit(repo_dir: Path, files: dict[str, Path | str | bytes], message: str) -> str:
    """A fresh git repository at ``repo_dir`` holding ``files`` (relative path -> content or a file to move)."""
    if repo_dir.exists():
        shutil.rmtree(repo_dir)
    repo_dir.mkdir(parents=True)
    env = {**os.environ, **GIT_ENV}
    run = dict(cwd=repo_dir, env=env, check=True, capture_output=True)
    subprocess.run(["git", "init", "-q", "-b", "main"], **run)
    lfs = []
    for rel, content in files.items():
        dest = repo_dir / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, Path):
            staged = dest.with_name(dest.name + ".content")
            shutil.copyfile(content, staged)
            if rel.endswith(LFS_SUFFIXES):
                _lfs_pointer(repo_dir, rel, staged)
                lfs.append(rel)
            else:
                staged.replace(dest)
        else:
            dest.write_bytes(content if isinstance(content, bytes) else content.encode())
    attrs = "".join(f"*{s} filter=lfs diff=lfs merge=lfs -text\n" for s in LFS_SUFFIXES)
    (repo_dir / ".gitattributes").write_text(attrs)
    subprocess.run(["git", "add", "-A"], **run)
    subprocess.run(["git", "commit", "-q", "-m", message], **run)
    return subprocess.run(["git", "rev-parse", "HEAD"], **run, text=True).stdout.strip()


def dataset_readme(ds: HubDataset) -> str:
    """The Hub's dataset card front matter: features and the config -> split -> files map."""
    from datasets import DatasetInfo

    info = DatasetInfo(features=ds.features)._to_yaml_dict()
    info["config_name"] = ds.config
    info["splits"] = [{"name": s, "num_examples": len(rows)} for s, rows in ds.splits.items()]
    card = {
        "dataset_info": info,
        "configs": [{"config_name": ds.config, "default": True,
                     "data_files": [{"split": s, "path": f"{ds.folder}/{s}-*"} for s in ds.splits]}],
    }
    return f"---\n{yaml.safe_dump(card, sort_keys=False)}---\n\n# {ds.repo}\n\nA local stand-in for rehearsals.\n"


def build_dataset_repo(ds: HubDataset, mirrors: Path, scratch: Path) -> str:
    from datasets import Dataset

    files: dict[str, Path | str] = {"README.md": dataset_readme(ds)}
    for split, rows in ds.splits.items():
        shard = scratch / ds.repo.replace("/", "--") / f"{split}.parquet"
        shard.parent.mkdir(parents=True, exist_ok=True)
        Dataset.from_list(rows, features=ds.features).to_parquet(str(shard))
        files[f"{ds.folder}/{split}-00000-of-00001.parquet"] = shard
    return _commit(mirrors / "datasets" / ds.repo, files, f"{ds.repo}: {', '.join(ds.splits)}")


def build_gpt2_repo(size: str, mirrors: Path, scratch: Path, *, seed: int = 0, weights: Path | None = None,
                    repo: str | None = None) -> str:
    """``openai-community/<size>`` (or ``repo``): the given Hub-layout file, or a seeded random init in
    that layout."""
    from safetensors.torch import save_file

    from tunejudge.models.bases import HUB_REPOS
    from tunejudge.models.gpt2.model import config_for
    from tunejudge.models.gpt2.weights import init_random, tunejudge_to_hub

    cfg = config_for(size)
    path = weights
    if path is None:
        path = scratch / f"{size}.safetensors"
        path.parent.mkdir(parents=True, exist_ok=True)
        state = tunejudge_to_hub(init_random(size, seed).state_dict(), cfg)
        save_file(state, str(path), metadata={"format": "pt"})
    config = {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": cfg.vocab_size,
              "n_ctx": cfg.n_ctx, "n_positions": cfg.n_ctx, "n_embd": cfg.n_embd, "n_layer": cfg.n_layer,
              "n_head": cfg.n_head, "layer_norm_epsilon": cfg.layer_norm_eps}
    repo = repo or HUB_REPOS[size]
    files = {"config.json": json.dumps(config, indent=2), "model.safetensors": path,
             "README.md": f"# {repo}\n\nA local stand-in for rehearsals: {'given weights' if weights else 'random init'}.\n"}
    return _commit(mirrors / "models" / repo, files, f"{repo}")


def build_model_repo(repo: str, folder: Path, mirrors: Path) -> str:
    """A transformers model repository (``models/<org>/<name>``) holding a ``from_pretrained`` folder's
    files: config, tokenizer files, weights as git-LFS objects, as on the Hub."""
    files: dict[str, Path | str] = {p.name: p for p in sorted(Path(folder).iterdir()) if p.is_file()}
    files.setdefault("README.md", f"# {repo}\n\nA local stand-in for rehearsals.\n")
    return _commit(mirrors / "models" / repo, files, repo)


def build_mirror(datasets: list[HubDataset], out, *, gpt2_sizes=(), seed: int = 0,
                 transformers_repos: tuple[str, ...] = ()) -> dict:
    """Every repository under ``out``; returns repo id -> commit. ``transformers_repos``: model
    repositories to hold a small Llama that has learned plain English (tunejudge_dev.testing.tiny): a
    pretrained-looking base that passes the weights check, in a Hub model repository's layout."""
    from tunejudge.models.sanity import PARAGRAPH

    from ..testing.tiny import tiny_llama

    out = Path(out)
    scratch = out / ".scratch"
    commits = {}
    try:
        for ds in datasets:
            commits[f"datasets/{ds.repo}"] = build_dataset_repo(ds, out, scratch)
        for size in gpt2_sizes:
            commits[f"models/openai-community/{size}"] = build_gpt2_repo(size, out, scratch, seed=seed)
        for repo in transformers_repos:
            folder = tiny_llama(scratch / repo.replace("/", "--"), seed=seed, teach=PARAGRAPH, steps=80)
            commits[f"models/{repo}"] = build_model_repo(repo, folder, out)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return commits


def olah_config(mirrors, repos_path, port: int, host: str = "127.0.0.1") -> str:
    """olah's TOML: serve ``mirrors`` offline on ``host:port`` (no upstream Hub is ever asked)."""
    return (
        "[basic]\n"
        f'host = "{host}"\nport = {port}\n'
        f'repos-path = "{Path(repos_path).resolve()}"\n'
        f'mirror-netloc = "{host}:{port}"\nmirror-lfs-netloc = "{host}:{port}"\n'
        f'mirrors-path = ["{Path(mirrors).resolve()}"]\n'
        "[accessibility]\noffline = true\n"
    )
