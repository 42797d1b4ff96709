#!/usr/bin/env bash
# The main job, from a fresh clone: installs what is missing, builds the tools,
# starts fot-server on a loopback port, streams a long document into a session
# through fotctl (with a progress bar), asks a question whose answer lies far
# outside the local window (with --trace: which memory entries each answer
# token attended to), and shows what memory holds.
#
# The model: models/fot-dict when it is there (trained by tools/train_fot.py on
# this very task, so it answers from memory); otherwise a random-weight model
# made by fot-make-model, whose answer is noise but whose pipeline is the same.
#
# Environment: FOT_DEMO_SENTENCES (default 3000) sets the document's length.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/install_deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release > /dev/null
cmake --build build -j"$(nproc)" --target fot-server fotctl fot-make-model fot-run

if [ -f models/fot-dict/config.json ]; then
  model=models/fot-dict
else
  model=build/demo-model
  if [ ! -f "$model/tokenizer.model" ]; then
    build/fot-make-model --out "$model" --hidden 256 --layers 4 --heads 8 --kv-heads 2 \
      --intermediate 688 --vocab 1000 --window 128 --last-context 64 --mem-layers 1,3 \
      --init-std 0.05 --tokenizer-corpus README.md
  fi
  echo "(models/fot-dict is not there: using a random-weight model; its answer is noise)"
fi

work=$(mktemp -d)
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# --- the server: port 0 picks a free loopback port; its log says which ------
build/fot-server --model "$model" --data-dir "$work/data" --listen 127.0.0.1:0 \
  2> "$work/server.log" &
server_pid=$!
address=""
for _ in $(seq 1 300); do
  address=$(sed -n '/ on 127\.0\.0\.1:/{s/.* on \(127\.0\.0\.1:[0-9][0-9]*\).*/\1/p;q;}' "$work/server.log")
  [ -n "$address" ] && break
  if ! kill -0 "$server_pid" 2>/dev/null; then
    echo "fot-server failed to start:" >&2
    cat "$work/server.log" >&2
    exit 1
  fi
  sleep 0.1
done
if [ -z "$address" ]; then
  echo "fot-server did not start listening within 30 s:" >&2
  cat "$work/server.log" >&2
  exit 1
fi
fotctl() { build/fotctl --server "$address" "$@"; }

echo "== fot-server on $address"
fotctl --wait 10 info

# --- a long document with one fact near its start -----------------------------
# Filler sentences (the fot-dict training vocabulary), the pass key at about
# 5% depth, so the question at the end is tens of windows away from it.
passkey=48213
awk -v n="${FOT_DEMO_SENTENCES:-3000}" -v pk="$passkey" 'BEGIN {
  srand(7)
  split("grass sky sun moon river tree stone bird house road hill cloud sea field lamp door book cat dog apple", nouns, " ")
  split("green blue yellow red quiet warm cold bright dark old new small big soft calm wide", adjs, " ")
  split("sees finds likes follows passes meets", verbs, " ")
  line = ""
  for (i = 0; i < n; i++) {
    if (i == int(n / 20)) {
      s = "the pass key is " pk ". remember it. " pk " is the pass key."
    } else if (rand() < 0.5) {
      s = "the " nouns[1 + int(rand() * 20)] " is " adjs[1 + int(rand() * 16)] "."
    } else {
      s = "a " adjs[1 + int(rand() * 16)] " " nouns[1 + int(rand() * 20)] " " \
          verbs[1 + int(rand() * 6)] " the " nouns[1 + int(rand() * 20)] "."
    }
    line = (line == "" ? s : line " " s)
    if (length(line) > 400) { printf "%s ", line; line = "" }
  }
  printf "%s", line
}' > "$work/sample.txt"

echo
echo "== a session with kNN memory (flat FAISS index), and the document streamed in"
fotctl sessions create demo --retrieval knn:64 --index flat
fotctl ingest demo "$work/sample.txt"

echo
echo "== the question; the pass key ($passkey) lies far outside the local window"
echo "\$ fotctl ask demo \"what is the pass key? the pass key is\" --max-tokens 8 --stop . --trace"
fotctl ask demo "what is the pass key? the pass key is" --max-tokens 8 --stop . --trace

echo
echo "== what memory holds"
fotctl memory stats demo
