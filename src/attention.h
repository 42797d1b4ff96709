// Attention of a window's queries over its local keys and, for memory layers,
// over the layer's memory, in one softmax (DESIGN.md §1).
//
// Memory is streamed in blocks with a running (online) softmax, so a memory of
// millions of entries never needs a [window × memory] score matrix: the
// largest buffer is one tile of queries × one block of keys.
#ifndef FOTSERVE_SRC_ATTENTION_H_
#define FOTSERVE_SRC_ATTENTION_H_

#include <vector>

#include "memory/kv_memory.h"

namespace fot {

struct AttentionDims {
  int num_heads;
  int num_kv_heads;  // divides num_heads; query head h reads kv head h / (num_heads / num_kv_heads)
  int head_dim;
};

// Buffers reused across calls, so that generating a token allocates nothing.
// One per concurrent caller.
struct AttentionScratch {
  std::vector<float> queries;  // [tile rows, head_dim], scaled by 1/sqrt(head_dim)
  std::vector<float> scores;   // [tile rows, key block]
  std::vector<float> output;   // [tile rows, head_dim], unnormalised
  std::vector<float> row_max;  // [tile rows]
  std::vector<float> row_sum;  // [tile rows]
};

// n queries sit at local positions [num_cached, num_cached + n). Each attends
// causally to local keys [0, num_cached + n) and, if memory is not null, to
// every memory entry of its kv head.
//   q:      [n, num_heads, head_dim], already position-rotated
//   keys:   [num_cached + n, num_kv_heads, head_dim], already rotated
//   values: [num_cached + n, num_kv_heads, head_dim]
//   out:    [n, num_heads, head_dim]
void Attend(const AttentionDims& dims, const float* q, int n, int num_cached, const float* keys,
            const float* values, const KvMemory* memory, AttentionScratch* scratch, float* out);

}  // namespace fot

#endif  // FOTSERVE_SRC_ATTENTION_H_
