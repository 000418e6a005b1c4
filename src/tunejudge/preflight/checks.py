"""Preflight's checks: the outside world a run needs answers, before money is spent. Sends no paid
request: the API key is checked by listing the endpoint's models (free), the Hub by reading each
repository's revision, each download URL by a HEAD request."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ..errors import TunejudgeError
from ..run import hub


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


def check_key(cfg: dict) -> Check:
    j = cfg["judge"]
    if j["backend"] == "local":
        return Check("api key", True, "local backend: no key needed")
    var = j["openai"].get("api_key_env") or "OPENAI_API_KEY"
    if os.environ.get(var):
        return Check("api key", True, f"${var} is set")
    return Check("api key", False, f"${var} is not set: export {var}=... (it is read from the environment only)")


def check_endpoint(cfg: dict, timeout_s: float = 15.0) -> Check:
    """List the endpoint's models (free): the key works, and the judge's model is served."""
    j = cfg["judge"]
    if j["backend"] == "local":
        return Check("endpoint", True, "local backend: llama-cpp-python on 127.0.0.1, started per job")
    base = (j["openai"].get("base_url") or "https://api.openai.com/v1").rstrip("/")
    key = os.environ.get(j["openai"].get("api_key_env") or "OPENAI_API_KEY", "")
    req = urllib.request.Request(f"{base}/models", headers={"Authorization": f"Bearer {key}"})
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            ids = [m.get("id") for m in json.loads(resp.read()).get("data", [])]
    except urllib.error.HTTPError as e:
        what = {401: "refused the key (401): check the key in $" + (j["openai"].get("api_key_env") or "OPENAI_API_KEY"),
                403: "refused access (403): the key's project may not have this model",
                404: "has no /models route (404): check judge.openai.base_url"}.get(e.code, f"answered HTTP {e.code}")
        return Check("endpoint", False, f"{base} {what}")
    except (OSError, ValueError) as e:
        return Check("endpoint", False, f"{base} cannot be reached ({type(e).__name__}: {str(e)[:150]}); "
                     "check judge.openai.base_url and the network")
    wanted = [j["openai"]["model"]] + sorted({s["generate"]["embeddings_model"] for s in cfg["sources"].values()
                                              if (s.get("generate") or {}).get("embeddings_model")})
    missing = [m for m in wanted if ids and m not in ids]
    if missing:
        return Check("endpoint", False, f"{base} does not serve {missing}; it serves {ids[:10]}")
    return Check("endpoint", True, f"{base} answers; serves {', '.join(wanted)}")


def check_hub(loaders: dict, model_repos: dict, done: set) -> list[Check]:
    """Each Hub repository the run downloads (skipped: those already downloaded). ``model_repos``: key ->
    (repository, revision) of the model repositories (GPT-2 weights, transformers bases)."""
    out = []
    todo = [("dataset", key, loader["path"], loader.get("revision")) for key, loader in loaders.items()
            if key not in done]
    todo += [("model", key, repo, rev) for key, (repo, rev) in model_repos.items() if key not in done]
    for kind, key, repo, rev in todo:
        try:
            out.append(Check(f"hub {key}", True, f"{hub.endpoint()}: {repo} at revision {hub.revision(kind, repo, rev)[:12]}"))
        except Exception as e:
            out.append(Check(f"hub {key}", False, f"{hub.endpoint()}: {repo}: {type(e).__name__}: "
                             f"{str(e).splitlines()[0][:150]}"))
    for key in sorted(done & (set(loaders) | set(model_repos))):
        out.append(Check(f"hub {key}", True, "downloaded already"))
    return out


def check_url(url: str, dest: Path, timeout_s: float = 15.0) -> Check:
    if dest.exists():
        return Check(f"download {dest.name}", True, f"{dest} present")
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout_s):
            return Check(f"download {dest.name}", True, f"{url} answers")
    except (OSError, ValueError) as e:
        return Check(f"download {dest.name}", False, f"{url} cannot be fetched ({type(e).__name__}: {str(e)[:120]})")


def check_engines(cfg: dict) -> list[Check]:
    """What the run's models need of this machine's software before any job runs: bitsandbytes' 4 bits for a
    QLoRA model (on the training device), vLLM and a GPU for generation.engine vllm, torch.distributed for a
    training over several processes (their GPUs are the cluster job's to have: said, not checked)."""
    out = []
    qlora = [m for m, spec in cfg["models"].items() if spec.get("finetune") == "qlora"]
    if qlora:
        from importlib.metadata import version

        from ..models.device import pick_device
        from ..models.fourbit import four_bit_missing

        device = pick_device((cfg.get("train") or {}).get("device", "auto"))
        missing = four_bit_missing(device)
        out.append(Check("qlora", missing is None,
                         f"{', '.join(qlora)}: 4-bit NF4 on {device.type} with bitsandbytes "
                         f"{version('bitsandbytes')}" if missing is None
                         else f"{', '.join(qlora)}: finetune qlora, and {missing}"))
    if (cfg.get("generation") or {}).get("engine") == "vllm":
        from ..models.vllm import vllm_missing

        missing = vllm_missing()
        out.append(Check("vllm", missing is None, "generation.engine vllm: installed, a CUDA GPU visible"
                         if missing is None else f"generation.engine vllm: {missing}"))
    multi = {m: int({**(cfg.get("train") or {}), **(spec.get("train") or {})}.get("processes", 1))
             for m, spec in cfg["models"].items() if not spec.get("endpoint")}
    multi = {m: n for m, n in multi.items() if n > 1}
    if multi:
        import torch

        ok = torch.distributed.is_available()
        gpus = torch.cuda.device_count()
        out.append(Check("processes", ok, ", ".join(f"{m}: {n}" for m, n in multi.items())
                         + f" processes (torchrun; this machine has {gpus} GPUs: a cluster job gets its own)"
                         if ok else "torch.distributed is not available in this torch build"))
    return out


def failed(checks: list[Check]) -> list[Check]:
    return [c for c in checks if not c.ok]


def ensure_ok(checks: list[Check]) -> None:
    bad = failed(checks)
    if bad:
        raise TunejudgeError("preflight failed: " + "; ".join(f"{c.name}: {c.detail}" for c in bad))


def run_checks(cfg: dict, hub_loaders: dict, model_repos: dict, downloads: list) -> list[Check]:
    """Every check of a run: the key, the endpoint, each Hub repository not downloaded yet (``hub_loaders``:
    dataset key -> loader; ``model_repos``: key -> (repository, revision, the download's marker file)), and
    each download URL whose file is not there yet (``downloads``: (url, destination) pairs)."""
    done = {k for k in hub_loaders if Path(f"data/hub/{k}.json").exists()}
    done |= {key for key, (_, _, marker) in model_repos.items() if Path(marker).exists()}
    checks = [check_key(cfg), check_endpoint(cfg), *check_engines(cfg)]
    checks += check_hub(hub_loaders, {k: (repo, rev) for k, (repo, rev, _) in model_repos.items()}, done)
    checks += [check_url(url, Path(dest)) for url, dest in downloads]
    return checks
