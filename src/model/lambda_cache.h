// One layer's key/value state under Λ-shaped attention (lambda_attention.h):
// the n_global sink entries (the stream's first tokens) and a ring of the L
// most recent entries. Its size is fixed at n_global + L entries however long
// the stream grows; what leaves the ring is dropped, or moved to memory by the
// caller (memory layers).
//
// Layout. Stream position s lives in ring slot s mod L. Ring keys are stored
// rotated by that slot number (s mod L — a rotation relative to the moving
// origin L·⌊s/L⌋), once, when written; a query at t scoring key s rotates
// itself by t − L·⌊s/L⌋, so the product depends on t − s only and no angle
// exceeds 2L. Layers that keep raw keys (memory layers that rotate) also hold
// the unrotated projection, which memory and the memory-score path use. The
// first n_global positions are also copied, unrotated, to the sinks.
//
// A plain value: copyable (a query's private copy of a session's state), and
// savable (Write / Read: a saved session continues its stream exactly).
#ifndef FOTSERVE_SRC_MODEL_LAMBDA_CACHE_H_
#define FOTSERVE_SRC_MODEL_LAMBDA_CACHE_H_

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <iosfwd>
#include <vector>

#include "absl/status/status.h"
#include "memory/kv_store.h"

namespace fot {

class LambdaCache {
 public:
  LambdaCache(int num_kv_heads, int head_dim, int n_global, int local_window, bool keeps_raw_keys);

  int n_global() const { return n_global_; }
  int local_window() const { return local_window_; }
  bool keeps_raw_keys() const { return keeps_raw_keys_; }
  // Stream positions written so far: the next token sits at position tokens().
  int64_t tokens() const { return tokens_; }
  int num_sinks() const { return static_cast<int>(std::min<int64_t>(tokens_, n_global_)); }
  int num_recent() const { return static_cast<int>(std::min<int64_t>(tokens_, local_window_)); }
  // Entries held: sinks plus ring; at most n_global + L.
  int entries() const { return num_sinks() + num_recent(); }
  // Floats held by the keys, raw keys and values (the state's size).
  int64_t floats() const {
    return static_cast<int64_t>(sink_keys_.size() + sink_values_.size() + ring_keys_.size() +
                                ring_raw_keys_.size() + ring_values_.size());
  }

  // Sinks [n_global, num_kv_heads, head_dim], unrotated; entry i is position i.
  const float* sink_keys() const { return sink_keys_.data(); }
  const float* sink_values() const { return sink_values_.data(); }

  // Ring slot of a position, and the entries of slot j ([num_kv_heads, head_dim]).
  int Slot(int64_t position) const { return static_cast<int>(position % local_window_); }
  const float* ring_keys(int slot) const { return &ring_keys_[Offset(slot)]; }  // rotated by slot
  // Unrotated keys: the raw copy when kept, otherwise ring_keys (never rotated).
  const float* ring_raw_keys(int slot) const {
    return keeps_raw_keys_ ? &ring_raw_keys_[Offset(slot)] : ring_keys(slot);
  }
  const float* ring_values(int slot) const { return &ring_values_[Offset(slot)]; }
  const Provenance* ring_provenance(int slot) const { return &ring_provenance_[slot]; }

  // Writes positions [tokens, tokens + n), n <= L: raw keys, the keys rotated
  // by their slot (`rotated`; pass raw_keys again when the layer does not
  // rotate), values, provenance, each [n, ...] in position order. Overwrites
  // the ring slots of positions [tokens − L, tokens + n − L).
  void Push(const float* raw_keys, const float* rotated, const float* values,
            const Provenance* provenance, int n);

  // The whole cache (shape, position, sinks, ring, provenance) in a binary
  // form, and back. Read replaces this cache's content and fails with
  // DataLoss (leaving it unchanged) unless the bytes were written by a cache
  // of the same shape (kv heads × head_dim, n_global, L, raw keys kept).
  [[nodiscard]] absl::Status Write(std::ostream& out) const;
  [[nodiscard]] absl::Status Read(std::istream& in);

 private:
  size_t Offset(int slot) const { return static_cast<size_t>(slot) * row_; }

  int row_;  // num_kv_heads * head_dim
  int n_global_;
  int local_window_;
  bool keeps_raw_keys_;
  int64_t tokens_ = 0;
  std::vector<float> sink_keys_;             // [n_global, row], unrotated
  std::vector<float> sink_values_;           // [n_global, row]
  std::vector<float> ring_keys_;             // [L, row], rotated by slot
  std::vector<float> ring_raw_keys_;         // [L, row] or empty
  std::vector<float> ring_values_;           // [L, row]
  std::vector<Provenance> ring_provenance_;  // [L]
};

}  // namespace fot

#endif  // FOTSERVE_SRC_MODEL_LAMBDA_CACHE_H_
