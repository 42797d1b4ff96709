// The fot kind of StreamCache (stream_cache.h): DESIGN.md §1's windows.
// Each layer's LocalCache holds the current window's keys, rotated by their
// position in the window, and values. Input is cut into windows of W
// (window_split.h); a window other than the cached last one is flushed whole
// at its end, and generation flushes the cache when it would exceed W:
// memory layers append it to memory, keys as the raw projection ("rotated as
// position 0"), and the window restarts at position 0.
//
// Thread safety: as StreamCache.
#ifndef FOTSERVE_SRC_MODEL_FOT_STREAM_CACHE_H_
#define FOTSERVE_SRC_MODEL_FOT_STREAM_CACHE_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "src/model/attention.h"
#include "src/model/local_cache.h"
#include "src/model/stream_cache.h"

namespace fot {

class FotStreamCache : public StreamCache {
 public:
  explicit FotStreamCache(const ModelConfig& config);

  std::unique_ptr<StreamCache> Fork() const override;
  const char* kind() const override { return "fot"; }
  const std::vector<int>& memory_layers() const override { return memory_layers_; }
  int entries() const override { return caches_.empty() ? 0 : caches_.front().size(); }
  int64_t sink_tokens() const override { return 0; }

  [[nodiscard]] absl::Status Plan(StreamInput input, int64_t tokens, int last_context_length,
                                  std::vector<ForwardCall>* calls) const override;
  CommitRule Commits(int last_context_length) const override;
  [[nodiscard]] absl::Status Attend(const LayerStep& step) override;
  [[nodiscard]] absl::Status Flush(absl::Span<const std::unique_ptr<KvMemory>> memory) override;

  // The window is not saved: Write and Read fail with FailedPrecondition.
  bool persistent() const override { return false; }
  [[nodiscard]] absl::Status Write(int layer, std::ostream& out) const override;
  [[nodiscard]] absl::Status Read(int layer, std::istream& in, int64_t tokens) override;

  // Every layer's local cache, [layer] (tests).
  const std::vector<LocalCache>& layers() const { return caches_; }
  // Empties every layer's window without moving it to memory (a benchmark
  // running one window again and again).
  void DropWindow();

 private:
  FotStreamCache(int num_kv_heads, int head_dim, int window, std::vector<int> memory_layers,
                 std::vector<bool> rotates, std::vector<LocalCache> caches);

  int num_kv_heads_;
  int head_dim_;
  int window_;                      // W
  std::vector<int> memory_layers_;  // the config's mem_layers
  std::vector<bool> rotates_;       // [layer] RotatesPositions
  std::vector<LocalCache> caches_;  // [layer]
  AttentionScratch scratch_;        // Attend's buffers, kept so generation allocates nothing
};

}  // namespace fot

#endif  // FOTSERVE_SRC_MODEL_FOT_STREAM_CACHE_H_
