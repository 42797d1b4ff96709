// The flags of memory_bench and the sizes they allow (see memory_bench_flags.h).
#include "bench/memory_bench_flags.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace fot::memory_bench {
namespace {

struct FlagSpec {
  const char* name;
  const char* help;
  int64_t* i64 = nullptr;
  int* i32 = nullptr;
  double* f64 = nullptr;
  std::string* text = nullptr;
};

std::vector<FlagSpec> FlagSpecs(Flags* flags) {
  Flags& f = *flags;
  return {
      {"max_memory_tokens", "largest memory size run (8192, 32768, 131072, 1048576 up to it)",
       &f.max_memory_tokens},
      {"top_k", "K of knn:K", nullptr, &f.top_k},
      {"prefix_tokens", "tokens the model runs over to get real keys/values", nullptr,
       &f.prefix_tokens},
      {"holdout", "prefix rows kept aside as queries (>= 512)", nullptr, &f.holdout},
      {"perturbation", "relative noise on repeated rows", nullptr, nullptr, &f.perturbation},
      {"flat_max_tokens", "largest flat memory (dense and knn flat)", &f.flat_max_tokens},
      {"hnsw_max_tokens", "largest HNSW memory (inserts are slow)", &f.hnsw_max_tokens},
      {"ivf_max_tokens", "largest IVF memory", &f.ivf_max_tokens},
      {"dense_window_max_tokens", "largest memory for a dense window", &f.dense_window_max_tokens},
      {"flat_window_max_tokens", "largest memory for a knn-flat window", &f.flat_window_max_tokens},
      {"hnsw_window_max_tokens", "largest memory for a knn-HNSW window", &f.hnsw_window_max_tokens},
      {"ivf_window_max_tokens", "largest memory for a knn-IVF window", &f.ivf_window_max_tokens},
      {"window_runs", "timed windows per Window run (mean reported)", nullptr, &f.window_runs},
      {"gen_tokens", "timed generated tokens per Generate run", nullptr, &f.gen_tokens},
      {"gen_tokens_large", "timed generated tokens at >= 512k tokens of memory", nullptr,
       &f.gen_tokens_large},
      {"recall_queries", "queries per store for recall", nullptr, &f.recall_queries},
      {"recall_max_tokens", "largest memory for recall", &f.recall_max_tokens},
      {"overhead_tokens", "memory size of the FAISS overhead comparison", &f.overhead_tokens},
      {"overhead_rounds", "alternating engine/bare rounds (min taken)", nullptr,
       &f.overhead_rounds},
      {"bytes_f32_tokens", "size of the flat f32 memory measured for bytes/token",
       &f.bytes_f32_tokens},
      {"hnsw", "HNSW index spec, e.g. hnsw:ef_search=1024", nullptr, nullptr, nullptr,
       &f.hnsw_spec},
      {"ivf", "IVF index spec, e.g. ivf:nprobe=16", nullptr, nullptr, nullptr, &f.ivf_spec},
  };
}

}  // namespace

bool ParseFlags(int* argc, char** argv, Flags* flags) {
  const std::vector<FlagSpec> specs = FlagSpecs(flags);
  int out = 1;
  for (int i = 1; i < *argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::printf("memory_bench flags (plus Google Benchmark's --benchmark_*):\n");
      for (const FlagSpec& s : specs) std::printf("  --%s=...  %s\n", s.name, s.help);
      return false;
    }
    bool mine = false;
    for (const FlagSpec& s : specs) {
      const std::string prefix = std::string("--") + s.name + "=";
      if (arg.rfind(prefix, 0) != 0) continue;
      mine = true;
      const std::string value = arg.substr(prefix.size());
      if (s.text != nullptr) {
        *s.text = value;
        continue;
      }
      char* end = nullptr;
      if (s.f64 != nullptr) {
        *s.f64 = std::strtod(value.c_str(), &end);
      } else {
        const long long v = std::strtoll(value.c_str(), &end, 10);
        if (s.i64 != nullptr) *s.i64 = v;
        if (s.i32 != nullptr) *s.i32 = static_cast<int>(v);
      }
      if (end == value.c_str() || *end != '\0') {
        std::fprintf(stderr, "memory_bench: bad value in %s\n", arg.c_str());
        return false;
      }
    }
    if (!mine) argv[out++] = argv[i];
  }
  *argc = out;
  if (flags->holdout < 512 || flags->holdout < flags->recall_queries || flags->top_k < 1 ||
      flags->prefix_tokens < 2 * flags->holdout + 1024 || flags->window_runs < 1) {
    std::fprintf(stderr,
                 "memory_bench: need holdout >= max(512, recall_queries), top_k >= 1, "
                 "prefix_tokens >= 2 * holdout + 1024 and window_runs >= 1\n");
    return false;
  }
  for (const auto& [spec, kind] : {std::pair{flags->hnsw_spec, IndexKind::kHnsw},
                                   std::pair{flags->ivf_spec, IndexKind::kIvf}}) {
    MemoryOptions o;
    const absl::Status status = ParseIndexSpec(spec, &o);
    if (!status.ok() || o.index_kind != kind) {
      std::fprintf(stderr, "memory_bench: bad index spec '%s': %s\n", spec.c_str(),
                   status.ok() ? "wrong index kind" : std::string(status.message()).c_str());
      return false;
    }
  }
  return true;
}

int64_t KindMax(const Flags& flags, Kind k) {
  const int64_t max = k == kFlat   ? flags.flat_max_tokens
                      : k == kHnsw ? flags.hnsw_max_tokens
                                   : flags.ivf_max_tokens;
  return std::min(max, flags.max_memory_tokens);
}

int64_t WindowMax(const Flags& flags, Mode m) {
  switch (m) {
    case kDense:
      return flags.dense_window_max_tokens;
    case kKnnFlat:
      return flags.flat_window_max_tokens;
    case kKnnHnsw:
      return flags.hnsw_window_max_tokens;
    default:
      return flags.ivf_window_max_tokens;
  }
}

MemoryOptions OptionsFor(const Flags& flags, Kind k) {
  MemoryOptions o;  // defaults: f16 keys and values, default index parameters
  if (k == kHnsw || k == kIvf) {
    // Checked by ParseFlags.
    (void)ParseIndexSpec(k == kHnsw ? flags.hnsw_spec : flags.ivf_spec, &o);
  }
  return o;
}

}  // namespace fot::memory_bench
