#!/usr/bin/env bash
# Installs what is missing, builds everything, runs every test (ctest), then
# builds the fuzzers and runs each for 20 s on its seed corpus (tools/fuzz.sh;
# any crash fails). .ci/run calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/install_deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
cmake --build build -j"$(nproc)"
ctest --test-dir build --output-on-failure -j"$(nproc)"
tools/fuzz.sh --seconds 20
