// How a stream keeps its past: what each layer attends over besides memory,
// how new tokens join it, and when it moves to memory. One per stream of
// tokens (a session, a query), in its ModelState. Two kinds:
//   fot     DESIGN.md §1's windows of W: each layer's local cache holds the
//           current window; when a window ends the whole of it moves to
//           memory (memory layers) or is dropped (fot_stream_cache.h).
//   lambda  LM-Infinite's Λ: the n_global first tokens (sinks) and a ring of
//           the L most recent per layer; tokens move to memory one by one as
//           they leave the ring (lambda_stream_cache.h).
// NewStreamCache picks the kind, once, when a stream's state is created; the
// transformer, the engine, sessions and snapshots only use this interface.
//
// Memory (KvMemory) is not part of it: the state owns each layer's memory and
// hands it in, so overlays and inspection are the same for every kind.
//
// Thread safety: a StreamCache belongs to one stream and is changed by one
// thread at a time; its const methods may run concurrently with each other
// (queries fork a session's cache under a shared lock).
#ifndef FOTSERVE_SRC_MODEL_STREAM_CACHE_H_
#define FOTSERVE_SRC_MODEL_STREAM_CACHE_H_

#include <cstdint>
#include <iosfwd>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "memory/kv_memory.h"
#include "src/checkpoint/model_config.h"
#include "src/model/attention.h"
#include "src/model/attention_options.h"
#include "src/model/rope.h"

namespace fot {

// One layer's n new tokens, as the transformer hands them to the stream's past.
struct LayerStep {
  int layer;
  AttentionDims dims;
  int n;
  float* q;                      // [n, num_heads, head_dim], raw projection; rotated in place
  const float* k;                // [n, num_kv_heads, head_dim], raw projection
  const float* v;                // [n, num_kv_heads, head_dim]
  const Provenance* provenance;  // [n], what memory records for each token
  KvMemory* memory;              // the layer's memory; null for a layer without
  const Retrieval* retrieval;    // how the layer reads its memory
  const Rope* rope;              // covers positions [0, RopePositions(config))
  float* out;                    // [n, num_heads, head_dim]
  AttentionTrace* trace;         // what the last query retrieved; null: not traced
};

// The engine call whose input a plan cuts (engine.h).
enum class StreamInput {
  kPrefill,  // Engine::Prefill: a whole input (fot: the last window stays cached)
  kWindow,   // Engine::ProcessWindow: one window, all of it then in memory
  kAppend,   // Engine::Append: generation, continuing the stream
};

// One Forward call of a plan: input tokens [begin, begin + size), and whether
// the cache moves to memory (StreamCache::Flush) before or after it.
struct ForwardCall {
  int64_t begin;
  int64_t size;
  bool flush_before;
  bool flush_after;
  bool operator==(const ForwardCall&) const = default;
};

// How a session commits its stream (session.h): in calls of `size` tokens
// from its first token, each once `follow` more tokens have arrived after it,
// when no later question can change how a one-shot Prefill cuts it.
struct CommitRule {
  int64_t size;
  int64_t follow;
};

class StreamCache {
 public:
  virtual ~StreamCache() = default;

  // The cache of a stream that continues this one over a private overlay of
  // its memory (a query over a session, Engine::NewOverlayState): lambda, a
  // copy of the sinks and rings; fot, an empty window, since between windows
  // a fot stream's past is all in memory and a query's input starts a fresh
  // window split. Buffers are not copied.
  virtual std::unique_ptr<StreamCache> Fork() const = 0;

  // "fot" or "lambda": what a saved cache is filed under (memory_snapshot.h).
  virtual const char* kind() const = 0;
  // The layers that read and fill memory: the config's mem_layers under fot,
  // the options' memory layers under lambda.
  virtual const std::vector<int>& memory_layers() const = 0;
  // Entries each layer attends over besides memory: fot, the tokens in the
  // local cache; lambda, sinks plus ring (at most n_global + L).
  virtual int entries() const = 0;
  // How many of the stream's first tokens stay for its whole life and never
  // enter memory (lambda's sinks; fot: none): memory entry `id` holds stream
  // position sink_tokens() + id.
  virtual int64_t sink_tokens() const = 0;

  // The Forward calls that run `tokens` input tokens of `input`, in order,
  // into *calls (replacing what it held; reused so generation allocates
  // nothing). InvalidArgument or FailedPrecondition, naming the call, if
  // the input does not fit the cache as it is now.
  [[nodiscard]] virtual absl::Status Plan(StreamInput input, int64_t tokens,
                                          int last_context_length,
                                          std::vector<ForwardCall>* calls) const = 0;
  // How a session commits its stream into this cache (CommitRule).
  virtual CommitRule Commits(int last_context_length) const = 0;

  // One layer's attention for step.n new tokens over its past (and memory,
  // if step.memory), in one softmax; the tokens then join the past. Called
  // for every layer in order, with the tokens of one planned Forward call.
  // Fails only if reading or writing memory fails.
  [[nodiscard]] virtual absl::Status Attend(const LayerStep& step) = 0;

  // The end of a window: memory layers append their cache to memory[layer]
  // (keys as the raw projection), the others drop it, and every layer's cache
  // is empty again. Under lambda no window ends: nothing moves.
  [[nodiscard]] virtual absl::Status Flush(absl::Span<const std::unique_ptr<KvMemory>> memory) = 0;

  // Whether the cache is saved with its stream: Write and Read carry each
  // layer's, and a save records the attention options so that only the same
  // attention loads it. fot: false (a saved fot stream is its memory; its
  // pending tokens rebuild the window); lambda: true.
  virtual bool persistent() const = 0;
  // Layer `layer`'s past in binary form, and back. Read replaces it, and fails
  // with DataLoss (leaving it unchanged) unless the bytes were written by a
  // cache of the same kind and shape whose stream had run `tokens` tokens.
  [[nodiscard]] virtual absl::Status Write(int layer, std::ostream& out) const = 0;
  [[nodiscard]] virtual absl::Status Read(int layer, std::istream& in, int64_t tokens) = 0;
};

// The cache of a new stream of `config` attending as `attention` says (which
// ResolveAttentionOptions has resolved for config).
std::unique_ptr<StreamCache> NewStreamCache(const ModelConfig& config,
                                            const AttentionOptions& attention);

// Whether layer `layer` rotates queries and keys at all: not a LongLLaMA
// memory layer with mem_positionals false.
bool RotatesPositions(const ModelConfig& config, int layer);

// The positions a LayerStep's rope must cover: fot's window [0, W), lambda's
// rotations [0, 2L − 1) with L <= W (lambda_positions.h).
inline int RopePositions(const ModelConfig& config) { return 2 * config.max_position_embeddings; }

}  // namespace fot

#endif  // FOTSERVE_SRC_MODEL_STREAM_CACHE_H_
