// fot-make-model: writes a random-weight LongLLaMA (or LLaMA) model folder
// (config.json + safetensors, and tokenizer.model with --tokenizer-corpus) for
// tests, benchmarks and trying the tools on text.
//
//   fot-make-model --out /tmp/m --hidden 256 --layers 4 --mem-layers 1,3 --dtype bf16
//   fot-make-model --out /tmp/3b --shape longllama-3b --dtype bf16
//
// --shape starts from a published checkpoint's shape (PublishedShape); shape
// flags set to other values than their defaults change it. Tensors are written as they are drawn, a
// piece at a time, so a 7B-shaped model needs little memory.
//
// Flags may be written --kv-heads or --kv_heads. An invalid model: one line on
// stderr, exit code 2. Write failures: exit code 1.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/reflection.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "base/command_line.h"
#include "src/checkpoint/model_config.h"
#include "src/checkpoint/model_weights.h"
#include "src/checkpoint/random_checkpoint.h"
#include "src/tokenizer/tokenizer.h"

ABSL_FLAG(std::string, out, "", "output folder (created; required)");
ABSL_FLAG(std::string, shape, "",
          "start from a published shape: longllama-3b or longllama-7b (shape flags set to other "
          "values than their defaults change it)");
ABSL_FLAG(std::string, model_type, "longllama", "longllama or llama");
ABSL_FLAG(int, hidden, 512, "hidden_size");
ABSL_FLAG(int, layers, 8, "num_hidden_layers");
ABSL_FLAG(int, heads, 8, "num_attention_heads");
ABSL_FLAG(int, kv_heads, 0, "num_key_value_heads (must divide --heads); 0 means --heads (MHA)");
ABSL_FLAG(int, intermediate, 1376, "intermediate_size of the MLP");
ABSL_FLAG(int, vocab, 32000, "vocab_size");
ABSL_FLAG(int, window, 512, "max_position_embeddings, the local context window W");
ABSL_FLAG(int, last_context, 0,
          "last_context_length L; 0: half of --window for longllama, --window for llama");
ABSL_FLAG(std::string, mem_layers, "3,6", "comma-separated memory layers (longllama only)");
ABSL_FLAG(bool, mem_positionals, true, "rotary positions in memory layers (longllama only)");
ABSL_FLAG(bool, tie, false, "tie_word_embeddings: lm_head shares the embedding matrix");
ABSL_FLAG(float, rope_theta, 10000.0f, "rope_theta");
ABSL_FLAG(float, rms_norm_eps, 1e-6f, "rms_norm_eps");
ABSL_FLAG(uint32_t, seed, 0, "random seed");
ABSL_FLAG(float, init_std, 0.02f, "standard deviation of the random weights");
ABSL_FLAG(std::string, dtype, "f32", "storage dtype: f32, f16 or bf16");
ABSL_FLAG(int, shards, 1, "number of safetensors files (> 1 writes an index.json)");
ABSL_FLAG(std::string, tokenizer_corpus, "",
          "train a SentencePiece tokenizer.model of --vocab pieces on this UTF-8 text file");

namespace {

[[noreturn]] void Fail(const std::string& message, int code = 2) {
  std::fprintf(stderr, "fot-make-model: %s\n", message.c_str());
  std::exit(code);
}

}  // namespace

