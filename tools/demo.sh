#!/usr/bin/env bash
# The main job, from a fresh clone: installs what is missing, builds the tools,
# makes a small model, and runs a long prompt through it with kNN memory.
#
# The demo model is random-weight (fot-make-model) with a tokenizer trained on
# this README, so its continuation is noise; what the demo shows is the
# pipeline: a prompt many windows long, windows moving into FAISS memory, kNN
# retrieval, streamed generation, and the speeds and memory it measured.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/install_deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release > /dev/null
cmake --build build -j"$(nproc)" --target fot-run fot-make-model

model=build/demo-model
if [ ! -f "$model/tokenizer.model" ]; then
  build/fot-make-model --out "$model" --hidden 256 --layers 4 --heads 8 --kv-heads 2 \
    --intermediate 688 --vocab 1000 --window 128 --last-context 64 --mem-layers 1,3 \
    --init-std 0.05 --tokenizer-corpus README.md
fi

echo "== fot-run: the README as a prompt (many 128-token windows), knn:32 retrieval over a flat FAISS memory"
build/fot-run --model "$model" --prompt "$(cat README.md)" --memory knn:32 --index flat \
  --generate 48 --use-cache --temperature 0.8 --seed 1
