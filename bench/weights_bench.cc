// weights-bench: a random checkpoint of a published LongLLaMA shape, stored in
// bf16, loaded with its weights kept as f32, bf16 (in place) and int8; for
// each: load time, RSS after load and at peak, processing speed of an input,
// generation ms/token after it, and the weight-read bound of generation:
// bytes of weights one token reads / the read bandwidth measured in this run.
//
//   build/weights-bench --shape longllama-3b [--tokens 1024] [--steps 16]
//                       [--dtypes f32,bf16,int8] [--dir /tmp/...]
//
// The checkpoint is written first if --dir has none (fot-make-model's
// writer, about a minute for the 3B shape). Each dtype runs in a process of
// its own (this binary again, with --run_one), so that peak RSS is its own.
// Threads: OMP_NUM_THREADS (the machine's cores by default). On a shared
// machine the "cores obtained" column (CPU seconds / wall seconds) says how
// much of them the runs got.
#include <omp.h>
#include <stdio.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "base/command_line.h"
#include "base/status_macros.h"
#include "src/checkpoint/random_checkpoint.h"
#include "src/engine/engine.h"
#include "src/model/kernels.h"

ABSL_FLAG(std::string, shape, "longllama-3b", "longllama-3b or longllama-7b");
ABSL_FLAG(std::string, dir, "", "checkpoint folder (default: a folder of the temporary directory)");
ABSL_FLAG(std::string, dtypes, "f32,bf16,int8", "weights dtypes to load the bf16 checkpoint as");
ABSL_FLAG(int, tokens, 1024, "tokens of the input processed before generating");
ABSL_FLAG(int, steps, 16, "tokens generated after it, one at a time through the local cache");
ABSL_FLAG(std::string, run_one, "", "(internal) run one dtype in this process and print it");

namespace fot {
namespace {

// Page faults that had to read the disk so far (weights evicted from the
// page cache come back this way).
double MajorFaults() {
  rusage usage;
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_majflt);
}

// CPU seconds this process has used (all threads).
double CpuSeconds() {
  rusage usage;
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_utime.tv_sec + usage.ru_stime.tv_sec +
         (usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) * 1e-6;
}

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// A field of /proc/self/status in bytes ("VmRSS", "VmHWM").
double StatusBytes(const std::string& field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(field + ":", 0) == 0) return std::stod(line.substr(field.size() + 1)) * 1024;
  }
  return 0;
}

// Read bandwidth of memory: the best of a few passes summing a 1 GiB buffer
// with `threads` threads, each its own part.
double ReadBandwidth(int threads) {
  const size_t count = (size_t{1} << 30) / sizeof(uint64_t);
  std::vector<uint64_t> buffer(count, 1);
  double best = 0;
  for (int pass = 0; pass < 4; ++pass) {
    const double start = Now();
    uint64_t total = 0;
#pragma omp parallel for reduction(+ : total) schedule(static) num_threads(threads)
    for (size_t i = 0; i < count; ++i) total += buffer[i];
    const double seconds = Now() - start;
    if (total != count) std::fprintf(stderr, "weights-bench: bad sum\n");
    best = std::max(best, static_cast<double>(count * sizeof(uint64_t)) / seconds);
  }
  return best;
}

