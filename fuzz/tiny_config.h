// The one-layer model of the safetensors harness and its seeds: small enough
// that a mutated seed still holds every tensor.
#ifndef FOTSERVE_FUZZ_TINY_CONFIG_H_
#define FOTSERVE_FUZZ_TINY_CONFIG_H_

#include "src/checkpoint/model_config.h"

namespace fot::fuzz {

inline ModelConfig TinyConfig() {
  ModelConfig c;
  c.model_type = "longllama";
  c.vocab_size = 8;
  c.hidden_size = 4;
  c.intermediate_size = 8;
  c.num_hidden_layers = 1;
  c.num_attention_heads = 2;
  c.num_key_value_heads = 1;
  c.max_position_embeddings = 4;
  c.last_context_length = 2;
  c.mem_layers = {0};
  return c;
}

}  // namespace fot::fuzz

#endif  // FOTSERVE_FUZZ_TINY_CONFIG_H_
