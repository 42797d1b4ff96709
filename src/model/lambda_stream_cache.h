// The lambda kind of StreamCache (stream_cache.h): LM-Infinite's Λ-shaped
// attention with a distance cap (lambda_attention.h). Each layer's
// LambdaCache holds the n_global sinks and a ring of the L most recent
// tokens, O(n_global + L) however long the stream. There are no windows: a
// stream's input runs in blocks of L queries from the call's first token,
// and the tokens leaving the ring move to memory (memory layers) inside
// Attend, one by one, so a flush moves nothing. The cache is saved with its
// stream (Write / Read: LambdaCache's binary form).
//
// Thread safety: as StreamCache.
#ifndef FOTSERVE_SRC_MODEL_LAMBDA_STREAM_CACHE_H_
#define FOTSERVE_SRC_MODEL_LAMBDA_STREAM_CACHE_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "src/model/attention_options.h"
#include "src/model/lambda_attention.h"
#include "src/model/lambda_cache.h"
#include "src/model/stream_cache.h"

namespace fot {

class LambdaStreamCache : public StreamCache {
 public:
  // `attention`: lambda options resolved for config (every field set).
  LambdaStreamCache(const ModelConfig& config, const AttentionOptions& attention);

  std::unique_ptr<StreamCache> Fork() const override;
  const char* kind() const override { return "lambda"; }
  const std::vector<int>& memory_layers() const override { return *attention_.memory_layers; }
  int entries() const override { return caches_.empty() ? 0 : caches_.front().entries(); }
  int64_t sink_tokens() const override { return attention_.n_global; }

  [[nodiscard]] absl::Status Plan(StreamInput input, int64_t tokens, int last_context_length,
                                  std::vector<ForwardCall>* calls) const override;
  CommitRule Commits(int last_context_length) const override;
  [[nodiscard]] absl::Status Attend(const LayerStep& step) override;
  [[nodiscard]] absl::Status Flush(absl::Span<const std::unique_ptr<KvMemory>> memory) override;

  bool persistent() const override { return true; }
  [[nodiscard]] absl::Status Write(int layer, std::ostream& out) const override;
  [[nodiscard]] absl::Status Read(int layer, std::istream& in, int64_t tokens) override;

  // Every layer's sinks and ring, [layer] (tests, benchmarks).
  const std::vector<LambdaCache>& layers() const { return caches_; }

 private:
  LambdaStreamCache(AttentionOptions attention, std::vector<bool> rotates,
                    std::vector<LambdaCache> caches);

  AttentionOptions attention_;       // resolved: local_window, positioning, layers set
  std::vector<bool> rotates_;        // [layer] RotatesPositions
  std::vector<LambdaCache> caches_;  // [layer]
  LambdaScratch scratch_;            // Attend's buffers, kept so generation allocates nothing
};

}  // namespace fot

#endif  // FOTSERVE_SRC_MODEL_LAMBDA_STREAM_CACHE_H_
