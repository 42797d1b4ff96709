#include "src/model/transformer.h"

#include <algorithm>

#include "base/status_macros.h"
#include "src/model/kernels.h"
#include "src/model/linear.h"

namespace fot {

Transformer::Transformer(ModelConfig config, ModelWeights weights)
    : config_(std::move(config)),
      weights_(std::move(weights)),
      rope_(config_.head_dim(), config_.rope_theta, RopePositions(config_)) {}

absl::StatusOr<ModelState> Transformer::NewState(const MemoryOptions& options,
                                                 const AttentionOptions& attention) const {
  ModelState state;
  FOT_ASSIGN_OR_RETURN(state.attention, ResolveAttentionOptions(config_, attention));
  state.cache = NewStreamCache(config_, state.attention);
  state.memory.resize(config_.num_hidden_layers);
  for (int l : state.cache->memory_layers()) {
    FOT_ASSIGN_OR_RETURN(state.memory[l], KvMemory::Create(config_.num_key_value_heads,
                                                           config_.head_dim(), options));
  }
  return state;
}

absl::StatusOr<const float*> Transformer::Forward(const int* tokens, const Provenance* provenance,
                                                  int n, ModelState* state) const {
  const int hidden = config_.hidden_size;
  const int heads = config_.num_attention_heads;
  const int kv_heads = config_.num_key_value_heads;
  const int hd = config_.head_dim();
  const int inter = config_.intermediate_size;
  const AttentionDims dims{heads, kv_heads, hd};
  const size_t rows = static_cast<size_t>(n);

  ForwardScratch& s = state->scratch;
  s.x.resize(rows * hidden);
  s.normed.resize(rows * hidden);
  s.q.resize(rows * heads * hd);
  s.k.resize(rows * kv_heads * hd);
  s.v.resize(rows * kv_heads * hd);
  s.attn.resize(rows * heads * hd);
  s.gate.resize(rows * inter);
  s.up.resize(rows * inter);

  // token embedding
  for (int i = 0; i < n; ++i) {
    DecodeRows(weights_.embed_tokens(), tokens[i], 1, &s.x[static_cast<size_t>(i) * hidden]);
  }

  for (int l = 0; l < config_.num_hidden_layers; ++l) {
    const LayerWeights& w = weights_.layer(l);

    // attention rmsnorm
    RmsNorm(s.x.data(), w.input_layernorm, n, hidden, config_.rms_norm_eps, s.normed.data());

    // q, k, v projections, unrotated: the cache rotates them as its
    // positions say
    Linear(s.normed.data(), n, w.q_proj, s.q.data());
    Linear(s.normed.data(), n, w.k_proj, s.k.data());
    Linear(s.normed.data(), n, w.v_proj, s.v.data());

    // attention over the layer's past (+ memory), one softmax; the tokens
    // join the past
    AttentionTrace* trace = nullptr;
    if (state->trace && state->memory[l] != nullptr) {
      state->traces.resize(config_.num_hidden_layers);
      trace = &state->traces[l];
    }
    FOT_RETURN_IF_ERROR(state->cache->Attend({l, dims, n, s.q.data(), s.k.data(), s.v.data(),
                                              provenance, state->memory[l].get(), &state->retrieval,
                                              &rope_, s.attn.data(), trace}));

    // output projection + residual
    LinearAccumulate(s.attn.data(), n, w.o_proj, s.x.data());

    // ffn rmsnorm, SwiGLU, down projection + residual
    RmsNorm(s.x.data(), w.post_attention_layernorm, n, hidden, config_.rms_norm_eps,
            s.normed.data());
    Linear(s.normed.data(), n, w.gate_proj, s.gate.data());
    Linear(s.normed.data(), n, w.up_proj, s.up.data());
    SwiGlu(s.gate.data(), s.up.data(), rows * inter);
    LinearAccumulate(s.gate.data(), n, w.down_proj, s.x.data());
  }

  // final rmsnorm
  RmsNorm(s.x.data(), weights_.final_norm(), n, hidden, config_.rms_norm_eps, s.normed.data());
  state->tokens_seen += n;
  return static_cast<const float*>(s.normed.data());
}

void Transformer::Logits(const float* hidden, int rows, float* logits) const {
  Linear(hidden, rows, weights_.lm_head(), logits);
}

absl::Status Transformer::FlushLocalCache(ModelState* state) const {
  return state->cache->Flush(state->memory);
}

}  // namespace fot
