#!/usr/bin/env bash
# Runs on the GPU machine with .gpu carried (see device-run.sh): trains the books_and_spam mixture
# (packed rows, per-task evaluation) with --device cuda, then the data pipeline benchmark with its
# training row on the GPU, so the pipeline is measured against the GPU's consumption. Results in $OUT.
set -uo pipefail
source bench/gpu/env.sh
timeout 200 .gpu/app/loom train --mixture books_and_spam --device cuda --run-dir "$OUT/mixture" \
  --set training.steps=600 --set training.eval_every=300 --set training.eval_batches=4 --set training.checkpoint_every=600 \
  --set training.learning_rate=0.03 --set training.schedule='"cosine"' --set training.warmup_steps=50 2>&1 | grep -v "^step .*loss .* lr " | tee "$OUT/mixture.log"
timeout 150 .gpu/app/loom-bench pipeline --device cuda --train-steps 20 2>"$OUT/pipeline.err" | tee "$OUT/pipeline.md"
tail -5 "$OUT/pipeline.err"
