// fot-run: the offline tool. Runs a prompt (text or token ids) through the
// engine with the window and memory rules of the published LongLLaMA code,
// optionally writes every position's logits, and generates a continuation.
//
//   fot-run --model DIR --prompt "text" --generate 64
//   fot-run --model DIR --input-ids ids.npy --logits-out logits.npy
//
// Logits files (.npy float32): --logits-out holds [T, vocab], one row per
// input token. With --generate N it is accompanied by <stem>.generated.npy,
// [N, vocab]: row i holds the logits after feeding generated token i (the
// layout of golden/greedy_logits.npy).
#include <chrono>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/command_line.h"
#include "base/status_macros.h"
#include "src/checkpoint/npy.h"
#include "src/engine/engine.h"
#include "src/engine/memory_inspection.h"
#include "src/engine/sampler.h"
#include "src/tokenizer/tokenizer.h"

ABSL_FLAG(std::string, model, "", "Model folder: config.json, model.safetensors, tokenizer.model");
ABSL_FLAG(std::string, weights_dtype, "auto",
          "How the weights are kept: auto (as in the file, used in place), f32, bf16, or int8 "
          "(quantized at load in groups of 32 values; int8:64 for groups of 64)");
ABSL_FLAG(std::string, prompt, "", "Prompt text (tokenized with the model's tokenizer.model)");
ABSL_FLAG(std::string, input_ids, "", "Prompt as token ids: a .npy int64 (or int32) vector");
ABSL_FLAG(bool, add_bos, true, "Prepend the BOS token to --prompt text");
ABSL_FLAG(bool, use_cache, false,
          "Generate with the local cache, as the reference's use_cache=True. Without it each "
          "step re-runs the whole sequence (prompt + generated) from scratch, as use_cache=False");
ABSL_FLAG(int, last_context_length, 0,
          "Length L of the last window (default: the config's last_context_length)");
ABSL_FLAG(std::string, logits_out, "", "Write the logits of every input token here (.npy)");
ABSL_FLAG(std::string, generated_ids_out, "", "Write the generated token ids here (.npy int64)");
ABSL_FLAG(int, generate, 0, "Number of tokens to generate");
ABSL_FLAG(bool, ignore_eos, false, "Keep generating past the end-of-sequence token");
ABSL_FLAG(float, temperature, 0.0f, "Sampling temperature; 0 is greedy");
ABSL_FLAG(float, top_p, 1.0f, "Nucleus sampling mass, in (0, 1]");
ABSL_FLAG(uint64_t, seed, 0, "Sampling seed");
ABSL_FLAG(std::string, memory, "dense",
          "How memory layers read memory: 'dense' (every entry, the reference's behaviour) or "
          "'knn:K' (the K entries with the largest inner product, per query and head, as the "
          "index finds them) or 'knn:K:exact' (found by exact search whatever the index)");
ABSL_FLAG(std::string, index, "flat",
          "FAISS index of the memory: flat, hnsw or ivf, with parameters as in "
          "'hnsw:m=32,ef_search=1024' or 'ivf:max_scan=0.1' (ivf lists grow with the memory unless "
          "nlist=N fixes them)");
ABSL_FLAG(std::string, memory_dtype, "",
          "Storage of memory keys and values: f32, f16 or bf16 (default: the config's mem_dtype)");
ABSL_FLAG(std::string, attention, "fot",
          "'fot' (windows and memory as the published LongLLaMA code) or 'lambda' (LM-Infinite's "
          "Λ-shaped attention: the first --n-global tokens plus the last --local-window, "
          "distances capped at the local window; any llama or longllama checkpoint)");
ABSL_FLAG(int, n_global, -1, "lambda: tokens of the global branch (default 4)");
ABSL_FLAG(int, local_window, 0,
          "lambda: tokens of the local branch, the distance cap (default max_position_embeddings)");
ABSL_FLAG(std::string, memory_positioning, "",
          "lambda: how memory keys are positioned: as_first, fixed_distance or none (default "
          "as_first for longllama, fixed_distance for llama)");
