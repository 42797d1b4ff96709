// Core engine benchmark on a random mid-size LongLLaMA model (hidden 512,
// 8 layers, 8 heads, intermediate 1376, vocab 32000, W 512, memory layers 3
// and 6): processing speed at 2k/8k/32k tokens, generation latency after an 8k
// prefill, peak RSS, and the engine's matrix-product throughput next to bare
// OpenBLAS sgemm on the same shapes, all measured in this run.
//
//   engine_bench [--benchmark_filter=...]    (Google Benchmark flags)
#include <cblas.h>
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "base/command_line.h"
#include "bench/mid_size_model.h"
#include "benchmark/benchmark.h"
#include "src/checkpoint/random_checkpoint.h"
#include "src/engine/engine.h"
#include "src/model/kernels.h"

namespace fot {
namespace {

std::vector<int> RandomTokens(int n, int vocab) {
  std::mt19937 rng(1);
  std::vector<int> ids(n);
  for (int& id : ids) id = static_cast<int>(rng() % vocab);
  return ids;
}

double PeakRssMiB() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_maxrss / 1024.0;  // kilobytes on Linux
}

// Floating-point operations of the linear layers for one token (2 per MAC),
// lm_head included.
double LinearFlopsPerToken(const ModelConfig& c) {
  const double h = c.hidden_size, kv = c.num_key_value_heads * c.head_dim();
  const double per_layer = h * h * 2 + h * kv * 2 + 3 * h * c.intermediate_size;
  return 2 * (c.num_hidden_layers * per_layer + h * c.vocab_size);
}

struct Figures {
  std::map<int, double> prefill_tokens_per_s;
  double all_logits_tokens_per_s = 0;
  double generate_ms_per_token = 0;
  double peak_rss_mib = 0;
  std::map<std::string, double> engine_gflops, sgemm_gflops;
};

struct Shape {
  std::string name;
  int n, in, out;
};

std::vector<Shape> LinearShapes(const ModelConfig& c, int n) {
  return {{"qkvo", n, c.hidden_size, c.hidden_size},
          {"gate_up", n, c.hidden_size, c.intermediate_size},
          {"down", n, c.intermediate_size, c.hidden_size},
          {"lm_head", n, c.hidden_size, c.vocab_size}};
}

void RegisterAll(const Engine& engine, Figures* figures) {
  const ModelConfig& config = engine.config();
  // Prefill keeps only the last token's logits (what ingesting a document
  // needs; a [32k × 32000] logits matrix would be 4 GB). PrefillAllLogits
  // computes every position's logits, as the published code's forward does.
  struct PrefillCase {
    const char* name;
    int tokens;
    LogitsMode mode;
  };
  for (const PrefillCase& c : {PrefillCase{"Prefill", 2048, LogitsMode::kLast},
                               PrefillCase{"Prefill", 8192, LogitsMode::kLast},
                               PrefillCase{"PrefillAllLogits", 8192, LogitsMode::kAll},
                               PrefillCase{"Prefill", 32768, LogitsMode::kLast}}) {
    benchmark::RegisterBenchmark(
        absl::StrFormat("%s/%d", c.name, c.tokens).c_str(),
        [&engine, c](benchmark::State& state) {
          const std::vector<int> ids = RandomTokens(c.tokens, engine.config().vocab_size);
          for (auto _ : state) {
            ModelState model_state = *engine.NewState();
            absl::Status status =
                engine.Prefill(ids, engine.config().last_context_length, &model_state, c.mode,
                               [](int64_t, int64_t, const float*) {});
            if (!status.ok()) state.SkipWithError(std::string(status.message()).c_str());
          }
          state.counters["tokens_per_s"] =
              benchmark::Counter(c.tokens, benchmark::Counter::kIsIterationInvariantRate);
        })
        ->Unit(benchmark::kSecond)
        ->Iterations(1)
        ->UseRealTime();
  }
  benchmark::RegisterBenchmark(
      "GenerateAfterPrefill/8192",
      [&engine](benchmark::State& state) {
        const std::vector<int> ids = RandomTokens(8192, engine.config().vocab_size);
        ModelState model_state = *engine.NewState();
        const auto ignore = [](int64_t, int64_t, const float*) {};
        if (!engine
                 .Prefill(ids, engine.config().last_context_length, &model_state, LogitsMode::kLast,
                          ignore)
                 .ok()) {
          state.SkipWithError("prefill failed");
        }
        int token = 1;
        for (auto _ : state) {
          // One generated token: append it, get its logits.
          absl::Status status = engine.Append({&token, 1}, &model_state, LogitsMode::kLast, ignore);
          if (!status.ok()) state.SkipWithError(std::string(status.message()).c_str());
          token = (token * 7 + 3) % engine.config().vocab_size;
        }
      })
      ->Unit(benchmark::kMillisecond)
      ->Iterations(300)
      ->UseRealTime();

  // Matrix products of one window (512 rows): the engine's Linear against a
  // bare cblas_sgemm with the same arguments' shapes.
  for (const Shape& shape : LinearShapes(config, config.max_position_embeddings)) {
    auto run = [shape](benchmark::State& state, bool bare) {
      std::vector<float> x(size_t(shape.n) * shape.in, 0.5f),
          w(size_t(shape.out) * shape.in, 0.25f), y(size_t(shape.n) * shape.out);
      for (auto _ : state) {
        if (bare) {
          cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, shape.n, shape.out, shape.in, 1.0f,
                      x.data(), shape.in, w.data(), shape.in, 0.0f, y.data(), shape.out);
        } else {
          Linear(x.data(), shape.n, shape.in, w.data(), shape.out, y.data());
        }
        benchmark::DoNotOptimize(y.data());
      }
      state.counters["GFLOPs"] = benchmark::Counter(2.0 * shape.n * shape.in * shape.out * 1e-9,
                                                    benchmark::Counter::kIsIterationInvariantRate);
    };
    benchmark::RegisterBenchmark(("EngineLinear/" + shape.name).c_str(), [run](
                                                                             benchmark::State& s) {
      run(s, false);
    })->UseRealTime();
    benchmark::RegisterBenchmark(("OpenBlasSgemm/" + shape.name).c_str(), [run](
                                                                              benchmark::State& s) {
      run(s, true);
    })->UseRealTime();
  }
}

