// LM-Infinite's Λ-shaped attention with a distance cap, plus kNN memory
// (issue 6). Exact semantics, per layer, for the query at stream position t
// (positions count from the stream's first token; L = local window,
// G = n_global):
//
//   local branch   s ∈ [max(0, t − L + 1), t], true distance t − s.
//   global branch  s < G and s ≤ t − L: the first G tokens not in the local
//                  branch, each at the capped distance L (key rotated by 0,
//                  query by L). Empty while t < L: up to L tokens this is
//                  plain causal attention.
//   memory         memory layers only: s ∈ [G, t − L], every token that has
//                  left the local branch and is not global, read from the
//                  layer's memory as the state's Retrieval says (dense: all,
//                  knn:K: the K with the largest ⟨q_mem, key⟩), keys
//                  unrotated, the query positioned as MemoryPositioning says.
//                  Documents outside Retrieval::filter are not visible.
//   One softmax over all three, scores ⟨q, k⟩ / sqrt(head_dim).
// Rotations are lambda_positions.h's. Nothing depends on how the stream was
// cut into calls: a call of n tokens gives what n calls of one token give
// (up to float summation order), because the tokens that leave the local
// branch during a call are scored as memory, per query, from the ring,
// before they are appended to the FAISS memory at the end of the call (with
// the ids they then get, so knn merges them with FAISS's results exactly).
//
// State: the layer's LambdaCache (G sinks + a ring of L; a stream keeps one
// per layer in its LambdaStreamCache), O(G + L) however long the stream;
// memory layers' memory grows by one entry per token that leaves the local
// branch.
#ifndef FOTSERVE_SRC_MODEL_LAMBDA_ATTENTION_H_
#define FOTSERVE_SRC_MODEL_LAMBDA_ATTENTION_H_

#include <cstdint>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "memory/kv_memory.h"
#include "src/model/attention.h"
#include "src/model/lambda_cache.h"
#include "src/model/lambda_positions.h"
#include "src/model/rope.h"

namespace fot {

// Buffers reused across calls, so generating a token allocates nothing.
struct LambdaScratch {
  struct Candidate {      // knn: one memory entry a query may attend to
    float score;          // scaled ⟨q_mem, key⟩
    int64_t id;           // memory id (in-call entries: the id they will get)
    const float* values;  // in-call entries' values; null: read from memory
    Provenance provenance;
  };
  // One per OpenMP thread: the shared tile buffers (queries: scaled,
  // unrotated) and what the Λ mask adds.
  struct Tile : TileBuffers {
    std::vector<float> rotated;         // [tile rows, head_dim], for one key segment
    std::vector<float> memory_queries;  // [tile rows, head_dim], scaled, memory-positioned
    std::vector<float> in_call;         // [tile rows, in-call memory entries] (knn)
    std::vector<Candidate> candidates;
    std::vector<int64_t> gather_ids;  // knn: the memory entries whose values are read
  };
  std::vector<Tile> tiles;
  std::vector<float> new_keys;  // [n, num_kv_heads, head_dim], rotated by ring slot
  KnnResults knn;               // queries memory-positioned
};

// One layer's attention for n new tokens at stream positions
// [cache->tokens(), cache->tokens() + n), 1 <= n <= L:
//   q: [n, num_heads, head_dim] and k, v: [n, num_kv_heads, head_dim], the
//      raw projections (no rotation applied); provenance: [n].
//   rope: covers the rotations of LambdaPositions::TableSize(L).
//   out: [n, num_heads, head_dim].
// Then appends the tokens that left the local branch (and are not global)
// to `memory` (null: a layer without memory; they are dropped) and writes
// the new entries to `cache`. With a trace and a memory, records what the
// last query retrieved, as Attend does. Fails only if memory fails. May run
// on many threads at once, each with its own cache, memory and scratch.
[[nodiscard]] absl::Status LambdaAttend(const AttentionDims& dims, const LambdaPositions& positions,
                                        const Rope& rope, const float* q, const float* k,
                                        const float* v, const Provenance* provenance, int n,
                                        LambdaCache* cache, KvMemory* memory,
                                        const Retrieval& retrieval, LambdaScratch* scratch,
                                        float* out, AttentionTrace* trace = nullptr);

}  // namespace fot

#endif  // FOTSERVE_SRC_MODEL_LAMBDA_ATTENTION_H_
