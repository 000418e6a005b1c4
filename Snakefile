# tunejudge: instruction-tune GPT-2 and score every answer with an LLM judge.
#   snakemake --cores all --resources gpu=1                         offline default (config/config.yaml)
#   snakemake --cores all --resources gpu=1 --configfile config/paper.yaml   the study's settings
import os
import sys

from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config/config.yaml"


validate(config, "config/schema.yaml")

# The library is imported from this checkout: by this process, and by every job whatever
# environment runs it (venv, conda, cluster node).
sys.path.insert(0, os.path.join(workflow.basedir, "src"))
_pythonpath = [os.path.join(workflow.basedir, "src")] + os.environ.get("PYTHONPATH", "").split(os.pathsep)
os.environ.update(PYTHONPATH=os.pathsep.join(p for p in _pythonpath if p))
# Same config, same bytes: jobs get a fixed string-hash seed (RAGAS iterates sets of strings while it
# samples its scenarios), unless the user chose one.
os.environ.setdefault("PYTHONHASHSEED", "0")


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/train.smk"
include: "rules/respond.smk"
include: "rules/judge.smk"
include: "rules/report.smk"


rule all:
    input:
        all_targets(),
    default_target: True
