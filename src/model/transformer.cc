#include "src/model/transformer.h"

#include <algorithm>
#include <cstring>

#include "base/status_macros.h"
#include "src/model/kernels.h"

namespace fot {

Transformer::Transformer(ModelConfig config, ModelWeights weights)
    : config_(std::move(config)),
      weights_(std::move(weights)),
      rope_(config_.head_dim(), config_.rope_theta, config_.max_position_embeddings),
      lambda_(config_.head_dim(), config_.rope_theta, config_.max_position_embeddings) {}

bool Transformer::Rotates(int layer) const {
  return config_.mem_positionals || !config_.IsMemoryLayer(layer);
}

absl::StatusOr<ModelState> Transformer::NewState(const MemoryOptions& options,
                                                 const AttentionOptions& attention) const {
  ModelState state;
  FOT_ASSIGN_OR_RETURN(state.attention, ResolveAttentionOptions(config_, attention));
  if (state.attention.mode == AttentionMode::kLambda) {
    const std::vector<int>& layers = *state.attention.memory_layers;
    for (int l = 0; l < config_.num_hidden_layers; ++l) {
      const bool memory_layer = std::find(layers.begin(), layers.end(), l) != layers.end();
      state.lambda_caches.emplace_back(config_.num_key_value_heads, config_.head_dim(),
                                       state.attention.n_global, state.attention.local_window,
                                       memory_layer && Rotates(l));
      std::unique_ptr<KvMemory> memory;
      if (memory_layer) {
        FOT_ASSIGN_OR_RETURN(
            memory, KvMemory::Create(config_.num_key_value_heads, config_.head_dim(), options));
      }
      state.memory.push_back(std::move(memory));
    }
    return state;
  }
  for (int l = 0; l < config_.num_hidden_layers; ++l) {
    const bool memory_layer = config_.IsMemoryLayer(l);
    state.caches.emplace_back(config_.num_key_value_heads, config_.head_dim(),
                              config_.max_position_embeddings, memory_layer && Rotates(l));
    std::unique_ptr<KvMemory> memory;
    if (memory_layer) {
      FOT_ASSIGN_OR_RETURN(
          memory, KvMemory::Create(config_.num_key_value_heads, config_.head_dim(), options));
    }
    state.memory.push_back(std::move(memory));
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
  s.attn.resize(rows * heads * hd);
  s.gate.resize(rows * inter);
  s.up.resize(rows * inter);

  // token embedding
  for (int i = 0; i < n; ++i) {
    std::memcpy(&s.x[i * hidden], weights_.embed_tokens() + static_cast<size_t>(tokens[i]) * hidden,
                hidden * sizeof(float));
  }

  for (int l = 0; l < config_.num_hidden_layers; ++l) {
    const LayerWeights& w = weights_.layer(l);

    // attention rmsnorm
    RmsNorm(s.x.data(), w.input_layernorm, n, hidden, config_.rms_norm_eps, s.normed.data());

    if (state->attention.mode == AttentionMode::kLambda) {
      // Λ-shaped attention over sinks, ring (+ memory): lambda_attention.h
      FOT_RETURN_IF_ERROR(LambdaLayerAttention(l, provenance, n, state));
    } else {
      LocalCache& cache = state->caches[l];
      const int first = cache.size();

      // q, k, v projections; k and v land straight in the local cache
      Linear(s.normed.data(), n, hidden, w.q_proj, heads * hd, s.q.data());
      float* keys = cache.keys_at(first);
      std::copy(provenance, provenance + n, cache.provenance_at(first));
      Linear(s.normed.data(), n, hidden, w.k_proj, kv_heads * hd, keys);
      Linear(s.normed.data(), n, hidden, w.v_proj, kv_heads * hd, cache.values_at(first));

      // RoPE by position in the local window; memory layers also keep the raw
      // keys, which is what memory stores ("rotated as position 0")
      if (Rotates(l)) {
        if (cache.keeps_raw_keys()) {
          std::memcpy(cache.raw_keys_at(first), keys, rows * kv_heads * hd * sizeof(float));
        }
        rope_.Apply(s.q.data(), n, heads, first);
        rope_.Apply(keys, n, kv_heads, first);
      }
      cache.Grow(n);

      // attention over the local window (+ memory), one softmax
      AttentionTrace* trace = nullptr;
      if (state->trace && state->memory[l] != nullptr) {
        state->traces.resize(config_.num_hidden_layers);
        trace = &state->traces[l];
      }
      FOT_RETURN_IF_ERROR(Attend(dims, s.q.data(), n, first, cache.keys(), cache.values(),
                                 state->memory[l].get(), state->retrieval, &s.attention,
                                 s.attn.data(), trace));
    }

    // output projection + residual
    LinearAccumulate(s.attn.data(), n, heads * hd, w.o_proj, hidden, s.x.data());

    // ffn rmsnorm, SwiGLU, down projection + residual
    RmsNorm(s.x.data(), w.post_attention_layernorm, n, hidden, config_.rms_norm_eps,
            s.normed.data());
    Linear(s.normed.data(), n, hidden, w.gate_proj, inter, s.gate.data());
    Linear(s.normed.data(), n, hidden, w.up_proj, inter, s.up.data());
    SwiGlu(s.gate.data(), s.up.data(), rows * inter);
    LinearAccumulate(s.gate.data(), n, inter, w.down_proj, hidden, s.x.data());
  }

  // final rmsnorm
  RmsNorm(s.x.data(), weights_.final_norm(), n, hidden, config_.rms_norm_eps, s.normed.data());
  state->tokens_seen += n;
  return static_cast<const float*>(s.normed.data());
}

void Transformer::Logits(const float* hidden, int rows, float* logits) const {
  Linear(hidden, rows, config_.hidden_size, weights_.lm_head(), config_.vocab_size, logits);
}

absl::Status Transformer::FlushLocalCache(ModelState* state) const {
  if (state->attention.mode == AttentionMode::kLambda) return absl::OkStatus();
  for (int l = 0; l < config_.num_hidden_layers; ++l) {
    LocalCache& cache = state->caches[l];
    if (KvMemory* memory = state->memory[l].get()) {
      FOT_RETURN_IF_ERROR(
          memory->Append(cache.memory_keys(), cache.values(), cache.provenance(), cache.size()));
    }
  }
  for (LocalCache& cache : state->caches) cache.Clear();
  return absl::OkStatus();
}

// --- lambda attention (attention_options.h, lambda_attention.h) ------------

absl::Status Transformer::LambdaLayerAttention(int layer, const Provenance* provenance, int n,
                                               ModelState* state) const {
  const int hidden = config_.hidden_size;
  const int heads = config_.num_attention_heads;
  const int kv_heads = config_.num_key_value_heads;
  const int hd = config_.head_dim();
  const LayerWeights& w = weights_.layer(layer);
  ForwardScratch& s = state->scratch;
  s.lambda_k.resize(static_cast<size_t>(n) * kv_heads * hd);
  s.lambda_v.resize(s.lambda_k.size());

  // q, k, v projections, unrotated: positions are the attention's business
  Linear(s.normed.data(), n, hidden, w.q_proj, heads * hd, s.q.data());
  Linear(s.normed.data(), n, hidden, w.k_proj, kv_heads * hd, s.lambda_k.data());
  Linear(s.normed.data(), n, hidden, w.v_proj, kv_heads * hd, s.lambda_v.data());

  AttentionTrace* trace = nullptr;
  if (state->trace && state->memory[layer] != nullptr) {
    state->traces.resize(config_.num_hidden_layers);
    trace = &state->traces[layer];
  }
  const LambdaPositions positions{state->attention.local_window, Rotates(layer),
                                  *state->attention.memory_positioning};
  return lambda_.Step({heads, kv_heads, hd}, positions, s.q.data(), s.lambda_k.data(),
                      s.lambda_v.data(), provenance, n, &state->lambda_caches[layer],
                      state->memory[layer].get(), state->retrieval, &s.lambda, s.attn.data(),
                      trace);
}

}  // namespace fot
