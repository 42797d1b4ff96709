// The inference engine: a loaded model plus the window and memory rules of
// DESIGN.md §1 — long inputs split into windows whose keys and values move to
// memory, and generation that appends to the local cache and flushes it to
// memory when it would exceed the window.
//
// Thread safety: an Engine is immutable once loaded; any number of threads may
// use it at once, each on its own ModelState.
#ifndef FOTSERVE_SRC_ENGINE_ENGINE_H_
#define FOTSERVE_SRC_ENGINE_ENGINE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "src/model/transformer.h"

namespace fot {

// Which logits a call produces.
enum class LogitsMode {
  kNone,  // none (memory building only)
  kLast,  // the logits of the last input token
  kAll,   // one row per input token
};

// Receives logits rows [first, first + rows) of the call's input, each
// [vocab_size] floats, in order. The pointer is valid only during the call.
using LogitsSink = std::function<void(int64_t first, int64_t rows, const float* logits)>;

class Engine {
 public:
  // Loads config.json and model.safetensors (or its shards) from model_dir,
  // the weights kept as `weights` says (by default as in the file, in place).
  static absl::StatusOr<std::unique_ptr<Engine>> Load(const std::string& model_dir,
                                                      const WeightsOptions& weights = {});

  explicit Engine(Transformer transformer);

  const ModelConfig& config() const { return transformer_.config(); }
  const Transformer& transformer() const { return transformer_; }

  // The memory options that reproduce the model's own semantics: exact (flat)
  // search, keys and values held in the config's mem_dtype.
  MemoryOptions DefaultMemoryOptions() const;

  // A fresh state whose memory layers store into memories of `options`.
  absl::StatusOr<ModelState> NewState(const MemoryOptions& options) const {
    return transformer_.NewState(options);
  }
  absl::StatusOr<ModelState> NewState() const { return NewState(DefaultMemoryOptions()); }
  // A fresh state that attends as `attention` says (fot or lambda; see
  // attention_options.h); InvalidArgument if the options do not fit the model.
  absl::StatusOr<ModelState> NewState(const MemoryOptions& options,
                                      const AttentionOptions& attention) const {
    return transformer_.NewState(options, attention);
  }

  // A fresh state whose memories are private overlays over `base`'s: it reads
  // base's memory and appends only to its own (DESIGN.md §2 queries). `base`
  // must outlive it and its memory must not change while it is used. Its
  // cache is base's forked (StreamCache::Fork): under lambda a copy of base's
  // sinks and ring, so it continues base's stream; under fot an empty window.
  absl::StatusOr<ModelState> NewOverlayState(const ModelState& base) const;

  // Runs one window (at most W tokens) from an empty local cache and moves it
  // to memory: what Prefill does with every window but the last. Under
  // lambda: continues the stream with these tokens (at most W), as Append.
  [[nodiscard]] absl::Status ProcessWindow(absl::Span<const int> tokens, ModelState* state,
                                           absl::Span<const Provenance> provenance = {}) const;

  // Runs a whole input as the published LongLLaMA forward does: windows of W
  // from the start go through the model and then into memory; the last
  // last_context_length tokens stay in the local cache. The state's local
  // cache must be empty (its memory may hold earlier windows). Memory layers
  // read memory as state->retrieval says.
  //
  // provenance, if not empty, has one entry per token and is what memory
  // records for it; by default a token is {document 0, position
  // state->tokens_seen + its index, its id}.
  //
  // Under lambda attention (state->attention) there are no windows:
  // last_context_length is ignored, the state need not be empty, and the
  // tokens continue its stream, run in blocks of L queries.
  [[nodiscard]] absl::Status Prefill(absl::Span<const int> tokens, int last_context_length,
                                     ModelState* state, LogitsMode mode, const LogitsSink& sink,
                                     absl::Span<const Provenance> provenance = {}) const;

  // Generation: appends tokens (at most W) to the local cache; if the cache
  // would exceed W, its whole content moves to memory first. Under lambda:
  // any number of tokens, as Prefill.
  [[nodiscard]] absl::Status Append(absl::Span<const int> tokens, ModelState* state,
                                    LogitsMode mode, const LogitsSink& sink,
                                    absl::Span<const Provenance> provenance = {}) const;

 private:
  absl::Status CheckInput(absl::Span<const int> tokens,
                          absl::Span<const Provenance> provenance) const;
  // Forward of tokens that fit in the cache, with logits rows from `first`.
  absl::Status RunChunk(absl::Span<const int> tokens, const Provenance* provenance, int64_t first,
                        ModelState* state, LogitsMode mode, bool is_last_chunk,
                        const LogitsSink& sink) const;
  // The Forward calls and flushes the state's cache plans for `input`.
  absl::Status Run(StreamInput input, absl::Span<const int> tokens, int last_context_length,
                   ModelState* state, LogitsMode mode, const LogitsSink& sink,
                   absl::Span<const Provenance> provenance) const;

  Transformer transformer_;
};

}  // namespace fot

#endif  // FOTSERVE_SRC_ENGINE_ENGINE_H_
