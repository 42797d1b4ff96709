// Where Λ-shaped attention puts its keys and queries: the one place that
// decides rotations (the rest of lambda_attention.cc only masks and sums).
//
// A query at stream position t scores three kinds of keys (all rotations in
// the rotate_half RoPE of rope.h; "rotated by p" means by angle p·θ_i):
//   local   s ∈ [t − L + 1, t]. True distance t − s. Keys are stored rotated by
//           their ring slot s mod L, i.e. relative to the origin o = L·⌊s/L⌋;
//           the query is rotated by t − o, so ⟨q, k⟩ sees (t − o) − (s − o) =
//           t − s. Angles stay below 2L at any stream length.
//   global  s < n_global, s ≤ t − L. Key unrotated (angle 0), query rotated by
//           L: the distance is capped at L.
//   memory  keys unrotated; the query by min(t, L − 1) (as_first, FoT's rule:
//           memory sits at the query's local position), by L (fixed_distance,
//           as the global branch), or not at all (none).
// A layer that does not rotate (a LongLLaMA memory layer with mem_positionals
// false) rotates nothing: only the mask applies.
#ifndef FOTSERVE_SRC_MODEL_LAMBDA_POSITIONS_H_
#define FOTSERVE_SRC_MODEL_LAMBDA_POSITIONS_H_

#include <algorithm>
#include <cstdint>

#include "src/model/attention_options.h"

namespace fot {

enum class KeyKind { kGlobal, kLocal, kMemory };

struct LambdaPositions {
  int local_window;  // L
  bool rotates;      // false: no rotation anywhere
  MemoryPositioning memory;

  static constexpr int kNoRotation = -1;

  // Rotation of the key at stream position s (a local key: its ring slot).
  int KeyRotation(KeyKind kind, int64_t s) const {
    if (!rotates || kind != KeyKind::kLocal) return kNoRotation;
    return static_cast<int>(s % local_window);
  }

  // Rotation of the query at stream position t for keys of `kind`; for local
  // keys, `origin` is L·⌊s/L⌋ of the keys scored. Local rotations of keys the
  // query cannot see (outside [t − L + 1, t]) are clamped into [0, 2L − 2];
  // their scores are masked anyway.
  int QueryRotation(KeyKind kind, int64_t t, int64_t origin) const {
    if (!rotates) return kNoRotation;
    switch (kind) {
      case KeyKind::kLocal:
        return static_cast<int>(std::clamp<int64_t>(t - origin, 0, 2 * local_window - 2));
      case KeyKind::kGlobal:
        return local_window;
      case KeyKind::kMemory:
        switch (memory) {
          case MemoryPositioning::kAsFirst:
            return static_cast<int>(std::min<int64_t>(t, local_window - 1));
          case MemoryPositioning::kFixedDistance:
            return local_window;
          case MemoryPositioning::kNone:
            return kNoRotation;
        }
    }
    return kNoRotation;
  }

  // Positions a rotation table must cover: [0, 2L − 1).
  static int TableSize(int max_local_window) { return 2 * max_local_window; }
};

}  // namespace fot

#endif  // FOTSERVE_SRC_MODEL_LAMBDA_POSITIONS_H_
