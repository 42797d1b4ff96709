// The results of a memory_bench run: the figures its benchmarks record
// (Figures), and the tables and issue-3 targets printed from them at the end
// of the run (PrintSummary).
//
// Apart from the runner (memory_bench.cc: building the memories, the Google
// Benchmark functions, FAISS) so that each part stays readable; this part
// knows nothing of Google Benchmark or FAISS. Not thread-safe: one runner
// fills one Figures, then prints it.
#ifndef FOTSERVE_BENCH_MEMORY_BENCH_SUMMARY_H_
#define FOTSERVE_BENCH_MEMORY_BENCH_SUMMARY_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "bench/memory_bench_flags.h"
#include "src/checkpoint/model_config.h"

namespace fot::memory_bench {

struct FillRecord {
  int64_t entries = 0;  // appended entries per store
  double seconds = 0;
};

// What the benchmarks of one run record, for PrintSummary.
struct Figures {
  double prefix_seconds = 0;
  int64_t source_rows = 0;
  std::map<int64_t, double> window_tokens_per_s[kNumModes];  // [mode][size]
  std::map<int64_t, double> gen_ms[kNumModes];
  double window_empty_tokens_per_s = 0;
  std::map<int64_t, double> gen_empty_ms;  // measured at the start of each size group
  struct Recall {
    double strict = 0, tie_aware = 0;
    double wide = 0;  // searching 2K candidates and keeping the best K
    bool built = true;
    int64_t overflow = 0;
  };
  std::map<int64_t, Recall> recall[kNumKinds];
  struct Overhead {
    int64_t size = 0;
    double engine_ms = 0, bare_ms = 0;
    std::string bare_name;
    double alt_ms = 0;  // a bare float32 index of the same family
    std::string alt_name;
  };
  std::optional<Overhead> overhead[kNumKinds];
  struct Bytes {
    std::vector<double> per_layer;  // bytes per stored token, per memory layer (all heads)
    double total = 0;               // summed over memory layers
  };
  std::map<std::string, std::map<int64_t, Bytes>> bytes;  // "flat f16", ...
  FillRecord fill[kNumKinds];                             // cumulative over all fills of the kind
  FillRecord hnsw_graph_inserts;                          // entries added after the HNSW build
  std::map<int64_t, int64_t> overflow[kNumKinds];         // [kind][size] summed over stores
};

// Prints the summary tables of `figures` and how they compare with the
// issue-3 targets, to stdout.
void PrintSummary(const Flags& flags, const Figures& figures, const ModelConfig& config);

}  // namespace fot::memory_bench

#endif  // FOTSERVE_BENCH_MEMORY_BENCH_SUMMARY_H_
