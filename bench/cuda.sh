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
# Beyond one GPU (issue 36) and preference tuning (issue 35): a transformers base (SmolLM2 from the packaged
# GGUF unless MODEL names a from_pretrained folder or Hub id, e.g. an 8B on an 80 GB card)
model_args=${MODEL:+--model $MODEL}
run sft_vs_trl   bench/train_hf.py --device cuda --steps 20 --batch 16 --micro 8 $model_args
run dpo_vs_trl   bench/train_dpo.py --device cuda --steps 20 --batch 16 --micro 8 $model_args
run lora_qlora   bench/train_qlora.py --device cuda --steps 20 $model_args
gpus=$(nvidia-smi --query-gpu=name --format=csv,noheader | wc -l)
if [ "$gpus" -ge 2 ]; then
  run dist_ddp   bench/train_dist.py --device cuda --parallel ddp --steps 20 --batch 16 --micro 4 $model_args
  run dist_fsdp  bench/train_dist.py --device cuda --parallel fsdp --steps 20 --batch 16 --micro 4 $model_args
else
  echo "== dist_ddp, dist_fsdp: skipped (1 GPU; they compare 1 and 2 GPUs)"
fi
if "$py" -c "import vllm" 2>/dev/null; then
  run gen_vllm   bench/generation_vllm.py --prompts 100 --new-tokens 256 $model_args
else
  echo "== gen_vllm: skipped (vLLM is not installed: pip install vllm)"
fi