ABSL_FLAG(std::string, lambda_memory_layers, "",
          "lambda: memory layers, e.g. '2,5', or 'none' (default: the config's mem_layers)");

namespace fot {
namespace {

double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

std::string GeneratedLogitsPath(const std::string& logits_out) {
  const std::string stem = logits_out.size() > 4 && logits_out.ends_with(".npy")
                               ? logits_out.substr(0, logits_out.size() - 4)
                               : logits_out;
  return stem + ".generated.npy";
}

// Collects logits rows into a streaming .npy writer, remembering the last row
// for sampling. The writer is optional.
class LogitsCollector {
 public:
  LogitsCollector(int vocab, NpyFloat32RowWriter* writer) : last_(vocab), writer_(writer) {}

  LogitsSink Sink() {
    return [this](int64_t, int64_t rows, const float* logits) {
      const size_t vocab = last_.size();
      std::copy(logits + (rows - 1) * vocab, logits + rows * vocab, last_.begin());
      if (writer_ != nullptr && status_.ok()) status_ = writer_->Append(logits, rows);
    };
  }
  const std::vector<float>& last() const { return last_; }
  const absl::Status& status() const { return status_; }

 private:
  std::vector<float> last_;
  NpyFloat32RowWriter* writer_;
  absl::Status status_;
};

// --attention and the lambda flags, resolved for `config`; lambda flags
// without --attention lambda are an error rather than silently ignored.
absl::StatusOr<AttentionOptions> AttentionFromFlags(const ModelConfig& config) {
  AttentionSpec spec{absl::GetFlag(FLAGS_attention), std::nullopt,
                     absl::GetFlag(FLAGS_local_window), absl::GetFlag(FLAGS_memory_positioning),
                     absl::GetFlag(FLAGS_lambda_memory_layers)};
  if (absl::GetFlag(FLAGS_n_global) != -1) spec.n_global = absl::GetFlag(FLAGS_n_global);
  return ApplyAttentionSpec(spec, AttentionOptions{}, config);
}

absl::StatusOr<std::vector<int>> PromptTokens(const ModelConfig& config,
                                              const Tokenizer* tokenizer) {
  const std::string prompt = absl::GetFlag(FLAGS_prompt);
  const std::string ids_path = absl::GetFlag(FLAGS_input_ids);
  if (!ids_path.empty()) {
    FOT_ASSIGN_OR_RETURN(std::vector<int32_t> ids, ReadNpyTokenIds(ids_path));
    return std::vector<int>(ids.begin(), ids.end());
  }
  if (tokenizer == nullptr) {
    return absl::FailedPreconditionError(
        "--prompt needs tokenizer.model in the model folder; use --input-ids instead");
  }
  std::vector<int> ids;
  if (absl::GetFlag(FLAGS_add_bos)) ids.push_back(config.bos_token_id);
  const std::vector<int> text = tokenizer->Encode(prompt);
  ids.insert(ids.end(), text.begin(), text.end());
  return ids;
}

absl::Status Run() {
  const std::string model_dir = absl::GetFlag(FLAGS_model);
  if (model_dir.empty()) return absl::InvalidArgumentError("--model is required");
  if (absl::GetFlag(FLAGS_prompt).empty() == absl::GetFlag(FLAGS_input_ids).empty()) {
    return absl::InvalidArgumentError("give exactly one of --prompt and --input-ids");
  }
  const int to_generate = absl::GetFlag(FLAGS_generate);
  if (to_generate < 0) return absl::InvalidArgumentError("--generate must be >= 0");
  SamplingOptions sampling;
  sampling.temperature = absl::GetFlag(FLAGS_temperature);
  sampling.top_p = absl::GetFlag(FLAGS_top_p);
  sampling.seed = absl::GetFlag(FLAGS_seed);
  FOT_RETURN_IF_ERROR(ValidateSamplingOptions(sampling));

  absl::StatusOr<WeightsOptions> weights = ParseWeightsOptions(absl::GetFlag(FLAGS_weights_dtype));
  if (!weights.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--weights_dtype: ", weights.status().message()));
  }
  const auto load_start = std::chrono::steady_clock::now();
  FOT_ASSIGN_OR_RETURN(std::unique_ptr<Engine> engine, Engine::Load(model_dir, *weights));
  const ModelWeights& loaded = engine->transformer().weights();
  absl::FPrintF(
      stderr, "weights: %s (%s), %.1f MB read per token, %.1f MB converted at load, in %.2f s\n",
      WeightTypeName(loaded.layer(0).gate_proj.type), WeightsOptionsToString(loaded.options()),
      loaded.weight_bytes() / 1e6, loaded.resident_weight_bytes() / 1e6, SecondsSince(load_start));
  const ModelConfig& config = engine->config();
  std::unique_ptr<Tokenizer> tokenizer;
  if (auto loaded = Tokenizer::Load(model_dir + "/tokenizer.model"); loaded.ok()) {
    tokenizer = *std::move(loaded);
  } else if (!absl::GetFlag(FLAGS_prompt).empty()) {
    return loaded.status();
  }
  FOT_ASSIGN_OR_RETURN(std::vector<int> prompt, PromptTokens(config, tokenizer.get()));
  const int last_context = absl::GetFlag(FLAGS_last_context_length) > 0
                               ? absl::GetFlag(FLAGS_last_context_length)
                               : config.last_context_length;

  const std::string logits_out = absl::GetFlag(FLAGS_logits_out);
  std::unique_ptr<NpyFloat32RowWriter> prompt_writer, generated_writer;
  if (!logits_out.empty()) {
    FOT_ASSIGN_OR_RETURN(prompt_writer, NpyFloat32RowWriter::Create(logits_out, config.vocab_size));
    if (to_generate > 0) {
      FOT_ASSIGN_OR_RETURN(
          generated_writer,
          NpyFloat32RowWriter::Create(GeneratedLogitsPath(logits_out), config.vocab_size));
    }
  }

  // Memory: index kind, storage, retrieval mode.
  MemoryOptions memory_options = engine->DefaultMemoryOptions();
  FOT_RETURN_IF_ERROR(ParseIndexSpec(absl::GetFlag(FLAGS_index), &memory_options));
  if (const std::string dtype = absl::GetFlag(FLAGS_memory_dtype); !dtype.empty()) {
    FOT_ASSIGN_OR_RETURN(memory_options.dtype, ParseStorageType(dtype));
  }
  FOT_ASSIGN_OR_RETURN(const Retrieval retrieval, ParseRetrieval(absl::GetFlag(FLAGS_memory)));
  FOT_ASSIGN_OR_RETURN(const AttentionOptions attention, AttentionFromFlags(config));
  auto new_state = [&]() -> absl::StatusOr<ModelState> {
    FOT_ASSIGN_OR_RETURN(ModelState state, engine->NewState(memory_options, attention));
    state.retrieval = retrieval;
    return state;
  };

  // Prompt processing.
  FOT_ASSIGN_OR_RETURN(ModelState state, new_state());
  LogitsCollector prompt_logits(config.vocab_size, prompt_writer.get());
  auto start = std::chrono::steady_clock::now();
  FOT_RETURN_IF_ERROR(engine->Prefill(prompt, last_context, &state,
                                      prompt_writer ? LogitsMode::kAll : LogitsMode::kLast,
                                      prompt_logits.Sink()));
  FOT_RETURN_IF_ERROR(prompt_logits.status());
  const double prefill_seconds = SecondsSince(start);
  int memory_layers = 0;
  for (const auto& memory : state.memory) memory_layers += memory != nullptr;
  absl::FPrintF(stderr,
                "processed %d tokens in %.3f s: %.1f tokens/s (attention: %s; memory: %d layers, "
                "%s, %s)\n",
                prompt.size(), prefill_seconds, prompt.size() / prefill_seconds,
                DescribeAttention(state.attention), memory_layers, DescribeRetrieval(retrieval),
                DescribeOptions(memory_options));
  if (prompt_writer) FOT_RETURN_IF_ERROR(prompt_writer->Finish());

  // Generation: sample from the last logits, feed the token, repeat. With a
  // logits file, the last token is fed too, so the file has one row per token.
  Sampler sampler(sampling);
  LogitsCollector step_logits(config.vocab_size, generated_writer.get());
  std::vector<float> logits = prompt_logits.last();
  std::vector<int64_t> generated;
  std::vector<int> sequence = prompt;  // for generation without the cache
  std::optional<DetokenizeStream> text;
  if (tokenizer) text.emplace(tokenizer.get());
  start = std::chrono::steady_clock::now();
  for (int i = 0; i < to_generate; ++i) {
    const int token = sampler.Sample(logits.data(), config.vocab_size);
    generated.push_back(token);
    if (text) {
      std::fputs(text->Feed(token).c_str(), stdout);
    } else {
      std::printf("%s%d", i == 0 ? "" : " ", token);
    }
    std::fflush(stdout);
    const bool stop = token == config.eos_token_id && !absl::GetFlag(FLAGS_ignore_eos);
    if ((i + 1 < to_generate && !stop) || generated_writer) {
      if (absl::GetFlag(FLAGS_use_cache)) {
        FOT_RETURN_IF_ERROR(
            engine->Append({&token, 1}, &state, LogitsMode::kLast, step_logits.Sink()));
      } else {
        sequence.push_back(token);
        FOT_ASSIGN_OR_RETURN(state, new_state());
        FOT_RETURN_IF_ERROR(
            engine->Prefill(sequence, last_context, &state, LogitsMode::kLast, step_logits.Sink()));
      }
      FOT_RETURN_IF_ERROR(step_logits.status());
      logits = step_logits.last();
    }
    if (stop) break;
  }
  if (to_generate > 0) {
    if (text) std::fputs(text->Flush().c_str(), stdout);
    std::printf("\n");
    const double seconds = SecondsSince(start);
    absl::FPrintF(stderr, "generated %d tokens in %.3f s: %.1f tokens/s, %.2f ms/token\n",
                  generated.size(), seconds, generated.size() / seconds,
                  1000 * seconds / generated.size());
  }
  if (generated_writer) FOT_RETURN_IF_ERROR(generated_writer->Finish());
  const MemoryStats stats = GetMemoryStats(state);
  if (!stats.layers.empty()) {
    absl::FPrintF(stderr, "memory: %d layers x %d kv heads, %d entries each, %.2f MB\n",
                  stats.layers.size(), stats.layers[0].heads.size(),
                  stats.layers[0].heads[0].entries, stats.bytes / 1e6);
  }
  if (const std::string path = absl::GetFlag(FLAGS_generated_ids_out); !path.empty()) {
    FOT_RETURN_IF_ERROR(WriteNpyInt64(path, generated));
  }
  return absl::OkStatus();
}

}  // namespace
}  // namespace fot

int main(int argc, char** argv) {
  const std::vector<std::string> positional = fot::ParseCommandLine(
      argc, argv,
      "fot-run --model DIR (--prompt TEXT | --input-ids FILE.npy) [--use-cache] "
      "[--last-context-length N] [--logits-out FILE.npy] [--generate N] [--temperature T] "
      "[--top-p P] [--seed S] [--attention fot|lambda [--n-global N] [--local-window L] "
      "[--memory-positioning as_first|fixed_distance|none] [--lambda-memory-layers 1,3]]");
  if (!positional.empty()) {
    std::fprintf(stderr, "fot-run: unexpected argument '%s' (see --help)\n", positional[0].c_str());
    return 2;
  }
  const absl::Status status = fot::Run();
  if (!status.ok()) {
    std::fprintf(stderr, "fot-run: %s\n", std::string(status.message()).c_str());
    return status.code() == absl::StatusCode::kInvalidArgument ? 2 : 1;
  }
  return 0;
}
