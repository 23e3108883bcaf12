#!/usr/bin/env bash
# Runs on the GPU machine with .gpu carried (see device-run.sh for how .gpu is prepared): the learning
# benchmarks of the model families with --device cuda: tiny-moe against dense tiny at equal active
# parameters and steps (loom-bench moe), and the T5 demo (span-corruption pre-training, spam_assassin
# fine-tuning) beside its decoder-only twin (loom-bench t5-spam), at the CPU runs' settings so the
# numbers compare with bench/RESULTS.md. Results in $OUT. Not yet run: no device was lent to the
# session that wrote it.
set -uo pipefail
OUT="${OUT:-/tmp/loom-gpu-out}"; mkdir -p "$OUT"
tar -C .gpu -xJf .gpu/loom.tar.xz
export XDG_CACHE_HOME="$PWD/.gpu/corpus-cache"; mkdir -p "$XDG_CACHE_HOME" && tar -C "$XDG_CACHE_HOME" -xJf .gpu/corpora.tar.xz
TDIR=$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__))')
SP=$(dirname "$TDIR")
export LD_LIBRARY_PATH=$TDIR/lib:$(ls -d "$SP"/nvidia/*/lib | tr '\n' ':')${LD_LIBRARY_PATH:-}
nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$OUT/gpu.txt"
timeout 200 .gpu/app/loom-bench moe --device cuda --steps 600 2>"$OUT/moe.err" | tee "$OUT/moe.md"
timeout 300 .gpu/app/loom-bench t5-spam --device cuda --pretrain-steps 400 --finetune-steps 400 2>"$OUT/t5-spam.err" | tee "$OUT/t5-spam.md"
tail -5 "$OUT/moe.err" "$OUT/t5-spam.err"
