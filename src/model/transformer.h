// The LLaMA / LongLLaMA decoder: weights plus the forward pass of one chunk of
// tokens through every layer (DESIGN.md §1). How input is cut into chunks and
// generation live in engine.h; what each layer attends over is the state's
// StreamCache (stream_cache.h) and memory.
//
// Thread safety: a Transformer is immutable after construction and may be
// shared by any number of threads, each with its own ModelState.
#ifndef FOTSERVE_SRC_MODEL_TRANSFORMER_H_
#define FOTSERVE_SRC_MODEL_TRANSFORMER_H_

#include <functional>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "memory/kv_memory.h"
#include "src/checkpoint/model_config.h"
#include "src/checkpoint/model_weights.h"
#include "src/model/attention.h"
#include "src/model/attention_options.h"
#include "src/model/rope.h"
#include "src/model/stream_cache.h"

namespace fot {

// Buffers of one forward pass, kept between calls so generation allocates
// nothing per token.
struct ForwardScratch {
  std::vector<float> x;                // [n, hidden] residual stream
  std::vector<float> normed;           // [n, hidden]
  std::vector<float> q;                // [n, heads * head_dim]
  std::vector<float> k;                // [n, kv_heads * head_dim]
  std::vector<float> v;                // [n, kv_heads * head_dim]
  std::vector<float> attn;             // [n, heads * head_dim]
  std::vector<float> gate;             // [n, intermediate]
  std::vector<float> up;               // [n, intermediate]
  std::vector<float> logits;           // [rows, vocab], one block of lm_head rows
  std::vector<Provenance> provenance;  // default provenance of a call's tokens
  std::vector<ForwardCall> calls;      // the engine's plan of its current call
};

// Everything one stream of tokens carries from call to call.
struct ModelState {
  // How this stream attends, resolved against the model (NewState); fixed for
  // the state's life. It chose the kind of `cache`.
  AttentionOptions attention;
  // What every layer keeps of the stream's past besides memory: fot's
  // windows, or lambda's sinks and ring.
  std::unique_ptr<StreamCache> cache;
  std::vector<std::unique_ptr<KvMemory>> memory;  // [layer]; null for non-memory layers
  Retrieval retrieval;  // how memory layers read memory; callers may change it any time
  // When set, each call records what its last token retrieved, per memory
  // layer: traces[l] (empty for other layers); traces[l].top entries per head.
  bool trace = false;
  std::vector<AttentionTrace> traces;  // [layer]
  int64_t tokens_seen = 0;             // tokens run through the model so far (default provenance)
  // When set, asked before each Forward call (one window at most) of a
  // prefill or append: true stops the call with Cancelled, so that a query
  // whose client went away or ran out of time stops within a window.
  std::function<bool()> cancelled;
  ForwardScratch scratch;

  // fot: tokens in the local cache; lambda: entries held (sinks + ring).
  int cache_size() const { return cache != nullptr ? cache->entries() : 0; }
};

class Transformer {
 public:
  Transformer(ModelConfig config, ModelWeights weights);

  const ModelConfig& config() const { return config_; }
  const ModelWeights& weights() const { return weights_; }

  // A fresh state: an empty stream cache, and empty memories of `options` for
  // its memory layers. `attention` picks fot (the default) or lambda
  // (NewStreamCache); InvalidArgument if it does not fit the model
  // (ResolveAttentionOptions).
  absl::StatusOr<ModelState> NewState(const MemoryOptions& options,
                                      const AttentionOptions& attention = {}) const;

  // Runs tokens[0, n) (with their provenance) through every layer; each
  // layer attends over its past in the state's cache, which they then join.
  // Requires n tokens of one Forward call the cache planned
  // (StreamCache::Plan) and valid token ids (the engine sees to both).
  // Returns the final-normed hidden states [n, hidden], valid until the next
  // call with this state. Fails only if reading or writing memory fails.
  absl::StatusOr<const float*> Forward(const int* tokens, const Provenance* provenance, int n,
                                       ModelState* state) const;

  // logits[rows, vocab] = hidden[rows, hidden] · lm_headᵀ
  void Logits(const float* hidden, int rows, float* logits) const;

  // The end of a window (StreamCache::Flush): moves the local cache into
  // memory (memory layers; keys as the raw projection) and empties every
  // layer's cache. Under lambda there is no window to flush: a no-op.
  [[nodiscard]] absl::Status FlushLocalCache(ModelState* state) const;

 private:
  ModelConfig config_;
  ModelWeights weights_;
  Rope rope_;  // positions [0, RopePositions(config)), shared by every state's cache
};

}  // namespace fot

#endif  // FOTSERVE_SRC_MODEL_TRANSFORMER_H_
