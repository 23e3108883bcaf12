# Sourced by the device-*.sh scripts on the GPU machine (PyTorch installed, no .NET, no network), from the
# repository root with .gpu carried (bench/gpu/prepare.sh makes it): unpacks Loom and the corpora, points
# Loom's libtorch loader at PyTorch's CUDA libtorch, and records the GPU. Sets OUT (results) if unset.
OUT="${OUT:-/tmp/loom-gpu-out}"; mkdir -p "$OUT"
tar -C .gpu -xJf .gpu/loom.tar.xz
export XDG_CACHE_HOME="$PWD/.gpu/corpus-cache"; mkdir -p "$XDG_CACHE_HOME"
if [ -f .gpu/corpora.tar.xz ]; then
  tar -C "$XDG_CACHE_HOME" -xJf .gpu/corpora.tar.xz
else
  mkdir -p "$XDG_CACHE_HOME/loom" && cp -r .gpu/corpus/austen "$XDG_CACHE_HOME/loom/"
fi
TDIR=$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__))')
SP=$(dirname "$TDIR")
export LD_LIBRARY_PATH=$TDIR/lib:$(ls -d "$SP"/nvidia/*/lib | tr '\n' ':')${LD_LIBRARY_PATH:-}
nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$OUT/gpu.txt"