// Captures what the summary needs from each run.
class SummaryReporter : public benchmark::ConsoleReporter {
 public:
  explicit SummaryReporter(Figures* figures) : figures_(figures) {}
  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    for (const Run& run : runs) {
      const std::string name = run.benchmark_name();
      if (name.starts_with("Prefill/")) {
        figures_->prefill_tokens_per_s[std::stoi(name.substr(8))] =
            run.counters.at("tokens_per_s").value;
        figures_->peak_rss_mib = PeakRssMiB();
      } else if (name.starts_with("PrefillAllLogits/")) {
        figures_->all_logits_tokens_per_s = run.counters.at("tokens_per_s").value;
      } else if (name.starts_with("GenerateAfterPrefill/")) {
        figures_->generate_ms_per_token = run.GetAdjustedRealTime();
      } else if (name.starts_with("EngineLinear/")) {
        figures_->engine_gflops[name.substr(13, name.find('/', 13) - 13)] =
            run.counters.at("GFLOPs").value;
      } else if (name.starts_with("OpenBlasSgemm/")) {
        figures_->sgemm_gflops[name.substr(14, name.find('/', 14) - 14)] =
            run.counters.at("GFLOPs").value;
      }
    }
  }

 private:
  Figures* figures_;
};

void PrintSummary(const ModelConfig& config, const Figures& f) {
  std::printf("\n== engine summary (mid-size model, this machine, this run) ==\n");
  for (const auto& [tokens, rate] : f.prefill_tokens_per_s) {
    std::printf(
        "processing %6d tokens: %8.1f tokens/s%s\n", tokens, rate,
        tokens == 8192
            ? absl::StrFormat("   (target >= 1500: %s)", rate >= 1500 ? "met" : "NOT met").c_str()
            : "");
  }
  std::printf("generation after 8k prefill: %.2f ms/token   (target <= 25: %s)\n",
              f.generate_ms_per_token, f.generate_ms_per_token <= 25 ? "met" : "NOT met");
  std::printf("peak RSS (process, up to the largest run): %.0f MiB   (target <= 1536: %s)\n",
              f.peak_rss_mib, f.peak_rss_mib <= 1536 ? "met" : "NOT met");
  if (f.all_logits_tokens_per_s > 0) {
    std::printf(
        "processing   8192 tokens with every position's logits: %.1f tokens/s "
        "(published PyTorch code: 417)\n",
        f.all_logits_tokens_per_s);
  }
  // Seconds per token if every linear layer ran at bare sgemm speed.
  double body_seconds = 0, lm_head_seconds = 0;
  for (const Shape& shape : LinearShapes(config, 1)) {
    const double engine = f.engine_gflops.count(shape.name) ? f.engine_gflops.at(shape.name) : 0;
    const double bare = f.sgemm_gflops.count(shape.name) ? f.sgemm_gflops.at(shape.name) : 0;
    // The engine pins OpenBLAS to one thread and splits products over the
    // cores itself, so the bare sgemm here runs on one thread.
    std::printf("matmul %-8s engine %7.1f GFLOP/s   sgemm (1 thread) %7.1f GFLOP/s   ratio %.2f\n",
                shape.name.c_str(), engine, bare, bare > 0 ? engine / bare : 0);
    if (bare <= 0) continue;
    const double flops = 2.0 * shape.in * shape.out;
    if (shape.name == "lm_head") {
      lm_head_seconds = flops / (bare * 1e9);
    } else {
      const int repeats = shape.name == "qkvo" ? 4 : shape.name == "gate_up" ? 2 : 1;
      body_seconds += repeats * config.num_hidden_layers * flops / (bare * 1e9);
    }
  }
  if (body_seconds > 0 && f.prefill_tokens_per_s.count(8192)) {
    const double bound = 1 / body_seconds;
    std::printf(
        "matrix-product bound (1-thread sgemm) without logits: %.0f tokens/s; "
        "Prefill/8192 reaches %.0f%%\n",
        bound, 100 * f.prefill_tokens_per_s.at(8192) / bound);
  }
  if (body_seconds > 0 && lm_head_seconds > 0 && f.all_logits_tokens_per_s > 0) {
    const double bound = 1 / (body_seconds + lm_head_seconds);
    std::printf(
        "matrix-product bound (1-thread sgemm) with all logits: %.0f tokens/s; "
        "PrefillAllLogits/8192 "
        "reaches %.0f%%\n",
        bound, 100 * f.all_logits_tokens_per_s / bound);
  }
  std::printf("linear-layer work: %.1f MFLOP/token\n", LinearFlopsPerToken(config) * 1e-6);
}

int Main(int argc, char** argv) {
  UsePassiveOpenMpWaits(argv);
  benchmark::Initialize(&argc, argv);
  const ModelConfig config = MidSizeConfig();
  auto engine = LoadMidSizeModel();
  if (!engine.ok()) {
    std::fprintf(stderr, "engine_bench: %s\n", std::string(engine.status().message()).c_str());
    return 1;
  }
  Figures figures;
  RegisterAll(**engine, &figures);
  SummaryReporter reporter(&figures);
  benchmark::RunSpecifiedBenchmarks(&reporter);
  PrintSummary(config, figures);
  return 0;
}

}  // namespace
}  // namespace fot

int main(int argc, char** argv) { return fot::Main(argc, argv); }
