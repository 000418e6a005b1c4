"""GPT-2's weights: tunejudge's checkpoints (config in the safetensors metadata), the Hub's
safetensors (Conv1D weights transposed on the way in and out), a seeded random init, and the
download of the Hub's files (no TensorFlow, no transformers)."""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path

import torch

from ...errors import TunejudgeError
from ..bases import HUB_REPOS
from .model import GPT2, GPTConfig, config_for

_HUB_TRANSPOSED = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
_HUB_IGNORED = (".attn.bias", ".attn.masked_bias")  # causal-mask buffers, not weights


def save_checkpoint(model: GPT2, path, extra_meta: dict | None = None) -> None:
    """tunejudge's checkpoint: state dict (tied head once) + config in the safetensors metadata."""
    from safetensors.torch import save_file

    from ...io import atomic_path

    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    meta = {"format": "tunejudge", "config": json.dumps(asdict(model.cfg))}
    meta.update({k: str(v) for k, v in (extra_meta or {}).items()})
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=meta)


def read_metadata(path) -> dict:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return dict(f.metadata() or {})


def _open_state(path) -> tuple[dict, dict]:
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise TunejudgeError(f"{path}: checkpoint not found")
    try:
        return load_file(str(path)), read_metadata(path)
    except Exception as e:  # safetensors raises its own error types on truncated or foreign files
        raise TunejudgeError(f"{path}: not a readable safetensors checkpoint ({e})") from None


def hub_to_tunejudge(state: dict) -> dict:
    """Map a Hub GPT-2 state dict (``transformer.`` prefix optional, Conv1D weights) to ours."""
    out = {}
    for key, value in state.items():
        k = key.removeprefix("transformer.")
        if k.endswith(_HUB_IGNORED) or k == "lm_head.weight":
            continue
        if k.endswith(_HUB_TRANSPOSED):
            value = value.t()
        out[k] = value.contiguous()
    return out


def tunejudge_to_hub(state: dict, cfg: GPTConfig) -> dict:
    """The inverse of :func:`hub_to_tunejudge`: the Hub's layout (no ``transformer.`` prefix, Conv1D
    weights stored (in, out), the causal-mask buffers ``h.<i>.attn.bias``), as in
    ``openai-community/gpt2``'s ``model.safetensors``."""
    out = {}
    for k, value in state.items():
        out[k] = (value.t() if k.endswith(_HUB_TRANSPOSED) else value).contiguous()
    mask = torch.tril(torch.ones(cfg.n_ctx, cfg.n_ctx, dtype=torch.float32)).view(1, 1, cfg.n_ctx, cfg.n_ctx)
    for i in range(cfg.n_layer):
        out[f"h.{i}.attn.bias"] = mask.clone()
    return out


def load_state(model: GPT2, state: dict, path) -> None:
    """Copy ``state`` into ``model``; any missing, unexpected or mis-shaped tensor stops with names."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise TunejudgeError(
            f"{path}: checkpoint does not fit this model: "
            + (f"missing {missing[:3]}{'...' if len(missing) > 3 else ''} " if missing else "")
            + (f"unexpected {unexpected[:3]}{'...' if len(unexpected) > 3 else ''}" if unexpected else "")
        )
    for k in own:
        v = state[k]
        if tuple(v.shape) != tuple(own[k].shape):
            raise TunejudgeError(
                f"{path}: tensor {k} has shape {tuple(v.shape)} in the checkpoint but the model "
                f"expects {tuple(own[k].shape)} (checkpoint and model size differ)"
            )
    model.load_state_dict(state, strict=True)


def load_model(path, cfg: GPTConfig | None = None, device="cpu", dtype=torch.float32) -> GPT2:
    """A model from a tunejudge checkpoint (config from its metadata) or a Hub one (``cfg`` given)."""
    state, meta = _open_state(path)
    if meta.get("format") == "tunejudge":
        saved = GPTConfig(**json.loads(meta["config"]))
        if cfg is not None and cfg != saved:
            diff = {k: (getattr(saved, k), getattr(cfg, k)) for k in asdict(cfg) if getattr(saved, k) != getattr(cfg, k)}
            raise TunejudgeError(f"{path}: checkpoint config differs from the requested one: {diff} (checkpoint, requested)")
        cfg = saved
    else:
        if cfg is None:
            raise TunejudgeError(f"{path}: a Hub checkpoint needs the model size to load into")
        state = hub_to_tunejudge(state)
    model = GPT2(cfg)
    load_state(model, state, path)
    return model.to(device=device, dtype=dtype)


def init_random(size: str, seed: int) -> GPT2:
    torch.manual_seed(seed)
    return GPT2(config_for(size))


def download_hub_weights(size: str, dest) -> dict:
    """The Hub's GPT-2 safetensors, once, into ``dest`` (no TensorFlow, no transformers).

    Returns where they came from: repository, revision, endpoint and the file's sha256.
    """
    if size not in HUB_REPOS:
        raise TunejudgeError(f"no Hub weights for size {size!r} (Hub sizes: {', '.join(HUB_REPOS)})")
    repo = HUB_REPOS[size]
    from ...io import atomic_path, sha256_file
    from ...run import hub

    try:
        with atomic_path(dest) as tmp:
            got, revision = hub.fetch_model_file(repo, "model.safetensors", Path(tmp).parent / f".{size}-dl")
            Path(got).replace(tmp)
            digest = sha256_file(tmp)
    except Exception as e:  # network, auth, missing file: all end the same way for the user
        raise TunejudgeError(
            f"could not download {repo}/model.safetensors from {hub.endpoint()} ({type(e).__name__}: "
            f"{str(e)[:200]}). Without network: fetch that file elsewhere and place it at {dest}, or set "
            "gpt2.weights: random."
        ) from None
    finally:
        shutil.rmtree(Path(dest).parent / f".{size}-dl", ignore_errors=True)
    return {"repo": repo, "file": "model.safetensors", "revision": revision, "endpoint": hub.endpoint(),
            "sha256": digest}
