# tunejudge: instruction-tune GPT-2 and score every answer with an LLM judge.
#   snakemake --cores all --resources gpu=1                         offline default (config/config.yaml)
#   snakemake --cores all --resources gpu=1 --configfile config/paper.yaml   the study's settings
import os
import sys

from snakemake.utils import min_version, validate

min_version("9.0")


# The library is imported from this checkout, one way: by this process through sys.path, and by every
# job, whatever environment runs it (venv, conda env, cluster node), through PYTHONPATH below. No env
# installs it.
sys.path.insert(0, os.path.join(workflow.basedir, "src"))
from tunejudge.run.config import compose  # noqa: E402


configfile: "config/config.yaml"


# Snakemake merged the config files key by key; a corpus's loader, a download or a mix named in a
# later file must replace the earlier one whole (tunejudge.run.config), so compose them again that way:
# the default, each --configfile in order, then --config.
_composed = compose(
    [f for f in ["config/config.yaml"] if os.path.exists(f)] + list(workflow.config_settings.configfiles),
    workflow.config_settings.config,
)
config.clear()
config.update(_composed)


validate(config, "config/schema.yaml")
_pythonpath = [os.path.join(workflow.basedir, "src")] + os.environ.get("PYTHONPATH", "").split(os.pathsep)
os.environ.update(PYTHONPATH=os.pathsep.join(p for p in _pythonpath if p))
# Same config, same bytes: jobs get a fixed string-hash seed (RAGAS iterates sets of strings while it
# samples its scenarios), unless the user chose one.
os.environ.setdefault("PYTHONHASHSEED", "0")
# Jobs read the Hub from the cache the download rules (localrules) filled: a compute node without
# internet runs every other rule. The download scripts lift this for themselves.
os.environ.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/train.smk"
include: "rules/respond.smk"
include: "rules/judge.smk"
include: "rules/preference.smk"
include: "rules/report.smk"
include: "rules/preflight.smk"
include: "rules/meta_eval.smk"


rule all:
    input:
        all_targets(),
    default_target: True
