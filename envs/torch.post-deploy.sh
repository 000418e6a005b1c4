#!/usr/bin/env bash
# Snakemake runs this once, inside the new env, after creating it (--sdm conda): it installs the
# tunejudge library from the checkout the workflow runs from, editable, so jobs run the checkout's
# code as it is now. TUNEJUDGE_ROOT is set by the Snakefile.
set -euo pipefail
python -m pip install --quiet --no-deps --no-build-isolation -e "${TUNEJUDGE_ROOT:?the Snakefile sets it; run this through snakemake --sdm conda}"
