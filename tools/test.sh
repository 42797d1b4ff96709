#!/usr/bin/env bash
# Installs what is missing, builds everything, and runs every test (ctest).
# .ci/run calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/install_deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
cmake --build build -j"$(nproc)"
ctest --test-dir build --output-on-failure -j"$(nproc)"
