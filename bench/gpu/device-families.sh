#!/usr/bin/env bash
# Runs on the GPU machine with .gpu carried (see device-run.sh for how .gpu is prepared): the learning
# benchmarks of the model families with --device cuda: tiny-moe against dense tiny at equal active
# parameters and steps (loom-bench moe), and the T5 demo (span-corruption pre-training, spam_assassin
# fine-tuning) beside its decoder-only twin (loom-bench t5-spam), at the CPU runs' settings so the
# numbers compare with bench/RESULTS.md. Results in $OUT. Not yet run: no device was lent to the
# session that wrote it.
set -uo pipefail
source bench/gpu/env.sh
timeout 200 .gpu/app/loom-bench moe --device cuda --steps 600 2>"$OUT/moe.err" | tee "$OUT/moe.md"
timeout 300 .gpu/app/loom-bench t5-spam --device cuda --pretrain-steps 400 --finetune-steps 400 2>"$OUT/t5-spam.err" | tee "$OUT/t5-spam.md"
tail -5 "$OUT/moe.err" "$OUT/t5-spam.err"
