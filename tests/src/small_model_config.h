// The small LongLLaMA shape and the tokenizer corpus that the tests and the
// fuzzers (fuzz/) share. Header-only and free of GoogleTest, so that the
// fuzzers can include it.
#ifndef FOTSERVE_TESTS_SRC_SMALL_MODEL_CONFIG_H_
#define FOTSERVE_TESTS_SRC_SMALL_MODEL_CONFIG_H_

#include <string>
#include <vector>

#include "src/checkpoint/model_config.h"

namespace fot {

// vocab 97, hidden 32, 3 layers, 4 heads (2 kv), W 16, L 8, memory layers 1, 2.
inline ModelConfig SmallModelConfig() {
  ModelConfig c;
  c.model_type = "longllama";
  c.vocab_size = 97;
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

// Words, numbers and accented text, so that a tokenizer trained on it has
// multi-byte pieces, and byte fallback for the rest.
inline std::string SmallTokenizerCorpus() {
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

}  // namespace fot

#endif  // FOTSERVE_TESTS_SRC_SMALL_MODEL_CONFIG_H_
