#!/usr/bin/env bash
# The CUDA figures of the generation and training-memory benchmarks, at the study's scale:
# gpt2-medium, 100 prompts x 256 new tokens; effective batch 8 at 1,024 tokens on the 2,000+ mix.
#   bash bench/cuda.sh [OUTDIR]          (each benchmark's JSON line is also written to OUTDIR)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-bench-results}
mkdir -p "$out"
export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
py=${PYTHON:-python3}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
run() { local name=$1; shift; echo "== $name: $*"; "$py" "$@" | tee "$out/$name.log"; tail -n 1 "$out/$name.log" > "$out/$name.json"; }
run gen_fp32  bench/generation.py --size gpt2-medium --prompts 100 --new-tokens 256 --device cuda --naive-prompts 4
run gen_bf16  bench/generation.py --size gpt2-medium --prompts 100 --new-tokens 256 --device cuda --naive-prompts 4 --dtype bfloat16
run mem_micro2_ckpt bench/train_memory.py --size gpt2-medium --device cuda --steps 4 --micro 2
run mem_micro8_nockpt bench/train_memory.py --size gpt2-medium --device cuda --steps 4 --micro 8 --no-checkpointing
