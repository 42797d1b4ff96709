// How a long input is cut into windows (DESIGN.md §1): the first max(T − L, 0)
// tokens in windows of W from the start (the last of these may be shorter),
// then the remaining tokens as the last window, which becomes the local cache.
#ifndef FOTSERVE_SRC_MODEL_WINDOW_SPLIT_H_
#define FOTSERVE_SRC_MODEL_WINDOW_SPLIT_H_

#include <cstdint>
#include <vector>

namespace fot {

struct TokenRange {
  int64_t begin;
  int64_t size;
  bool operator==(const TokenRange&) const = default;
};

// The windows of an input of num_tokens tokens, in order; the last entry is
// the last (cached) window. window and last_context_length must be positive.
std::vector<TokenRange> SplitWindows(int64_t num_tokens, int window, int last_context_length);

}  // namespace fot

#endif  // FOTSERVE_SRC_MODEL_WINDOW_SPLIT_H_
