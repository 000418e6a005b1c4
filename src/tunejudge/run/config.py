"""How config files combine: the default, then each ``--configfile`` in order, then ``--config``.

Snakemake merges config files key by key, recursively. For most settings that is what a user
wants (an override file names only what it changes), but not for a value that describes *one
thing* as a whole: a corpus's ``load_dataset`` arguments, a download, a mix. Merged key by key,
``{path: stanfordnlp/sst2, split: train}`` over the default's ``{path: json, data_files:
data/samples/sst2.jsonl, split: train}`` becomes a Hub id with the sample's local files, which
``datasets`` then looks for inside the Hub repository. So those values are replaced whole: the
last file that names one decides all of it. Everything else merges key by key, as in Snakemake.

No Snakemake here: the Snakefile calls :func:`compose` with the files Snakemake was given.
"""

from __future__ import annotations

import copy
import fnmatch
from collections.abc import Mapping
from pathlib import Path

import yaml

from ..errors import ConfigError

# Dotted paths (``*`` = any one key) whose values a later file replaces whole.
REPLACED_WHOLE = (
    "sources.*.loader",
    "sources.*.download",
    "sources.*.generate.articles",
    "split.test.mix",
    "split.test.counts",
    "experiments.*.mix",
    "experiments.*.counts",
    "judge.metrics",  # a list: Snakemake replaces lists too; named here so the rule is in one place
    "bases.*",  # a base is one model: a Hub id merged over a GGUF would be neither
    "models.*",  # a model is its base, experiment and fine-tuning: paper.yaml's {experiment: full} is GPT-2's
    "sweeps.*",  # a sweep is one table of points: two grids merged would be neither
    "meta_eval.*.loader",
)
# Keys that a later file may set alone on a value replaced whole, merged into it: asking for more seeds of
# a model (--config 'models={full: {replicates: 5}}', an override file) keeps the model's recipe.
MERGED_ALONE = {"models.*": ("seeds", "replicates")}
MERGED_ALONE_KEYS = {k for keys in MERGED_ALONE.values() for k in keys}
# Entries a later file removes by setting them to null (``models: {small: null}``: no model small).
DROPPED_BY_NULL = ("models.*",)


# Settings that decide how a step runs, not what it writes: they stay out of a rule's params, so
# that editing them (moving training to another device, saving resume states more often, a judge's
# concurrency, retries, budget or price list) reruns nothing. The scripts read them from the run's
# config. Dotted entries name nested keys.
RUNTIME_ONLY = {
    "train": ("device", "checkpoint_every", "trackers", "nodes"),
    "generation": ("device", "gpus"),
    "judge": ("in_flight", "timeout_s", "http_client", "max_retries", "backoff_initial_s", "backoff_max_s", "max_requests",
              "max_error_fraction", "max_cost", "tokens_per_minute", "cache", "prices", "local.startup_timeout_s", "openai.api_key_env",
              "openai.batch", "openai.batch_poll_s", "openai.batch_wait_s", "openai.batch_price_factor"),
}


# The judge settings of the run, not of one judge: a panel judge inherits everything else.
PER_RUN_JUDGE = ("panel", "pairwise", "controls")
PRIMARY_JUDGE = "primary"  # the judge section's own judge, in the panel's tables


def panel_judge(judge: Mapping, name: str | None) -> dict:
    """One judge's whole settings: the judge section's own (``name`` None or ``primary``), or a panel
    judge's: ``judge.panel.judges[name]`` merged over the section (its panel, pairwise and controls
    settings are the run's)."""
    if name in (None, PRIMARY_JUDGE):
        return copy.deepcopy(dict(judge))
    judges = (judge.get("panel") or {}).get("judges") or {}
    if name not in judges:
        raise ConfigError(f"config: judge.panel.judges has no judge {name!r} (it has {sorted(judges)})")
    return merge({k: v for k, v in judge.items() if k not in PER_RUN_JUDGE}, judges[name])


def split_runtime(section: str, settings: Mapping) -> tuple[dict, dict]:
    """(what changes outputs, what only changes how the step runs) of one config section."""
    runtime = RUNTIME_ONLY.get(section, ())

    def split(node: Mapping, prefix: str) -> tuple[dict, dict]:
        keep, run = {}, {}
        for k, v in node.items():
            dotted = f"{prefix}{k}"
            if dotted in runtime:
                run[k] = copy.deepcopy(v)
            elif isinstance(v, Mapping) and any(r.startswith(dotted + ".") for r in runtime):
                keep[k], sub = split(v, dotted + ".")
                if sub:
                    run[k] = sub
            else:
                keep[k] = copy.deepcopy(v)
        return keep, run

    return split(settings, "")


def with_runtime(section: str, settings: Mapping, config_section: Mapping) -> dict:
    """A rule's params (``settings``) with the run-only settings of the run's config put back."""
    return merge(settings, split_runtime(section, config_section)[1])


def _matches(path: tuple[str, ...], patterns) -> bool:
    dotted = ".".join(path)
    return any(fnmatch.fnmatchcase(dotted, pattern) and pattern.count(".") == dotted.count(".")
               for pattern in patterns)


def replaced_whole(path: tuple[str, ...]) -> bool:
    return _matches(path, REPLACED_WHOLE)


def merged_alone(path: tuple[str, ...], value: Mapping) -> bool:
    """Whether ``value`` sets only keys that :data:`MERGED_ALONE` lets a later file set alone at ``path``
    (the value keeps the rest; the later file's seeds or replicates replace the earlier one's)."""
    dotted = ".".join(path)
    for pattern, keys in MERGED_ALONE.items():
        if fnmatch.fnmatchcase(dotted, pattern) and pattern.count(".") == dotted.count("."):
            return bool(value) and set(value) <= set(keys)
    return False


def merge(base: Mapping, override: Mapping, _path: tuple[str, ...] = ()) -> dict:
    """``override`` over ``base``: mappings merge key by key, except at :data:`REPLACED_WHOLE`."""
    out = copy.deepcopy(dict(base))
    for key, value in override.items():
        path = (*_path, str(key))
        if value is None and _matches(path, DROPPED_BY_NULL):
            out.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(out.get(key), Mapping) and merged_alone(path, value):
            out[key] = {k: v for k, v in out[key].items() if k not in MERGED_ALONE_KEYS} | copy.deepcopy(dict(value))
        elif isinstance(value, Mapping) and isinstance(out.get(key), Mapping) and not replaced_whole(path):
            out[key] = merge(out[key], value, path)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_file(path) -> dict:
    try:
        data = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({e})") from None
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: a config file must hold a mapping at the top level")
    return dict(data)


def compose(files, overrides: Mapping | None = None) -> dict:
    """The config a run gets: ``files`` merged in order, then ``overrides`` (``--config k=v``)."""
    config: dict = {}
    for path in files:
        config = merge(config, load_file(path))
    return merge(config, overrides or {})