// One dtype, in this process: prints "key=value ..." on stdout.
absl::Status RunOne(const std::string& dir, const std::string& dtype) {
  FOT_ASSIGN_OR_RETURN(const WeightsOptions options, ParseWeightsOptions(dtype));
  const double load_start = Now();
  FOT_ASSIGN_OR_RETURN(std::unique_ptr<Engine> engine, Engine::Load(dir, options));
  const double load_s = Now() - load_start;
  const double rss_load = StatusBytes("VmRSS");
  const ModelConfig& config = engine->config();
  const ModelWeights& weights = engine->transformer().weights();

  std::mt19937 rng(5);
  std::vector<int> ids(static_cast<size_t>(absl::GetFlag(FLAGS_tokens)));
  for (int& id : ids) id = 3 + static_cast<int>(rng() % (config.vocab_size - 3));
  FOT_ASSIGN_OR_RETURN(ModelState state, engine->NewState());
  std::vector<float> last(config.vocab_size);
  const LogitsSink keep = [&](int64_t, int64_t rows, const float* l) {
    std::copy(l + (rows - 1) * config.vocab_size, l + rows * config.vocab_size, last.begin());
  };
  const double prefill_start = Now(), prefill_cpu = CpuSeconds(), load_faults = MajorFaults();
  FOT_RETURN_IF_ERROR(engine->Prefill(ids, std::min<int>(config.last_context_length, ids.size()),
                                      &state, LogitsMode::kLast, keep));
  const double prefill_s = Now() - prefill_start;
  const double prefill_cores = (CpuSeconds() - prefill_cpu) / prefill_s;
  const double steps_start = Now(), steps_cpu = CpuSeconds(), prefill_faults = MajorFaults();
  std::vector<double> step_ms;
  for (int i = 0; i < absl::GetFlag(FLAGS_steps); ++i) {
    const int token = ArgMax(last.data(), config.vocab_size);
    const double start = Now();
    FOT_RETURN_IF_ERROR(engine->Append({&token, 1}, &state, LogitsMode::kLast, keep));
    step_ms.push_back((Now() - start) * 1e3);
  }
  const double step_cores = (CpuSeconds() - steps_cpu) / (Now() - steps_start);
  const double step_faults = MajorFaults() - prefill_faults;
  std::sort(step_ms.begin(), step_ms.end());
  const double rss_peak = StatusBytes("VmHWM");
  const size_t weight_bytes = weights.weight_bytes(), resident = weights.resident_weight_bytes();
  const std::string kept = WeightTypeName(weights.layer(0).gate_proj.type);
  engine.reset();  // (before the bandwidth buffer)
  // The machine is shared: its bandwidth is measured right after the steps.
  const double bandwidth = ReadBandwidth(omp_get_max_threads());
  const double bandwidth_1 = ReadBandwidth(1);
  std::printf(
      "load_s=%.3f rss_load=%.0f rss_peak=%.0f prefill_s=%.3f step_ms=%.2f step_min_ms=%.2f "
      "weight_bytes=%zu resident=%zu bandwidth=%.0f bandwidth_1=%.0f prefill_cores=%.2f "
      "step_cores=%.2f "
      "faults_prefill=%.0f faults_steps=%.0f kept=%s\n",
      load_s, rss_load, rss_peak, prefill_s, step_ms[step_ms.size() / 2], step_ms[0], weight_bytes,
      resident, bandwidth, bandwidth_1, prefill_cores, step_cores, prefill_faults - load_faults,
      step_faults, kept.c_str());
  return absl::OkStatus();
}

std::map<std::string, double> ParseFields(const std::string& line, std::string* kept) {
  std::map<std::string, double> fields;
  for (absl::string_view part : absl::StrSplit(line, ' ', absl::SkipWhitespace())) {
    const size_t eq = part.find('=');
    if (eq == absl::string_view::npos) continue;
    const std::string key(part.substr(0, eq)), value(part.substr(eq + 1));
    if (key == "kept") {
      *kept = std::string(absl::StripAsciiWhitespace(value));
    } else {
      fields[key] = std::stod(value);
    }
  }
  return fields;
}

