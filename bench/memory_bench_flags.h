// What a memory_bench run measures: the tool's flags (Flags, ParseFlags),
// the store kinds and retrieval modes it compares, and the memory sizes up to
// which each is built and run.
//
// Shared by the runner (memory_bench.cc) and the summary
// (memory_bench_summary.cc). Not thread-safe: flags are parsed once, before
// any benchmark runs, and only read afterwards.
#ifndef FOTSERVE_BENCH_MEMORY_BENCH_FLAGS_H_
#define FOTSERVE_BENCH_MEMORY_BENCH_FLAGS_H_

#include <cstdint>
#include <string>

#include "memory/memory_options.h"

namespace fot::memory_bench {

// This tool's flags (memory_bench --help lists them).
struct Flags {
  int64_t max_memory_tokens = 1 << 20;
  int top_k = 128;
  int prefix_tokens = 16384;
  int holdout = 512;  // held-out prefix rows used as queries (>= 512: one window)
  double perturbation = 0.05;
  // Largest memory each kind is built to, and the largest at which a whole
  // window is processed (its cost grows linearly with the memory; beyond it the
  // summary extrapolates).
  int64_t flat_max_tokens = 1 << 20;
  int64_t hnsw_max_tokens = 32768;
  int64_t ivf_max_tokens = 1 << 20;
  int64_t dense_window_max_tokens = 131072;
  int64_t flat_window_max_tokens = 32768;
  int64_t hnsw_window_max_tokens = 32768;
  int64_t ivf_window_max_tokens = 1 << 20;
  int window_runs = 3;      // timed windows per Window run (the mean is reported)
  int gen_tokens = 16;       // timed single-token Appends per Generate run
  int gen_tokens_large = 4;  // ... when the memory holds >= 512k tokens
  int recall_queries = 128;  // per store (all 16 stores)
  int64_t recall_max_tokens = 1 << 20;
  int64_t overhead_tokens = 32768;  // size of the FAISS overhead comparison (per kind, capped)
  int overhead_rounds = 3;
  int64_t bytes_f32_tokens = 32768;  // size of the extra flat f32 memory for bytes/token
  // Index parameters of the approximate kinds (ParseIndexSpec syntax, e.g.
  // "hnsw:ef_search=1024"); the defaults are MemoryOptions' own.
  std::string hnsw_spec = "hnsw";
  std::string ivf_spec = "ivf";
};

// Takes this tool's --name=value flags out of argv into *flags; the rest stay
// for Google Benchmark. Returns false (after printing why, or the help) on a
// bad flag or --help.
bool ParseFlags(int* argc, char** argv, Flags* flags);

// ------------------------------------------------------- the kinds/modes ----

enum Kind { kFlat = 0, kHnsw = 1, kIvf = 2, kNumKinds = 3 };
inline constexpr const char* kKindNames[kNumKinds] = {"flat", "hnsw", "ivf"};

// Rows of the summary tables: dense reads the flat memory.
enum Mode { kDense = 0, kKnnFlat = 1, kKnnHnsw = 2, kKnnIvf = 3, kNumModes = 4 };
inline constexpr const char* kModeNames[kNumModes] = {"dense", "knn_flat", "knn_hnsw", "knn_ivf"};
inline Kind KindOf(Mode m) {
  return m == kDense || m == kKnnFlat ? kFlat : m == kKnnHnsw ? kHnsw : kIvf;
}

// The largest memory kind `k` is built to (its --*_max_tokens, at most
// --max_memory_tokens).
int64_t KindMax(const Flags& flags, Kind k);

// The largest memory at which mode `m` processes a whole window.
int64_t WindowMax(const Flags& flags, Mode m);

// Default MemoryOptions (f16 keys and values) with the index of kind `k`.
MemoryOptions OptionsFor(const Flags& flags, Kind k);

}  // namespace fot::memory_bench

#endif  // FOTSERVE_BENCH_MEMORY_BENCH_FLAGS_H_
