// Λ-shaped attention benchmark (issue 6) on the mid-size model of
// engine_bench.cc (hidden 512, 8 layers, 8 heads, vocab 32000, W 512, memory
// layers 3 and 6): per-token generation latency and process RSS as one stream
// grows towards 1M tokens,
//   lambda  n_global 4, local window 512, no memory layers: the state is 4 + 512
//           entries per layer however long the stream;
//   fot     the dense FoT path: every window of 512 goes to the memory of
//           layers 3 and 6, which every later token reads in full.
// The stream is fed with random tokens (no logits); at each checkpoint (1k,
// 2k, 4k, ... tokens) it times --gen_tokens generated tokens (Append of one
// token with its logits; fot: on a private overlay with an empty local cache,
// so the stream itself holds whole windows only). A path stops at
// --max_tokens or when its wall-time budget is spent, and says so, with a last
// point at the length reached: the dense path's memory read grows with the
// stream (quadratic feeding), and feeding 1M tokens through the model at all
// takes longer than the default budgets on a small machine.
//
//   lambda_bench [--paths=lambda,fot] [--max_tokens=1048576]
//                [--lambda_budget_s=330] [--fot_budget_s=210]
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "base/command_line.h"
#include "bench/mid_size_model.h"
#include "src/checkpoint/random_checkpoint.h"
#include "src/engine/engine.h"
#include "src/model/lambda_stream_cache.h"

ABSL_FLAG(std::string, paths, "lambda,fot", "Which paths to run, in order: lambda, fot");
ABSL_FLAG(int64_t, max_tokens, 1 << 20, "Largest stream length measured");
ABSL_FLAG(double, lambda_budget_s, 330, "Wall-clock seconds for the lambda path");
ABSL_FLAG(double, fot_budget_s, 210, "Wall-clock seconds for the fot path");
ABSL_FLAG(int, gen_tokens, 32, "Generated tokens timed at each checkpoint");
ABSL_FLAG(int, n_global, 4, "lambda: tokens of the global branch");

namespace fot {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}

double RssMiB() {  // current resident set, /proc/self/statm
  std::ifstream statm("/proc/self/statm");
  long pages = 0, resident = 0;
  statm >> pages >> resident;
  return resident * static_cast<double>(sysconf(_SC_PAGESIZE)) / (1 << 20);
}

// What grows with the stream: lambda's sinks and rings, and memory (fot's
// fixed-size local caches are left out).
double StateMiB(const ModelState& state) {
  double bytes = 0;
  if (const auto* lambda = dynamic_cast<const LambdaStreamCache*>(state.cache.get())) {
    for (const LambdaCache& cache : lambda->layers()) bytes += cache.floats() * sizeof(float);
  }
  for (const auto& memory : state.memory) {
    if (memory != nullptr) bytes += memory->bytes();
  }
  return bytes / (1 << 20);
}

struct Point {
  int64_t tokens;
  double median_ms, min_ms, rss_mib, state_mib, feed_tokens_per_s;
};

class Stream {
 public:
  explicit Stream(uint32_t seed) : rng_(seed) {}
  std::vector<int> Next(int64_t n, int vocab) {
    std::vector<int> ids(n);
    for (int& id : ids) id = static_cast<int>(rng_() % vocab);
    return ids;
  }

 private:
  std::mt19937 rng_;
};

// Times `count` one-token Appends with logits on `state`.
absl::Status TimeGeneration(const Engine& engine, ModelState* state, int count, Stream* stream,
                            double* median_ms, double* min_ms) {
  std::vector<double> ms;
  const auto ignore = [](int64_t, int64_t, const float*) {};
  for (int i = 0; i < count; ++i) {
    const std::vector<int> token = stream->Next(1, engine.config().vocab_size);
    const auto start = Clock::now();
    absl::Status status = engine.Append(token, state, LogitsMode::kLast, ignore);
    if (!status.ok()) return status;
    ms.push_back(1e3 * Seconds(start));
  }
  std::sort(ms.begin(), ms.end());
  *median_ms = ms[ms.size() / 2];
  *min_ms = ms.front();  // the least disturbed by other work on the machine
  return absl::OkStatus();
}