absl::Status Main(const char* self) {
  const std::string shape = absl::GetFlag(FLAGS_shape);
  std::string dir = absl::GetFlag(FLAGS_dir);
  if (dir.empty()) {
    dir = (std::filesystem::temp_directory_path() / ("fotserve_bench_" + shape + "_bf16")).string();
  }
  if (const std::string one = absl::GetFlag(FLAGS_run_one); !one.empty()) return RunOne(dir, one);

  FOT_ASSIGN_OR_RETURN(const ModelConfig config, PublishedShape(shape));
  if (!std::filesystem::exists(dir + "/model.safetensors")) {
    std::fprintf(stderr, "weights-bench: writing a random %s checkpoint in bf16 to %s\n",
                 shape.c_str(), dir.c_str());
    RandomCheckpointOptions options;
    options.dtype = DType::kBF16;
    FOT_RETURN_IF_ERROR(WriteRandomCheckpoint(dir, config, options));
  }
  const double file_bytes =
      static_cast<double>(std::filesystem::file_size(dir + "/model.safetensors"));
  double bandwidth = ReadBandwidth(omp_get_max_threads());
  const int tokens = absl::GetFlag(FLAGS_tokens);
  // Multiply-adds of one token through the matrices (lm_head included),
  // for the processing rate in GFLOP/s.
  const double macs = static_cast<double>(config.num_hidden_layers) *
                          (4.0 * config.hidden_size * config.hidden_size +
                           3.0 * config.hidden_size * config.intermediate_size) +
                      static_cast<double>(config.vocab_size) * config.hidden_size;
  std::printf(
      "%s (random weights), checkpoint %.2f GB bf16, %d threads; input of %d tokens (W %d, L "
      "%d), then %d tokens generated\n\n",
      shape.c_str(), file_bytes / 1e9, omp_get_max_threads(), tokens,
      config.max_position_embeddings, config.last_context_length, absl::GetFlag(FLAGS_steps));
  std::printf(
      "| weights | load s | RSS after load GB | peak RSS GB | processing tokens/s (GFLOP/s) | "
      "generation ms/token, median (best) | bound: bytes / bandwidth = ms/token | median / bound "
      "| cores obtained (processing / generation) | disk reads (processing / generation) |\n"
      "|---|---|---|---|---|---|---|---|---|---|\n");
  const std::vector<std::string> dtypes = absl::StrSplit(absl::GetFlag(FLAGS_dtypes), ',');
  for (const std::string& dtype : dtypes) {
    const std::string command =
        absl::StrCat(self, " --run_one=", dtype, " --dir=", dir, " --shape=", shape,
                     " --tokens=", tokens, " --steps=", absl::GetFlag(FLAGS_steps));
    FILE* pipe = popen(command.c_str(), "r");
    if (pipe == nullptr) return absl::InternalError("popen failed");
    std::string output;
    char buffer[4096];
    while (size_t n = fread(buffer, 1, sizeof(buffer), pipe)) output.append(buffer, n);
    if (pclose(pipe) != 0) {
      return absl::InternalError(absl::StrCat(dtype, ": the run failed: ", output));
    }
    std::string kept;
    std::map<std::string, double> f = ParseFields(output, &kept);
    // The machine is shared: its bandwidth is the best seen in this run.
    bandwidth = std::max({bandwidth, f["bandwidth"], f["bandwidth_1"]});
    const double bound_ms = f["weight_bytes"] / bandwidth * 1e3;
    std::printf(
        "| %s (%s) | %.2f | %.2f | %.2f | %.1f (%.0f) | %.0f (%.0f) | %.2f GB / %.1f GB/s = %.0f "
        "| %.2fx | %.2f / %.2f | %.0f / %.0f |\n",
        dtype.c_str(), kept.c_str(), f["load_s"], f["rss_load"] / 1e9, f["rss_peak"] / 1e9,
        tokens / f["prefill_s"], 2 * macs * tokens / f["prefill_s"] / 1e9, f["step_ms"],
        f["step_min_ms"], f["weight_bytes"] / 1e9, bandwidth / 1e9, bound_ms,
        f["step_ms"] / bound_ms, f["prefill_cores"], f["step_cores"], f["faults_prefill"],
        f["faults_steps"]);
    std::fflush(stdout);
  }
  std::printf(
      "\nbound: bytes of weights one token reads (layers, norms, lm_head) / the best read "
      "bandwidth measured in this run so far (1 GiB summed by all threads or one, at the start "
      "and after each row's steps); disk reads: major page faults; peak RSS includes the "
      "checkpoint pages the process touched and the local cache of the window\n");
  return absl::OkStatus();
}

}  // namespace
}  // namespace fot

int main(int argc, char** argv) {
  fot::ParseCommandLine(argc, argv, "weights-bench [flags]: f32, bf16 and int8 weights, 3B/7B");
  const std::string self = std::filesystem::read_symlink("/proc/self/exe").string();
  if (absl::Status status = fot::Main(self.c_str()); !status.ok()) {
    std::fprintf(stderr, "weights-bench: %s\n", std::string(status.message()).c_str());
    return 1;
  }
  return 0;
}
