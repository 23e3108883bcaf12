#!/usr/bin/env bash
# Builds what a GPU check needs, here on the dev machine: a self-contained loom without the CPU
# libtorch (the GPU machine's PyTorch supplies CUDA libtorch), with the benchmark beside it, packed
# as .gpu/loom.tar.xz (about 35 MB; the device tool carries at most 64 MiB).
# Then run bench/gpu/device-run.sh on the GPU machine with .gpu carried along (docs/gpu.md).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
OUT="$ROOT/.gpu"
rm -rf "$OUT" && mkdir -p "$OUT"
dotnet publish "$ROOT/src/Loom.Cli/Loom.Cli.csproj" -c Release -r linux-x64 --self-contained \
  -p:LoomLibTorch=none -o "$OUT/app" --nologo -v quiet
dotnet publish "$ROOT/bench/Loom.Bench/Loom.Bench.csproj" -c Release -r linux-x64 --self-contained \
  -p:LoomLibTorch=none -o "$OUT/app" --nologo -v quiet
# One folder for both programs: they share the runtime and every Loom assembly (one copy travels).
tar -C "$OUT" -cJf "$OUT/loom.tar.xz" app
rm -rf "$OUT/app"
# The corpora come from this machine's cache (the GPU machine has no network): the demo's Austen
# as a folder, and every built-in task's corpus packed (about 9 MB), for the task and pipeline runs.
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}"
mkdir -p "$OUT/corpus" && cp -r "$CACHE/loom/austen" "$OUT/corpus/"
tar -C "$CACHE" -cJf "$OUT/corpora.tar.xz" loom/austen loom/kjv loom/moby_dick loom/spam_assassin
du -sh "$OUT"/*
