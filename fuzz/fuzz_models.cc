#include "fuzz/fuzz_models.h"

#include <memory>
#include <vector>

#include "fuzz/fuzz_support.h"
#include "src/checkpoint/random_checkpoint.h"

namespace fot::fuzz {

// tests/src/server/service_test_fixture.h's tokenizer corpus: words, numbers
// and accented text, so that the tokenizer has multi-byte pieces and byte
// fallback for the rest.
std::string TokenizerCorpus() {
  const std::vector<std::string> words = {"the",    "river", "stone", "house", "quiet", "bright",
                                          "window", "apple", "sees",  "birds", "and",   "a"};
  std::string corpus;
  for (int i = 0; i < 500; ++i) {
    for (int w = 0; w < 9; ++w) corpus += words[(i * 7 + w * 5) % words.size()] + " ";
    corpus += std::to_string(i * 37 % 1000) + ".\n";
    if (i % 10 == 0) corpus += "Café crème, naïve façade: ça coûte 5 €.\n";
  }
  return corpus;
}

namespace {

template <typename T>
T ValueOrDie(absl::StatusOr<T> value, const char* what) {
  if (!value.ok()) Fail(__FILE__, __LINE__, std::string(what) + ": " + value.status().ToString());
  return *std::move(value);
}

}  // namespace

ModelConfig SmallConfig() {
  ModelConfig c;
  c.model_type = "longllama";
  c.vocab_size = 400;
  c.hidden_size = 32;
  c.intermediate_size = 48;
  c.num_hidden_layers = 3;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.max_position_embeddings = 16;
  c.last_context_length = 8;
  c.mem_layers = {1, 2};
  return c;
}

const std::string& SmallModelDir() {
  static const std::string* dir = [] {
    auto* path = new std::string(FreshDir("small_model"));
    RandomCheckpointOptions options;
    options.init_std = 0.3f;  // as the service tests: logits far from uniform
    const absl::Status written = WriteRandomCheckpoint(*path, SmallConfig(), options);
    if (!written.ok()) Fail(__FILE__, __LINE__, "small model: " + written.ToString());
    return path;
  }();
  return *dir;
}

const Engine& SmallEngine() {
  static const Engine* engine =
      ValueOrDie(Engine::Load(SmallModelDir()), "loading the small model").release();
  return *engine;
}

const Tokenizer& TrainedTokenizer() {
  static const Tokenizer* tokenizer = [] {
    const std::string dir = FreshDir("trained_tokenizer");
    WriteFileOrDie(dir + "/corpus.txt", TokenizerCorpus());
    const absl::Status trained = TrainTokenizer(dir + "/corpus.txt", 400, dir + "/tokenizer.model");
    if (!trained.ok()) Fail(__FILE__, __LINE__, "training the tokenizer: " + trained.ToString());
    return ValueOrDie(Tokenizer::Load(dir + "/tokenizer.model"), "loading the tokenizer").release();
  }();
  return *tokenizer;
}

const Tokenizer& FotDictTokenizer() {
  static const Tokenizer* tokenizer =
      ValueOrDie(Tokenizer::Load(std::string(FOT_SOURCE_DIR) + "/models/fot-dict/tokenizer.model"),
                 "loading models/fot-dict's tokenizer")
          .release();
  return *tokenizer;
}

}  // namespace fot::fuzz
