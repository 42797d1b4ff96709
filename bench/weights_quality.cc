// weights-quality: what keeping the weights in bf16 or int8 costs in the
// model's outputs, against the same checkpoint in float32, measured rather
// than assumed. For models/fot-dict (on a dictionary document followed by
// questions about its records, the text it was trained on) and the mid-size
// random model (on random token ids):
//
//   - prefill: the logits of every position of the text (windows of W rows:
//     the converted-panel GEMM), max and mean |difference|, the share of
//     positions whose top token is the same, and perplexity (fot-dict: of
//     the answers, the only tokens it was trained to predict; each needs its
//     record from memory or the window);
//   - generation: the last --steps tokens fed one at a time through the local
//     cache (the row kernels: vdpbf16ps, VNNI), max |difference|.
//
//   build/weights-quality [--tokens 4096] [--steps 64] [--dtypes bf16,int8,int8:64]
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "base/command_line.h"
#include "base/status_macros.h"
#include "bench/mid_size_model.h"
#include "src/engine/engine.h"
#include "src/tokenizer/tokenizer.h"
#include "tools/dict_corpus.h"

ABSL_FLAG(std::string, model, FOT_SOURCE_DIR "/models/fot-dict",
          "the trained model, measured on a dictionary document and questions about it");
ABSL_FLAG(bool, mid_size, true, "also the mid-size random model (bench/mid_size_model.h)");
ABSL_FLAG(int, tokens, 4096, "tokens of the text");
ABSL_FLAG(int, steps, 64, "of them, the last ones fed one at a time (generation)");
ABSL_FLAG(std::string, dtypes, "bf16,int8,int8:64", "weights dtypes compared with f32");

