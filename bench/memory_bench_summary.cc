// The summary of a memory_bench run (see memory_bench_summary.h).
#include "bench/memory_bench_summary.h"

#include <sys/resource.h>

#include <algorithm>
#include <cstdio>

#include "absl/strings/str_format.h"

namespace fot::memory_bench {
namespace {

double PeakRssMiB() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_maxrss / 1024.0;
}

const std::vector<int64_t> kSizes = {8192, 32768, 131072, 1048576};

std::string SizeName(int64_t s) {
  return s >= 1048576 ? absl::StrFormat("%lldM", static_cast<long long>(s >> 20))
                      : absl::StrFormat("%lldk", static_cast<long long>(s >> 10));
}

// Window processing rate at `size`: measured, or extrapolated from the largest
// measured size assuming the memory part of the time is linear in the size.
// Returns 0 when neither is possible; *extrapolated says which.
double WindowRate(const Figures& figures, Mode m, int64_t size, bool* extrapolated) {
  *extrapolated = false;
  const auto& measured = figures.window_tokens_per_s[m];
  if (measured.count(size)) return measured.at(size);
  const double empty = figures.window_empty_tokens_per_s;
  if (measured.empty() || empty <= 0 || m == kKnnHnsw) return 0;  // HNSW is not linear
  const auto& [base_size, base_rate] = *measured.rbegin();
  if (base_size > size) return 0;
  const int w = 512;
  const double t0 = w / empty, t1 = w / base_rate;
  const double t = t0 + (t1 - t0) * static_cast<double>(size) / base_size;
  *extrapolated = true;
  return w / t;
}

// The 16 stores' insert rate of a fill, in vectors/s.
double InsertRate(const FillRecord& fill) { return fill.entries * 16.0 / fill.seconds; }

// The model, how the memories were made, and the options of each kind.
void PrintSetup(const Flags& flags, const Figures& f, const ModelConfig& config) {
  const int hd = config.head_dim();
  std::printf(
      "\n== memory summary (mid-size model: hidden 512, 8 layers, 8 heads/8 kv heads, "
      "head_dim %d, W 512, memory layers 3 and 6 = %zu stores; knn K = %d; "
      "default MemoryOptions, f16 keys and values; this machine, this run) ==\n",
      hd, config.mem_layers.size() * config.num_key_value_heads, flags.top_k);
  std::printf(
      "memories: real engine keys/values of a %d-token random-id prefix (%.1f s through "
      "the model), %lld rows per layer as fill source,\n  repeated with %.0f%% "
      "deterministic noise on every repeat (sizes > %lld are mostly perturbed copies); "
      "queries = %d held-out real keys\n",
      flags.prefix_tokens, f.prefix_seconds, static_cast<long long>(f.source_rows),
      flags.perturbation * 100, static_cast<long long>(f.source_rows), flags.holdout);
  std::printf(
      "timings are noisy: 2 shared cores with other jobs running; ratios below are "
      "from the same run\n");
  for (Kind k : {kFlat, kHnsw, kIvf}) {
    std::printf("  %s options: %s\n", kKindNames[k],
                DescribeOptions(ResolveMemoryOptions(OptionsFor(flags, k), hd)).c_str());
  }
}

// The first line of a table with a column per size, without its end.
void PrintSizeHeader() {
  std::printf("  %-10s", "memory");
  for (int64_t s : kSizes) std::printf(" %10s", SizeName(s).c_str());
}

void PrintWindowTable(const Flags& flags, const Figures& f) {
  std::printf(
      "\nprocessing one more window (Prefill of 512 tokens, kLast, window kept as the "
      "cache), tokens/s  [~ = extrapolated linearly from the largest measured size, "
      "- = not run]\n");
  PrintSizeHeader();
  std::printf("   (empty memory: %.1f)\n", f.window_empty_tokens_per_s);
  for (int m = 0; m < kNumModes; ++m) {
    std::printf("  %-10s", kModeNames[m]);
    for (int64_t s : kSizes) {
      bool ex = false;
      const double r =
          s <= flags.max_memory_tokens ? WindowRate(f, static_cast<Mode>(m), s, &ex) : 0;
      if (r <= 0) {
        std::printf(" %10s", "-");
      } else {
        std::printf(" %10s", absl::StrFormat("%s%.1f", ex ? "~" : "", r).c_str());
      }
    }
    std::printf("\n");
  }
}

void PrintGenerationTable(const Flags& flags, const Figures& f) {
  std::printf(
      "\ngeneration latency (Engine::Append of 1 token after a 64-token prefill), "
      "median ms/token of %d tokens (%d at 1M)\n",
      flags.gen_tokens, flags.gen_tokens_large);
  PrintSizeHeader();
  std::printf("\n  %-10s", "empty");
  for (int64_t s : kSizes) {
    if (f.gen_empty_ms.count(s)) {
      std::printf(" %10.2f", f.gen_empty_ms.at(s));
    } else {
      std::printf(" %10s", "-");
    }
  }
  std::printf("   (empty memory, re-measured before each size)\n");
  for (int m = 0; m < kNumModes; ++m) {
    std::printf("  %-10s", kModeNames[m]);
    for (int64_t s : kSizes) {
      if (f.gen_ms[m].count(s) && f.gen_ms[m].at(s) > 0) {
        std::printf(" %10.2f", f.gen_ms[m].at(s));
      } else {
        std::printf(" %10s", "-");
      }
    }
    std::printf("\n");
  }
}

void PrintRecall(const Flags& flags, const Figures& f, const ModelConfig& config) {
  std::printf(
      "\nkey-as-query recall@%d against exact top-%d over the same stored keys (%d held-out "
      "real keys per store x %zu stores; tie-aware: result's exact score >= the exact K-th). "
      "Keys are not the memory layers' queries: fot-dict-eval measures recall on those\n",
      flags.top_k, flags.top_k, flags.recall_queries,
      config.mem_layers.size() * config.num_key_value_heads);
  for (Kind kind : {kHnsw, kIvf}) {
    for (const auto& [size, r] : f.recall[kind]) {
      std::printf(
          "  %-5s %5s  recall %.4f  tie-aware %.4f  (searching 2K, keeping K: %.4f)%s"
          "  overflow entries %lld\n",
          kKindNames[kind], SizeName(size).c_str(), r.strict, r.tie_aware, r.wide,
          r.built ? "" : "  (index not built yet: searched exactly)",
          static_cast<long long>(r.overflow));
    }
  }
}

// The lowest recall of an index that was built; 2 when none was.
double WorstRecall(const Figures& f) {
  double worst = 2;
  for (Kind kind : {kHnsw, kIvf}) {
    for (const auto& [size, r] : f.recall[kind]) {
      if (r.built) worst = std::min(worst, r.strict);
    }
  }
  return worst;
}

void PrintOverhead(const Flags& flags, const Figures& f) {
  std::printf(
      "\nFAISS overhead: KvStore::Search of 512 queries, k=%d, on one store (layer 3, "
      "kv head 0) vs a bare FAISS index of the same structure, same keys/queries/k "
      "(min of %d alternating rounds)\n",
      flags.top_k, flags.overhead_rounds);
  for (Kind kind : {kFlat, kHnsw, kIvf}) {
    if (!f.overhead[kind]) continue;
    const Figures::Overhead& o = *f.overhead[kind];
    std::printf("  %-5s %5s  engine %9.1f ms  bare %9.1f ms  ratio %.2f   [bare: %s]\n",
                kKindNames[kind], SizeName(o.size).c_str(), o.engine_ms, o.bare_ms,
                o.engine_ms / o.bare_ms, o.bare_name.c_str());
    if (!o.alt_name.empty()) {
      std::printf("  %-5s %5s  for comparison, bare %s: %.1f ms (store / this = %.2f)\n", "", "",
                  o.alt_name.c_str(), o.alt_ms, o.engine_ms / o.alt_ms);
    }
  }
}

// The highest engine / bare FAISS time over the kinds measured; 0 when none was.
double WorstOverheadRatio(const Figures& f) {
  double worst = 0;
  for (Kind kind : {kFlat, kHnsw, kIvf}) {
    if (f.overhead[kind])
      worst = std::max(worst, f.overhead[kind]->engine_ms / f.overhead[kind]->bare_ms);
  }
  return worst;
}

// What the bytes target is measured against: a key and a value of head_dim
// f16 elements, 4 x head_dim bytes per entry and head.
double ReferenceBytes(const ModelConfig& config) { return 4.0 * config.head_dim(); }

void PrintBytes(const Figures& f, const ModelConfig& config) {
  std::printf(
      "\nbytes of memory per stored token (KvMemory::bytes() / entries; per layer = all "
      "8 kv heads of that layer)\n");
  for (const auto& [name, by_size] : f.bytes) {
    for (const auto& [size, b] : by_size) {
      std::printf(
          "  %-9s %5s  layer3 %7.1f  layer6 %7.1f  total %7.1f  per entry per head "
          "%6.1f  (= %.2f x 4*head_dim)\n",
          name.c_str(), SizeName(size).c_str(), b.per_layer[0],
          b.per_layer.size() > 1 ? b.per_layer[1] : 0.0, b.total,
          b.per_layer[0] / config.num_key_value_heads,
          b.per_layer[0] / config.num_key_value_heads / ReferenceBytes(config));
    }
  }
}

// The largest flat f16 bytes per entry and head over the sizes; 0 when none was measured.
double FlatF16BytesPerHead(const Figures& f, const ModelConfig& config) {
  double most = 0;
  const auto it = f.bytes.find("flat f16");
  if (it == f.bytes.end()) return most;
  for (const auto& [size, b] : it->second) {
    most = std::max(most, b.per_layer[0] / config.num_key_value_heads);
  }
  return most;
}

// Insert rates and what appending one window costs at them, as one line each.
void PrintInsertRates(const Figures& f) {
  std::printf("\ninsert rates (vectors/s summed over the stores, including encoding): ");
  for (int k = 0; k < kNumKinds; ++k) {
    if (f.fill[k].seconds > 0) std::printf("%s %.0f  ", kKindNames[k], InsertRate(f.fill[k]));
  }
  if (f.hnsw_graph_inserts.seconds > 0) {
    std::printf("(HNSW graph inserts after the %lld-key build: %.0f/s)",
                static_cast<long long>(kHnswBuildSize), InsertRate(f.hnsw_graph_inserts));
  }
  std::printf("\nappending one window to memory (512 tokens x 16 stores) at these rates: ");
  for (int k = 0; k < kNumKinds; ++k) {
    if (f.fill[k].seconds > 0) {
      std::printf("%s %.3f s  ", kKindNames[k], 512.0 * 16 / InsertRate(f.fill[k]));
    }
  }
  std::printf("\n");
}

// Why a window of mode `m` at `size` was not run.
std::string WhyNotRun(const Flags& flags, Mode m, int64_t size) {
  if (size <= WindowMax(flags, m)) return "benchmark filter or error";
  return absl::StrFormat("> --%s_window_max_tokens", m == kDense     ? "dense"
                                                     : m == kKnnFlat ? "flat"
                                                     : m == kKnnHnsw ? "hnsw"
                                                                     : "ivf");
}

void PrintSkipped(const Flags& flags, const Figures& f) {
  std::printf("\nskipped or approximated in this run:\n");
  if (f.hnsw_graph_inserts.seconds > 0) {
    const double rate = InsertRate(f.hnsw_graph_inserts);
    for (int64_t s : kSizes) {
      if (s > KindMax(flags, kHnsw) && s <= flags.max_memory_tokens) {
        std::printf("  hnsw at %s: not built (%lld inserts at %.0f/s would take ~%.0f s)\n",
                    SizeName(s).c_str(), static_cast<long long>(s * 16), rate, s * 16 / rate);
      }
    }
  }
  for (int m = 0; m < kNumModes; ++m) {
    const Mode mode = static_cast<Mode>(m);
    for (int64_t s : kSizes) {
      if (s > flags.max_memory_tokens || s > KindMax(flags, KindOf(mode))) continue;
      if (f.window_tokens_per_s[m].count(s)) continue;
      bool ex = false;
      WindowRate(f, mode, s, &ex);
      std::printf("  %s window at %s: not run (%s)%s\n", kModeNames[m], SizeName(s).c_str(),
                  WhyNotRun(flags, mode, s).c_str(), ex ? "; extrapolated above (~)" : "");
    }
  }
  std::printf("  recall only up to %s; sizes above %lld hold perturbed repeats of the real rows\n",
              SizeName(flags.recall_max_tokens).c_str(), static_cast<long long>(f.source_rows));
}

// The speed targets: knn ivf against dense processing, and generation with
// memory against generation without.
void PrintSpeedTargets(const Figures& f) {
  for (const int64_t size : {int64_t{131072}, int64_t{1} << 20}) {
    bool ex_ivf = false, ex_dense = false;
    const double ivf = WindowRate(f, kKnnIvf, size, &ex_ivf);
    const double dense = WindowRate(f, kDense, size, &ex_dense);
    if (ivf > 0 && dense > 0) {
      std::printf(
          "processing at %s tokens of memory: knn ivf %.1f vs dense %.1f tokens/s = "
          "%.2fx%s   (target >= 5x: %s)\n",
          SizeName(size).c_str(), ivf, dense, ivf / dense,
          ex_ivf || ex_dense ? " (partly extrapolated)" : "", ivf / dense >= 5 ? "met" : "NOT met");
    } else {
      std::printf("processing at %s: not measured in this run\n", SizeName(size).c_str());
    }
  }
  for (Mode m : {kKnnIvf, kKnnHnsw}) {
    const int64_t size = f.gen_ms[m].empty() ? 0 : f.gen_ms[m].rbegin()->first;
    if (size == 0 || !f.gen_empty_ms.count(size)) continue;
    const double ratio = f.gen_ms[m].at(size) / f.gen_empty_ms.at(size);
    std::printf(
        "generation with %s tokens of memory (%s): %.2f ms vs %.2f ms empty = %.2fx   "
        "(target <= 1.5x at 1M: %s)\n",
        SizeName(size).c_str(), kModeNames[m], f.gen_ms[m].at(size), f.gen_empty_ms.at(size), ratio,
        size < 1048576 ? "not measured at 1M"
        : ratio <= 1.5 ? "met"
                       : "NOT met");
  }
}

// The recall, FAISS overhead and bytes-per-entry targets.
void PrintQualityTargets(const Flags& flags, const Figures& f, const ModelConfig& config) {
  const double worst_recall = WorstRecall(f);
  if (worst_recall <= 1) {
    std::printf(
        "key-as-query recall@%d, default index parameters, worst over built indexes: %.4f   "
        "(target >= 0.95: %s)\n",
        flags.top_k, worst_recall, worst_recall >= 0.95 ? "met" : "NOT met");
  }
  const double worst_ratio = WorstOverheadRatio(f);
  if (worst_ratio > 0) {
    std::printf("FAISS overhead ratio, worst kind: %.2f   (target <= 1.2: %s)\n", worst_ratio,
                worst_ratio <= 1.2 ? "met" : "NOT met");
  }
  const double flat_f16_per_head = FlatF16BytesPerHead(f, config);
  const double reference = ReferenceBytes(config);
  if (flat_f16_per_head > 0) {
    std::printf(
        "flat f16 bytes per entry per head: %.1f vs 4 x head_dim = %.0f: +%.1f%%   "
        "(target within 30%%: %s)\n",
        flat_f16_per_head, reference, 100 * (flat_f16_per_head / reference - 1),
        flat_f16_per_head <= 1.3 * reference ? "met" : "NOT met");
  }
}

}  // namespace

void PrintSummary(const Flags& flags, const Figures& f, const ModelConfig& config) {
  PrintSetup(flags, f, config);
  PrintWindowTable(flags, f);
  PrintGenerationTable(flags, f);
  PrintRecall(flags, f, config);
  PrintOverhead(flags, f);
  PrintBytes(f, config);
  PrintInsertRates(f);
  std::printf("peak RSS: %.0f MiB\n", PeakRssMiB());
  PrintSkipped(flags, f);
  std::printf("\n== targets (issues 3 and 13) ==\n");
  PrintSpeedTargets(f);
  PrintQualityTargets(flags, f, config);
}

}  // namespace fot::memory_bench
