#include "src/model/lambda_stream_cache.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"

namespace fot {

LambdaStreamCache::LambdaStreamCache(const ModelConfig& config, const AttentionOptions& attention)
    : attention_(attention) {
  const std::vector<int>& layers = *attention_.memory_layers;
  for (int l = 0; l < config.num_hidden_layers; ++l) {
    const bool memory_layer = std::find(layers.begin(), layers.end(), l) != layers.end();
    rotates_.push_back(RotatesPositions(config, l));
    // Memory layers that rotate keep the raw keys too: what memory stores.
    caches_.emplace_back(config.num_key_value_heads, config.head_dim(), attention_.n_global,
                         attention_.local_window, memory_layer && rotates_.back());
  }
}

LambdaStreamCache::LambdaStreamCache(AttentionOptions attention, std::vector<bool> rotates,
                                     std::vector<LambdaCache> caches)
    : attention_(std::move(attention)), rotates_(std::move(rotates)), caches_(std::move(caches)) {}

std::unique_ptr<StreamCache> LambdaStreamCache::Fork() const {
  return std::unique_ptr<StreamCache>(new LambdaStreamCache(attention_, rotates_, caches_));
}

// Blocks of L queries from the call's first token, whatever the call: the
// stream simply continues, and Attend moves what leaves the ring to memory.
absl::Status LambdaStreamCache::Plan(StreamInput input, int64_t tokens, int last_context_length,
                                     std::vector<ForwardCall>* calls) const {
  calls->clear();
  const int64_t block = attention_.local_window;
  for (int64_t begin = 0; begin < tokens; begin += block) {
    calls->push_back({begin, std::min<int64_t>(block, tokens - begin), false, false});
  }
  return absl::OkStatus();
}

// Blocks of L from the stream's start, as a one-shot Prefill runs them; a
// block is final once a token follows it, which keeps the pending tail
// non-empty (Score needs the logits of the token before a continuation).
CommitRule LambdaStreamCache::Commits(int last_context_length) const {
  return {attention_.local_window, 1};
}

absl::Status LambdaStreamCache::Attend(const LayerStep& step) {
  const LambdaPositions positions{attention_.local_window, rotates_[step.layer],
                                  *attention_.memory_positioning};
  return LambdaAttend(step.dims, positions, *step.rope, step.q, step.k, step.v, step.provenance,
                      step.n, &caches_[step.layer], step.memory, *step.retrieval, &scratch_,
                      step.out, step.trace);
}

absl::Status LambdaStreamCache::Flush(absl::Span<const std::unique_ptr<KvMemory>> memory) {
  return absl::OkStatus();
}

absl::Status LambdaStreamCache::Write(int layer, std::ostream& out) const {
  return caches_[layer].Write(out);
}

absl::Status LambdaStreamCache::Read(int layer, std::istream& in, int64_t tokens) {
  LambdaCache read = caches_[layer];
  FOT_RETURN_IF_ERROR(read.Read(in));
  if (read.tokens() != tokens) {
    return absl::DataLossError(absl::StrCat("the saved lambda cache holds ", read.tokens(),
                                            " tokens, its stream ", tokens));
  }
  caches_[layer] = std::move(read);
  return absl::OkStatus();
}

}  // namespace fot