int main(int argc, char** argv) {
  const std::vector<std::string> positional = fot::ParseCommandLine(
      argc, argv, "fot-make-model --out DIR [flags]: writes a random-weight model folder");
  if (!positional.empty()) Fail("unexpected argument '" + positional[0] + "' (see --help)");
  const std::string out = absl::GetFlag(FLAGS_out);
  if (out.empty()) Fail("--out DIR is required");

  fot::ModelConfig config;
  config.source = "model flags";
  const std::string shape = absl::GetFlag(FLAGS_shape);
  if (!shape.empty()) {
    absl::StatusOr<fot::ModelConfig> published = fot::PublishedShape(shape);
    if (!published.ok()) Fail("--shape: " + std::string(published.status().message()));
    config = *std::move(published);
  }
  // Without --shape every flag sets its field; with it, only those set to
  // something other than their default.
  auto given = [&shape](const char* flag) {
    const absl::CommandLineFlag* f = absl::FindCommandLineFlag(flag);
    return shape.empty() || f->CurrentValue() != f->DefaultValue();
  };
  if (given("model_type")) config.model_type = absl::GetFlag(FLAGS_model_type);
  const bool longllama = config.model_type == "longllama";
  if (given("vocab")) config.vocab_size = absl::GetFlag(FLAGS_vocab);
  if (given("hidden")) config.hidden_size = absl::GetFlag(FLAGS_hidden);
  if (given("intermediate")) config.intermediate_size = absl::GetFlag(FLAGS_intermediate);
  if (given("layers")) config.num_hidden_layers = absl::GetFlag(FLAGS_layers);
  if (given("heads")) config.num_attention_heads = absl::GetFlag(FLAGS_heads);
  if (given("kv_heads") || given("heads")) {
    config.num_key_value_heads = absl::GetFlag(FLAGS_kv_heads) > 0 ? absl::GetFlag(FLAGS_kv_heads)
                                                                   : config.num_attention_heads;
  }
  if (given("window")) config.max_position_embeddings = absl::GetFlag(FLAGS_window);
  if (given("last_context") || given("window")) {
    config.last_context_length = absl::GetFlag(FLAGS_last_context) > 0
                                     ? absl::GetFlag(FLAGS_last_context)
                                     : (longllama ? std::max(1, config.max_position_embeddings / 2)
                                                  : config.max_position_embeddings);
  }
  if (given("rope_theta")) config.rope_theta = absl::GetFlag(FLAGS_rope_theta);
  if (given("rms_norm_eps")) config.rms_norm_eps = absl::GetFlag(FLAGS_rms_norm_eps);
  if (given("tie")) config.tie_word_embeddings = absl::GetFlag(FLAGS_tie);
  if (given("mem_positionals")) config.mem_positionals = absl::GetFlag(FLAGS_mem_positionals);
  if (!longllama) {
    config.mem_layers.clear();
  } else if (given("mem_layers")) {
    config.mem_layers.clear();
    for (absl::string_view part :
         absl::StrSplit(absl::GetFlag(FLAGS_mem_layers), ',', absl::SkipWhitespace())) {
      int layer = 0;
      if (!absl::SimpleAtoi(part, &layer)) {
        Fail(absl::StrCat("--mem-layers: '", part, "' is not a layer number (e.g. 3,6)"));
      }
      config.mem_layers.push_back(layer);
    }
  }

  fot::RandomCheckpointOptions options;
  options.seed = absl::GetFlag(FLAGS_seed);
  options.init_std = absl::GetFlag(FLAGS_init_std);
  options.num_shards = absl::GetFlag(FLAGS_shards);
  const std::string dtype = absl::GetFlag(FLAGS_dtype);
  if (dtype == "f32") {
    options.dtype = fot::DType::kF32;
  } else if (dtype == "f16") {
    options.dtype = fot::DType::kF16;
  } else if (dtype == "bf16") {
    options.dtype = fot::DType::kBF16;
  } else {
    Fail(absl::StrCat("--dtype: '", dtype, "' is not one of f32, f16, bf16"));
  }
  if (!(options.init_std >= 0.0f)) Fail("--init-std must be >= 0");

  if (absl::Status status = config.Validate(); !status.ok()) Fail(std::string(status.message()));
  const std::vector<fot::TensorSpec> specs = fot::ExpectedTensors(config);
  if (options.num_shards < 1 || static_cast<size_t>(options.num_shards) > specs.size()) {
    Fail(absl::StrCat("--shards (", options.num_shards, ") must be between 1 and ", specs.size(),
                      " (the number of tensors)"));
  }
  if (absl::Status status = fot::WriteRandomCheckpoint(out, config, options); !status.ok()) {
    Fail(std::string(status.message()), 1);
  }

  if (const std::string corpus = absl::GetFlag(FLAGS_tokenizer_corpus); !corpus.empty()) {
    if (absl::Status status =
            fot::TrainTokenizer(corpus, config.vocab_size, out + "/tokenizer.model");
        !status.ok()) {
      Fail(std::string(status.message()), 1);
    }
  }

  int64_t parameters = 0;
  for (const fot::TensorSpec& spec : specs) {
    int64_t n = 1;
    for (int64_t dim : spec.shape) n *= dim;
    parameters += n;
  }
  const double bytes = static_cast<double>(parameters) * fot::DTypeSize(options.dtype);
  std::printf(
      "wrote %s: %s, %d layers, hidden %d, %d heads (%d kv), vocab %d, W %d, L %d, mem_layers "
      "[%s]; %.2fM parameters, %.1f MB %s in %d file%s\n",
      out.c_str(), config.model_type.c_str(), config.num_hidden_layers, config.hidden_size,
      config.num_attention_heads, config.num_key_value_heads, config.vocab_size,
      config.max_position_embeddings, config.last_context_length,
      absl::StrJoin(config.mem_layers, ",").c_str(), parameters / 1e6, bytes / 1e6, dtype.c_str(),
      options.num_shards, options.num_shards == 1 ? "" : "s");
  return 0;
}
