#include "src/model/window_split.h"

#include <algorithm>

namespace fot {

std::vector<TokenRange> SplitWindows(int64_t num_tokens, int window, int last_context_length) {
  std::vector<TokenRange> windows;
  const int64_t head = std::max<int64_t>(num_tokens - last_context_length, 0);
  for (int64_t begin = 0; begin < head; begin += window) {
    windows.push_back({begin, std::min<int64_t>(window, head - begin)});
  }
  windows.push_back({head, num_tokens - head});
  return windows;
}

}  // namespace fot
