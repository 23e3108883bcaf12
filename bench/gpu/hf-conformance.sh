#!/usr/bin/env bash
# Runs on the GPU machine with .gpu carried (bench/gpu/prepare.sh, then the device tool with carry [".gpu"]):
# issue 10's Hugging Face conformance check. transformers builds tiny random GPT-2, Llama, Gemma, Gemma 2, Mistral,
# Mixtral and T5 v1.1 models, saves each with save_pretrained into $OUT/hf/NAME and its logits for fixed tokens into
# $OUT/ref; Loom's published loom-bench imports each folder (hf-logits: HuggingFaceModels.Import, the path of
# `loom import hf`) on the CPU and on the GPU and writes its logits to $OUT/loom; the table of max |difference|
# per architecture (PASS under 1e-4) goes to $OUT/results.md. An architecture this Loom does not read yet shows
# as FAIL with Loom's one-line reason. Needs transformers and safetensors beside PyTorch; no network.
# Not yet run: no device was lent to the session that wrote it. About 2 minutes.
set -uo pipefail
source bench/gpu/env.sh
python3 -c 'import transformers, torch; print("transformers", transformers.__version__, "torch", torch.__version__)' | tee "$OUT/versions.txt"
PYTHONUNBUFFERED=1 timeout 300 python3 bench/gpu/hf_conformance.py make --out "$OUT" 2>&1 | tee "$OUT/make.log"
mkdir -p "$OUT/loom"
for dir in "$OUT"/hf/*/; do
  name=$(basename "$dir")
  [ -f "$OUT/ref/$name.args" ] || continue
  read -r -a tokens < "$OUT/ref/$name.args"
  for device in cpu cuda; do
    timeout 120 .gpu/app/loom-bench hf-logits --model "$dir" "${tokens[@]}" --device "$device" \
      --output "$OUT/loom/$name.$device.safetensors" > "$OUT/loom/$name.$device.log" 2>&1
    echo "$name $device: exit $? $(tail -1 "$OUT/loom/$name.$device.log")"
  done
done
python3 bench/gpu/hf_conformance.py compare --out "$OUT" > "$OUT/results.md"
status=$?
cat "$OUT/results.md"
exit $status
