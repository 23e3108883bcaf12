#!/usr/bin/env bash
# Packs Loom and then uses the packages the way a user would, from the local feed:
#   1. dotnet pack Loom.slnx -c Release -o artifacts/packages  (the eight libraries and the Loom.Cli tool)
#   2. dotnet tool install Loom.Cli from that feed into a temporary tool path; run `loom --help`,
#      train a tiny model for a few steps with the installed loom, and `loom generate` from it
#   3. build samples/Loom.Samples.Chat against the feed and chat with that checkpoint through
#      IChatClient (a one-shot prompt, then a two-message conversation on stdin)
# Exits non-zero when any step fails. Used by .ci/run after the tests; about two minutes on a built tree.
# LOOM_PACK_KEEP=1 keeps the temporary folder (the installed tool and the checkpoint) and prints it.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
FEED="$ROOT/artifacts/packages"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/loom-pack-XXXXXX")"
if [ "${LOOM_PACK_KEEP:-}" = 1 ]; then echo "pack-and-try: keeping $WORK"; else trap 'rm -rf "$WORK"' EXIT; fi
step() { echo; echo "== pack-and-try: $* ($(date -u +%H:%M:%S))"; }

VERSION="$(dotnet msbuild src/Loom.Core/Loom.Core.csproj -getProperty:Version -p:Configuration=Release)"
step "dotnet pack Loom.slnx -c Release -o artifacts/packages (version $VERSION)"
rm -rf "$FEED"
dotnet pack Loom.slnx -c Release -o "$FEED" --nologo -v quiet -clp:ErrorsOnly
ls -l "$FEED"
for id in Loom.Core Loom.Data Loom.Distributed Loom.Models Loom.Training Loom.Inference Loom.Serving Loom.Planning Loom.Cli; do
  for ext in nupkg snupkg; do
    [ -f "$FEED/$id.$VERSION.$ext" ] || { echo "pack-and-try: $id.$VERSION.$ext is missing from $FEED" >&2; exit 1; }
  done
done

# NuGet never refreshes a package version it has already extracted: drop the copies of this
# version of Loom's packages that an earlier run left in the global packages folder, so that the
# sample restores the packages just packed.
CACHE="${NUGET_PACKAGES:-$HOME/.nuget/packages}"
for id in loom.core loom.data loom.distributed loom.models loom.training loom.inference loom.serving loom.cli; do
  rm -rf "${CACHE:?}/$id/$VERSION"
done

step "dotnet tool install Loom.Cli from the local feed"
dotnet tool install --tool-path "$WORK/tool" --add-source "$FEED" Loom.Cli --version "$VERSION"
LOOM="$WORK/tool/loom"
"$LOOM" --help | head -n 12

step "installed loom: train a tiny model for 5 steps, then generate"
python3 -c 'print("the quick brown fox jumps over the lazy dog. " * 200)' > "$WORK/text.txt" 2>/dev/null \
  || for _ in $(seq 200); do printf 'the quick brown fox jumps over the lazy dog. '; done > "$WORK/text.txt"
(cd "$WORK" && "$LOOM" train --data text.txt --run-dir run --device cpu --threads 1 \
  --set model.model_dim=32 --set model.num_layers=2 --set model.mlp_dim=64 --set model.head_dim=8 \
  --set model.num_heads=4 --set model.num_kv_heads=2 --set data.sequence_length=32 \
  --set training.batch_size=4 --set training.steps=5 --set training.warmup_steps=1 --set training.eval_batches=1)
"$LOOM" generate --checkpoint "$WORK/run" --prompt "the quick" -t 0 -n 20 --device cpu

step "samples/Loom.Samples.Chat: build against the local feed and chat with the checkpoint"
SAMPLE="$ROOT/samples/Loom.Samples.Chat"
dotnet build "$SAMPLE/Loom.Samples.Chat.csproj" -c Release -p:LoomVersion="$VERSION" --nologo -v quiet -clp:ErrorsOnly
APP="$SAMPLE/bin/Release/net10.0/Loom.Samples.Chat.dll"
dotnet "$APP" "$WORK/run" --max-tokens 16 --seed 1 "the quick brown fox"
printf 'hello\nthe quick brown fox\n\n' | dotnet "$APP" "$WORK/run" --max-tokens 8 --seed 1

step "done: packages in artifacts/packages"
du -h "$FEED"/*.nupkg | sort -h
