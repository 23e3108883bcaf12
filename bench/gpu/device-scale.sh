#!/usr/bin/env bash
# Runs on the GPU machine with .gpu carried (bench/gpu/prepare.sh, then the device tool with carry [".gpu"]):
# issue 9's GPU check, the GPT-2-small-shaped training step (12 layers, d 768, B 16 x T 1024, vocab 50304) in
# bf16: Loom (training.precision=bf16: bfloat16 matmuls and attention over float32 weights) beside PyTorch
# eager under bf16 autocast and PyTorch torch.compile under bf16 autocast, in the same call; fp32 rows of
# both for reference. Results in $OUT. Not yet run: no device was lent to the session that wrote it.
# NCCL is not exercised here: Loom's NcclCommunicator takes its unique id over MPI, and the GPU machine
# has no MPICH.
set -uo pipefail
source bench/gpu/env.sh
GPT2S="--dim 768 --layers 12 --head-dim 64 --batch 16 --seq 1024 --vocab 50304 --steps 20 --warmup 5"
for p in fp32 bf16; do
  timeout 150 .gpu/app/loom-bench train-step --device cuda $GPT2S --precision $p 2>"$OUT/loom-$p.err" | tee "$OUT/loom-$p.md"
  PYTHONUNBUFFERED=1 timeout 120 python3 bench/peers/train_step.py --device cuda $GPT2S --precision $p 2>/dev/null | tee "$OUT/pytorch-eager-$p.md"
done
PYTHONUNBUFFERED=1 timeout 240 python3 bench/peers/train_step.py --device cuda $GPT2S --precision bf16 --compile 2>"$OUT/pytorch-compile-bf16.err" | tee "$OUT/pytorch-compile-bf16.md"
tail -3 "$OUT"/*.err
