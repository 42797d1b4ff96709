#!/usr/bin/env bash
# Builds the libFuzzer harnesses of fuzz/ (clang, ASan + UBSan, -DFOT_FUZZ=ON,
# in build-fuzz/) and runs each on its committed seed corpus fuzz/corpus/NAME/.
#
#   tools/fuzz.sh [--seconds N] [--runs N] [--seeds] [--no-build] [NAME...]
#
#   --seconds N  fuzz each harness N seconds (default 25)
#   --runs N     fuzz each harness N executions; with --seconds as well,
#                whichever comes first
#   --seeds      first rewrite the seeds of fuzz/corpus/ with fuzz-seeds
#                (fuzz/make_seeds.cc; after a file format changed): every file
#                but the regression_* inputs of found crashes
#   --no-build   run the harnesses build-fuzz/ holds, as they are
#   NAME...      only these harnesses (default: all, as fuzz/CMakeLists.txt
#                lists them)
#
# The harnesses run one after the other, one process each. Inputs that reach
# new code are kept in build-fuzz/corpus/NAME/ (for the next run; not
# committed). An input that crashes a harness (a sanitizer report, a broken
# invariant, a hang past 120 s, memory past 2 GB) is written to
# build-fuzz/crashes/NAME/ and the script, after the other harnesses ran,
# exits 1. Reproduce one with build-fuzz/fuzz/NAME_fuzzer FILE. The log of
# each run is build-fuzz/logs/NAME.log; the table at the end gives each
# harness's executions and executions per second.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=""
runs=""
seeds=0
build=1
names=()
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds="$2"; shift 2 ;;
    --runs) runs="$2"; shift 2 ;;
    --seeds) seeds=1; shift ;;
    --no-build) build=0; shift ;;
    -h | --help) sed -n '2,/^set -e/{/^set -e/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
    -*) echo "tools/fuzz.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) names+=("$1"); shift ;;
  esac
done
# Neither: 25 s each. --runs alone: no time limit (libFuzzer: 0 and -1).
if [ -z "$seconds" ] && [ -z "$runs" ]; then seconds=25; fi
seconds="${seconds:-0}"
runs="${runs:--1}"

all=($(sed -n 's/^fot_fuzzer(\([a-z_]*\).*/\1/p' fuzz/CMakeLists.txt))
if [ ${#names[@]} -eq 0 ]; then names=("${all[@]}"); fi
for name in "${names[@]}"; do
  [[ " ${all[*]} " == *" $name "* ]] || { echo "no harness '$name' (${all[*]})" >&2; exit 2; }
done

if [ "$build" -eq 1 ]; then
  targets=(fuzzers)
  [ "$seeds" -eq 1 ] && targets+=(fuzz-seeds)
  cmake -S . -B build-fuzz -DCMAKE_CXX_COMPILER=clang++ -DFOT_FUZZ=ON > /dev/null
  cmake --build build-fuzz -j"$(nproc)" --target "${targets[@]}"
fi

if [ "$seeds" -eq 1 ]; then
  find fuzz/corpus -type f ! -name 'regression_*' -delete 2> /dev/null || true
  build-fuzz/fuzz/fuzz-seeds fuzz/corpus
fi

# One harness on its corpus; its line of the summary table.
run_one() {
  local name="$1"
  local work="build-fuzz/corpus/$name" crashes="build-fuzz/crashes/$name"
  local log="build-fuzz/logs/$name.log"
  mkdir -p "$work" "$crashes" build-fuzz/logs
  local start=$SECONDS status=0
  "build-fuzz/fuzz/${name}_fuzzer" -max_total_time="$seconds" -runs="$runs" -timeout=120 \
    -dict=fuzz/fot.dict -print_final_stats=1 -artifact_prefix="$crashes/" \
    "$work" "fuzz/corpus/$name" > "$log" 2>&1 || status=$?
  local execs rate
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
  local result="ok"
  if [ "$status" -ne 0 ]; then
    result="CRASH (exit $status): $(ls -t "$crashes" | head -1)"
    echo "--- $name: the end of $log" >&2
    tail -n 40 "$log" >&2
  fi
  printf '%-20s %12s %10s %6ss  %s\n' "$name" "${execs:-?}" "${rate:-?}" $((SECONDS - start)) \
    "$result" >> build-fuzz/logs/summary
  [ "$status" -eq 0 ]
}

mkdir -p build-fuzz/logs
printf '%-20s %12s %10s %7s  %s\n' harness executions "exec/s" time result > build-fuzz/logs/summary
failed=0
for name in "${names[@]}"; do
  echo "fuzzing $name (seconds ${seconds/#0/unlimited}, runs ${runs/#-1/unlimited})"
  run_one "$name" || failed=1
done
cat build-fuzz/logs/summary
if [ "$failed" -ne 0 ]; then
  echo "tools/fuzz.sh: crashes found (build-fuzz/crashes/); see README.md, Fuzzing" >&2
  exit 1
fi
