// The LLaMA / LongLLaMA decoder: weights plus the forward pass of one chunk of
// tokens through every layer (DESIGN.md §1). Window splitting and generation
// live in engine.h; this file only knows the local cache and memory it is
// handed.
//
// Thread safety: a Transformer is immutable after construction and may be
// shared by any number of threads, each with its own ModelState.
#ifndef FOTSERVE_SRC_MODEL_TRANSFORMER_H_
#define FOTSERVE_SRC_MODEL_TRANSFORMER_H_

#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "memory/kv_memory.h"
#include "src/checkpoint/model_config.h"
#include "src/checkpoint/model_weights.h"
#include "src/model/attention.h"
#include "src/model/attention_options.h"
#include "src/model/lambda_attention.h"
#include "src/model/lambda_cache.h"
#include "src/model/local_cache.h"
#include "src/model/rope.h"

namespace fot {

// Buffers of one forward pass, kept between calls so generation allocates
// nothing per token.
struct ForwardScratch {
  std::vector<float> x;                // [n, hidden] residual stream
  std::vector<float> normed;           // [n, hidden]
  std::vector<float> q;                // [n, heads * head_dim]
  std::vector<float> attn;             // [n, heads * head_dim]
  std::vector<float> gate;             // [n, intermediate]
  std::vector<float> up;               // [n, intermediate]
  std::vector<float> logits;           // [rows, vocab], one block of lm_head rows
  std::vector<Provenance> provenance;  // default provenance of a call's tokens
  AttentionScratch attention;
  // lambda attention (attention_options.h): the new keys and values
  std::vector<float> lambda_k;  // [n, kv_heads * head_dim]
  std::vector<float> lambda_v;  // [n, kv_heads * head_dim]
  LambdaScratch lambda;
};

// Everything one stream of tokens carries from call to call.
struct ModelState {
  // How this stream attends, resolved against the model (NewState); fixed for
  // the state's life. Under lambda, `caches` is empty and `lambda_caches`
  // holds each layer's sinks and ring.
  AttentionOptions attention;
  std::vector<LambdaCache> lambda_caches;         // [layer]; lambda only
  std::vector<LocalCache> caches;                 // [layer]; fot only
  std::vector<std::unique_ptr<KvMemory>> memory;  // [layer]; null for non-memory layers
  Retrieval retrieval;  // how memory layers read memory; callers may change it any time
  // When set, each call records what its last token retrieved, per memory
  // layer: traces[l] (empty for other layers); traces[l].top entries per head.
  bool trace = false;
  std::vector<AttentionTrace> traces;  // [layer]
  int64_t tokens_seen = 0;             // tokens run through the model so far (default provenance)
  ForwardScratch scratch;

  // fot: tokens in the local cache; lambda: entries held (sinks + ring).
  int cache_size() const {
    return !caches.empty()         ? caches.front().size()
           : lambda_caches.empty() ? 0
                                   : lambda_caches.front().entries();
  }
};

class Transformer {
 public:
  Transformer(ModelConfig config, ModelWeights weights);

  const ModelConfig& config() const { return config_; }
  const ModelWeights& weights() const { return weights_; }

  // A fresh state: empty local caches, and empty memories of `options`.
  // `attention` picks fot (the default) or lambda; InvalidArgument if it does
  // not fit the model (ResolveAttentionOptions).
  absl::StatusOr<ModelState> NewState(const MemoryOptions& options,
                                      const AttentionOptions& attention = {}) const;

  // Appends tokens[0, n) (with their provenance) to the local cache at
  // positions [cache_size, cache_size + n) and runs them through every layer.
  // Requires cache_size + n <= max_position_embeddings and valid token ids
  // (the engine checks both). Under lambda: n <= the local window, and the
  // tokens continue the state's stream (lambda_attention.h). Returns the
  // final-normed hidden states [n, hidden], valid until the next call with
  // this state. Fails only if reading memory fails.
  absl::StatusOr<const float*> Forward(const int* tokens, const Provenance* provenance, int n,
                                       ModelState* state) const;

  // logits[rows, vocab] = hidden[rows, hidden] · lm_headᵀ
  void Logits(const float* hidden, int rows, float* logits) const;

  // Moves the local cache into memory (memory layers; keys as the raw
  // projection) and empties every layer's cache. Under lambda there is no
  // window to flush: a no-op.
  [[nodiscard]] absl::Status FlushLocalCache(ModelState* state) const;

 private:
  // Whether layer l rotates its queries and keys.
  bool Rotates(int layer) const;
  // Under lambda: layer l's attention over its sinks, ring and memory, from
  // scratch.normed; writes scratch.attn.
  absl::Status LambdaLayerAttention(int layer, const Provenance* provenance, int n,
                                    ModelState* state) const;

  ModelConfig config_;
  ModelWeights weights_;
  Rope rope_;
  LambdaAttention lambda_;
};

}  // namespace fot

#endif  // FOTSERVE_SRC_MODEL_TRANSFORMER_H_
