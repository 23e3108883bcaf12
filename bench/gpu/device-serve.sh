#!/usr/bin/env bash
# Runs on the GPU machine with .gpu carried (see device-run.sh): trains the demo model with
# --device cuda, then exercises inference on the GPU: generation through the batching engine, held-out
# loss with float and int8 weights, and the HTTP load benchmark (continuous batching against one request
# at a time). Results in $OUT.
set -uo pipefail
source bench/gpu/env.sh
RUN=/tmp/demo-run
timeout 120 .gpu/app/loom demo --device cuda --run-dir "$RUN" 2>&1 | grep -v "^step .*loss .* lr " | tail -8 | tee "$OUT/demo.log"
timeout 60 .gpu/app/loom generate --device cuda --checkpoint "$RUN" --prompt "It was a fine morning" -n 200 --seed 1 2>&1 | tee "$OUT/generate.log"
for q in none int8; do
  timeout 60 .gpu/app/loom eval --device cuda --checkpoint "$RUN" --batches 20 --quantize $q 2>&1 | tee "$OUT/eval-$q.log"
done
timeout 300 .gpu/app/loom-bench serve-load --device cuda --clients 1,16,64 2>"$OUT/serve-load.err" | tee "$OUT/serve-load.md"
tail -5 "$OUT/serve-load.err"