absl::Status RunPath(const Engine& engine, const std::string& path, std::vector<Point>* points,
                     std::string* stop_reason) {
  const int window = engine.config().max_position_embeddings;
  const bool lambda = path == "lambda";
  AttentionOptions attention;
  if (lambda) {
    attention.mode = AttentionMode::kLambda;
    attention.n_global = absl::GetFlag(FLAGS_n_global);
    attention.memory_layers = std::vector<int>{};  // flat: no memory
  }
  absl::StatusOr<ModelState> created = engine.NewState(engine.DefaultMemoryOptions(), attention);
  if (!created.ok()) return created.status();
  ModelState state = *std::move(created);
  Stream stream(7);
  const int vocab = engine.config().vocab_size;
  const int64_t max_tokens = absl::GetFlag(FLAGS_max_tokens);
  const double budget =
      lambda ? absl::GetFlag(FLAGS_lambda_budget_s) : absl::GetFlag(FLAGS_fot_budget_s);
  const auto start = Clock::now();
  int64_t fed = 0;
  double feed_seconds = 0;
  *stop_reason = "reached --max_tokens";
  for (int64_t checkpoint = 1024; checkpoint <= max_tokens; checkpoint *= 2) {
    // Feed up to the checkpoint: lambda in calls of 8 windows, fot window by
    // window into memory.
    const auto feed_start = Clock::now();
    const int64_t before = fed;
    while (fed < checkpoint) {
      if (Seconds(start) > budget) break;
      const int64_t n = std::min<int64_t>(lambda ? 8 * window : window, checkpoint - fed);
      const std::vector<int> ids = stream.Next(n, vocab);
      absl::Status status = lambda ? engine.Append(ids, &state, LogitsMode::kNone, nullptr)
                                   : engine.ProcessWindow(ids, &state);
      if (!status.ok()) return status;
      fed += n;
    }
    feed_seconds += Seconds(feed_start);
    Point point{fed, 0, 0, 0, 0, (fed - before) / std::max(1e-9, Seconds(feed_start))};
    // Generation at this stream length.
    if (lambda) {
      absl::Status status = TimeGeneration(engine, &state, absl::GetFlag(FLAGS_gen_tokens), &stream,
                                           &point.median_ms, &point.min_ms);
      if (!status.ok()) return status;
      point.state_mib = StateMiB(state);
      point.rss_mib = RssMiB();
    } else {
      absl::StatusOr<ModelState> overlay = engine.NewOverlayState(state);
      if (!overlay.ok()) return overlay.status();
      absl::Status status = TimeGeneration(engine, &*overlay, absl::GetFlag(FLAGS_gen_tokens),
                                           &stream, &point.median_ms, &point.min_ms);
      if (!status.ok()) return status;
      point.state_mib = StateMiB(state);
      point.rss_mib = RssMiB();
    }
    points->push_back(point);
    std::printf(
        "%-6s stream %8lld tokens: generation %7.2f ms/token (median; min %7.2f)  "
        "state %8.1f MiB  RSS %7.0f MiB  fed at %6.0f tokens/s  [%.0f s]\n",
        path.c_str(), static_cast<long long>(point.tokens), point.median_ms, point.min_ms,
        point.state_mib, point.rss_mib, point.feed_tokens_per_s, Seconds(start));
    std::fflush(stdout);
    if (fed < checkpoint) {
      *stop_reason = absl::StrFormat("time budget (%.0f s) spent at %lld tokens", budget,
                                     static_cast<long long>(fed));
      break;
    }
  }
  return absl::OkStatus();
}

int Main(int argc, char** argv) {
  const std::vector<std::string> positional =
      ParseCommandLine(argc, argv,
                       "lambda_bench [--paths=lambda,fot] [--max_tokens=N] [--lambda_budget_s=S] "
                       "[--fot_budget_s=S]");
  if (!positional.empty()) {
    std::fprintf(stderr, "lambda_bench: unexpected argument '%s'\n", positional[0].c_str());
    return 2;
  }
  const ModelConfig config = MidSizeConfig();
  auto engine = LoadMidSizeModel();
  if (!engine.ok()) {
    std::fprintf(stderr, "lambda_bench: %s\n", std::string(engine.status().message()).c_str());
    return 1;
  }
  std::printf(
      "mid-size model; lambda: n_global %d, L %d, no memory layers; fot: dense memory "
      "in layers 3, 6; %d generated tokens timed per point; RSS at start %.0f MiB\n",
      absl::GetFlag(FLAGS_n_global), config.max_position_embeddings,
      absl::GetFlag(FLAGS_gen_tokens), RssMiB());
  std::vector<std::pair<std::string, std::vector<Point>>> results;
  for (const absl::string_view name : absl::StrSplit(absl::GetFlag(FLAGS_paths), ',')) {
    const std::string path(name);
    if (path != "lambda" && path != "fot") {
      std::fprintf(stderr, "lambda_bench: unknown path '%s'\n", path.c_str());
      return 2;
    }
    std::vector<Point> points;
    std::string stop_reason;
    if (absl::Status s = RunPath(**engine, path, &points, &stop_reason); !s.ok()) {
      std::fprintf(stderr, "lambda_bench: %s: %s\n", path.c_str(),
                   std::string(s.message()).c_str());
      return 1;
    }
    std::printf("%-6s stopped: %s\n", path.c_str(), stop_reason.c_str());
    results.emplace_back(path, std::move(points));
  }

  std::printf("\n== lambda vs dense FoT (mid-size model, this machine, this run) ==\n");
  std::printf("%-7s %10s %12s %12s %12s %10s\n", "path", "stream", "median ms", "min ms",
              "state MiB", "RSS MiB");
  for (const auto& [path, points] : results) {
    for (const Point& p : points) {
      std::printf("%-7s %10lld %12.2f %12.2f %12.1f %10.0f\n", path.c_str(),
                  static_cast<long long>(p.tokens), p.median_ms, p.min_ms, p.state_mib, p.rss_mib);
    }
  }
  return 0;
}

}  // namespace
}  // namespace fot

int main(int argc, char** argv) { return fot::Main(argc, argv); }