namespace fot {
namespace {

// The logits of a run over `ids`: every prefill row, then one per step.
struct Logits {
  std::vector<float> prefill;  // [T - steps, vocab]
  std::vector<float> steps;    // [steps, vocab]
};

absl::StatusOr<Logits> Run(const Engine& engine, const std::vector<int>& ids, int steps) {
  FOT_ASSIGN_OR_RETURN(ModelState state, engine.NewState());
  Logits out;
  const std::vector<int> prompt(ids.begin(), ids.end() - steps);
  FOT_RETURN_IF_ERROR(engine.Prefill(prompt, engine.config().last_context_length, &state,
                                     LogitsMode::kAll, [&](int64_t, int64_t rows, const float* l) {
                                       out.prefill.insert(out.prefill.end(), l,
                                                          l + rows * engine.config().vocab_size);
                                     }));
  for (size_t i = prompt.size(); i < ids.size(); ++i) {
    FOT_RETURN_IF_ERROR(engine.Append(
        {&ids[i], 1}, &state, LogitsMode::kLast, [&](int64_t, int64_t rows, const float* l) {
          out.steps.insert(out.steps.end(), l, l + engine.config().vocab_size);
        }));
  }
  return out;
}

// exp(mean negative log-likelihood of ids[t + 1] under row t), over the
// positions t + 1 that `scored` marks.
double Perplexity(const std::vector<float>& logits, const std::vector<int>& ids,
                  const std::vector<bool>& scored, int vocab) {
  const size_t rows = logits.size() / vocab;
  double nll = 0;
  int64_t count = 0;
  for (size_t t = 0; t < rows; ++t) {  // rows < ids.size()
    if (!scored[t + 1]) continue;
    ++count;
    const float* row = logits.data() + t * vocab;
    const double top = *std::max_element(row, row + vocab);
    double sum = 0;
    for (int v = 0; v < vocab; ++v) sum += std::exp(row[v] - top);
    nll += std::log(sum) + top - row[ids[t + 1]];
  }
  return std::exp(nll / static_cast<double>(count));
}

struct Difference {
  double max = 0, mean = 0;  // of |logit difference|
  double top1 = 0;           // share of rows with the same argmax
  double kl = 0;             // mean KL(reference || other) of the rows' softmax, in nats
};

// log softmax of row[vocab] into out.
void LogSoftmax(const float* row, int vocab, std::vector<double>* out) {
  const double top = *std::max_element(row, row + vocab);
  double sum = 0;
  for (int v = 0; v < vocab; ++v) sum += std::exp(row[v] - top);
  const double log_sum = std::log(sum) + top;
  out->resize(vocab);
  for (int v = 0; v < vocab; ++v) (*out)[v] = row[v] - log_sum;
}

Difference Compare(const std::vector<float>& a, const std::vector<float>& b, int vocab) {
  Difference d;
  const size_t rows = a.size() / vocab;
  for (size_t r = 0; r < rows; ++r) {
    const float* x = a.data() + r * vocab;
    const float* y = b.data() + r * vocab;
    for (int v = 0; v < vocab; ++v) {
      const double diff = std::fabs(x[v] - y[v]);
      d.max = std::max(d.max, diff);
      d.mean += diff;
    }
    d.top1 += std::max_element(x, x + vocab) - x == std::max_element(y, y + vocab) - y;
    std::vector<double> p, q;
    LogSoftmax(y, vocab, &p);  // b is the reference
    LogSoftmax(x, vocab, &q);
    for (int v = 0; v < vocab; ++v) d.kl += std::exp(p[v]) * (p[v] - q[v]);
  }
  d.kl /= static_cast<double>(rows);
  d.mean /= static_cast<double>(a.size());
  d.top1 /= static_cast<double>(rows);
  return d;
}

// The spread of the float32 logits: the scale the differences compare with.
double LogitStd(const std::vector<float>& logits) {
  double sum = 0, squares = 0;
  for (float x : logits) {
    sum += x;
    squares += static_cast<double>(x) * x;
  }
  const double n = static_cast<double>(logits.size());
  return std::sqrt(std::max(0.0, squares / n - (sum / n) * (sum / n)));
}

absl::Status Measure(const std::string& name, const std::string& dir, const std::vector<int>& ids,
                     const std::vector<bool>& scored, int steps,
                     const std::vector<std::string>& dtypes) {
  FOT_ASSIGN_OR_RETURN(std::unique_ptr<Engine> f32,
                       Engine::Load(dir, {.dtype = WeightsDType::kF32}));
  const int vocab = f32->config().vocab_size;
  FOT_ASSIGN_OR_RETURN(const Logits reference, Run(*f32, ids, steps));
  std::printf(
      "\n%s: %zu tokens (%zu prefill + %d generated one at a time); float32 logits std %.3f\n",
      name.c_str(), ids.size(), ids.size() - steps, steps, LogitStd(reference.prefill));
  std::printf("%-9s %9s %15s %9s %10s %11s %11s %16s\n", "weights", "MB/token", "prefill max|d|",
              "mean|d|", "same top1", "KL (nats)", "perplexity", "generation max|d|");
  std::printf("%-9s %9.1f %15s %9s %10s %11s %11.4f %16s\n", "f32",
              f32->transformer().weights().weight_bytes() / 1e6, "-", "-", "-", "-",
              Perplexity(reference.prefill, ids, scored, vocab), "-");
  f32.reset();
  for (const std::string& text : dtypes) {
    FOT_ASSIGN_OR_RETURN(const WeightsOptions options, ParseWeightsOptions(text));
    FOT_ASSIGN_OR_RETURN(std::unique_ptr<Engine> engine, Engine::Load(dir, options));
    FOT_ASSIGN_OR_RETURN(const Logits logits, Run(*engine, ids, steps));
    const Difference prefill = Compare(logits.prefill, reference.prefill, vocab);
    const Difference generation = Compare(logits.steps, reference.steps, vocab);
    std::printf("%-9s %9.1f %15.3g %9.3g %9.1f%% %11.2g %11.4f %16.3g\n", text.c_str(),
                engine->transformer().weights().weight_bytes() / 1e6, prefill.max, prefill.mean,
                100 * prefill.top1, prefill.kl, Perplexity(logits.prefill, ids, scored, vocab),
                generation.max);
  }
  return absl::OkStatus();
}

absl::Status Main() {
  const int tokens = absl::GetFlag(FLAGS_tokens), steps = absl::GetFlag(FLAGS_steps);
  if (steps < 1 || tokens <= steps)
    return absl::InvalidArgumentError("need --tokens > --steps >= 1");
  const std::vector<std::string> dtypes = absl::StrSplit(absl::GetFlag(FLAGS_dtypes), ',');

  const std::string dir = absl::GetFlag(FLAGS_model);
  FOT_ASSIGN_OR_RETURN(std::unique_ptr<Tokenizer> tokenizer,
                       Tokenizer::Load(dir + "/tokenizer.model"));
  FOT_ASSIGN_OR_RETURN(const DictCorpus corpus, DictCorpus::Create(tokenizer.get()));
  FOT_ASSIGN_OR_RETURN(const ModelConfig config, ModelConfig::FromFile(dir + "/config.json"));
  // A window-aligned dictionary, then questions about records drawn from all
  // of it, each followed by its answer: `tokens` in all.
  const int questions = (tokens / 4) / (kDictQueryTokens + kDictAnswerTokens);
  const int64_t records =
      DictCorpus::RecordsToFill(tokens - questions * (kDictQueryTokens + kDictAnswerTokens),
                                config.max_position_embeddings) -
      1;
  std::vector<DictRecord> entries;
  std::vector<int> ids = corpus.Dictionary(records, 7, &entries, config.max_position_embeddings);
  std::vector<bool> scored(ids.size(), false);
  std::mt19937 pick(8);
  while (ids.size() + kDictQueryTokens + kDictAnswerTokens <= static_cast<size_t>(tokens)) {
    const DictRecord& record = entries[pick() % entries.size()];
    for (int id : corpus.Query(record)) ids.push_back(id);
    scored.resize(ids.size(), false);
    for (int id : corpus.Answer(record)) ids.push_back(id);
    scored.resize(ids.size(), true);
  }
  FOT_RETURN_IF_ERROR(Measure(dir, dir, ids, scored, steps, dtypes));

  if (absl::GetFlag(FLAGS_mid_size)) {
    FOT_RETURN_IF_ERROR(LoadMidSizeModel().status());  // writes it if needed
    const std::string mid = MidSizeModelDir();
    std::mt19937 rng(11);
    std::vector<int> ids(static_cast<size_t>(tokens));
    for (int& id : ids) id = static_cast<int>(rng() % MidSizeConfig().vocab_size);
    FOT_RETURN_IF_ERROR(Measure("mid-size random model", mid, ids,
                                std::vector<bool>(ids.size(), true), steps, dtypes));
  }
  return absl::OkStatus();
}

}  // namespace
}  // namespace fot

int main(int argc, char** argv) {
  fot::ParseCommandLine(argc, argv, "weights-quality [flags]: bf16 and int8 weights against f32");
  if (absl::Status status = fot::Main(); !status.ok()) {
    std::fprintf(stderr, "weights-quality: %s\n", std::string(status.message()).c_str());
    return 1;
  }
  return 0;
}
