#!/usr/bin/env bash
# Runs on the GPU machine (PyTorch installed, no .NET, no network), from the repo root, with .gpu
# carried: trains the tiny preset with --device cuda, then the train-step benchmark and its PyTorch
# twin in the same call. Results go to $OUT.
set -uo pipefail
source bench/gpu/env.sh
timeout 240 .gpu/app/loom demo --device cuda --run-dir "$OUT/demo" 2>&1 | tee "$OUT/demo.log"
timeout 120 .gpu/app/loom-bench train-step --device cuda --steps 50 2>/dev/null | tee "$OUT/bench-loom.md"
PYTHONUNBUFFERED=1 timeout 120 python3 bench/peers/train_step.py --device cuda --steps 50 2>/dev/null | tee "$OUT/bench-pytorch.md"
# GPT-2-small shape (12 layers, d 768, T 1024, vocab 50304), where kernels rather than launches dominate.
BIG="--dim 768 --layers 12 --batch 8 --seq 1024 --vocab 50304 --steps 20"
timeout 150 .gpu/app/loom-bench train-step --device cuda $BIG 2>/dev/null | tee "$OUT/bench-loom-gpt2s.md"
PYTHONUNBUFFERED=1 timeout 120 python3 bench/peers/train_step.py --device cuda $BIG 2>/dev/null | tee "$OUT/bench-pytorch-gpt2s.md"
