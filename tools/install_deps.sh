#!/usr/bin/env bash
# Installs the Debian packages fotserve builds against, if any are missing,
# and the npm packages of the HTTP API's SDK tests (tests/http, pinned by its
# package-lock.json). Safe to run again: it does nothing when everything is
# present.
set -euo pipefail

packages=(
  build-essential cmake pkg-config
  libfaiss-dev libopenblas-dev
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev libsentencepiece-dev nlohmann-json3-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  librocksdb-dev
  clang libclang-rt-dev libomp-dev
  libssl-dev openssl
  libcpp-httplib-dev
  chromium
  python3 python3-grpcio python3-protobuf python3-pytest
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Node.js and npm for tests/http (the SDK and the inspector's browser test,
# which drives the chromium above), unless a node and an npm are there
# already (a Node.js build from elsewhere carries its own npm).
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  missing+=(nodejs npm)
fi

# `npm ci` in tests/http when its packages are missing or older than the lockfile.
npm_ci() {
  local dir
  dir="$(cd "$(dirname "$0")/.." && pwd)/tests/http"
  if [ ! -f "$dir/node_modules/.package-lock.json" ] ||
     [ "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]; then
    echo "installing the npm packages of tests/http (npm ci)"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
  fi
}

if [ ${#missing[@]} -eq 0 ]; then
  npm_ci
  exit 0
fi

echo "installing missing Debian packages: ${missing[*]}"
sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
  sudo_cmd=(sudo)
fi
"${sudo_cmd[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
npm_ci
