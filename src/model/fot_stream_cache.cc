#include "src/model/fot_stream_cache.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "src/checkpoint/model_config.h"
#include "src/model/window_split.h"

namespace fot {

FotStreamCache::FotStreamCache(const ModelConfig& config)
    : num_kv_heads_(config.num_key_value_heads),
      head_dim_(config.head_dim()),
      window_(config.max_position_embeddings),
      memory_layers_(config.mem_layers) {
  for (int l = 0; l < config.num_hidden_layers; ++l) {
    rotates_.push_back(RotatesPositions(config, l));
    // Memory layers that rotate keep the raw keys too: what memory stores.
    caches_.emplace_back(num_kv_heads_, head_dim_, window_,
                         config.IsMemoryLayer(l) && rotates_.back());
  }
}

FotStreamCache::FotStreamCache(int num_kv_heads, int head_dim, int window,
                               std::vector<int> memory_layers, std::vector<bool> rotates,
                               std::vector<LocalCache> caches)
    : num_kv_heads_(num_kv_heads),
      head_dim_(head_dim),
      window_(window),
      memory_layers_(std::move(memory_layers)),
      rotates_(std::move(rotates)),
      caches_(std::move(caches)) {}

std::unique_ptr<StreamCache> FotStreamCache::Fork() const {
  std::vector<LocalCache> empty;
  for (const LocalCache& cache : caches_) {
    empty.emplace_back(num_kv_heads_, head_dim_, window_, cache.keeps_raw_keys());
  }
  return std::unique_ptr<StreamCache>(new FotStreamCache(
      num_kv_heads_, head_dim_, window_, memory_layers_, rotates_, std::move(empty)));
}

absl::Status FotStreamCache::Plan(StreamInput input, int64_t tokens, int last_context_length,
                                  std::vector<ForwardCall>* calls) const {
  calls->clear();
  switch (input) {
    case StreamInput::kPrefill: {
      FOT_RETURN_IF_ERROR(CheckLastContextLength(last_context_length, window_));
      if (entries() != 0) {
        return absl::FailedPreconditionError(
            "Prefill needs an empty local cache; use Append to continue a stream");
      }
      // Every window but the last goes to memory once processed.
      const std::vector<TokenRange> windows = SplitWindows(tokens, window_, last_context_length);
      for (size_t i = 0; i < windows.size(); ++i) {
        calls->push_back({windows[i].begin, windows[i].size, false, i + 1 < windows.size()});
      }
      return absl::OkStatus();
    }
    case StreamInput::kWindow:
      if (entries() != 0) {
        return absl::FailedPreconditionError("ProcessWindow needs an empty local cache");
      }
      calls->push_back({0, tokens, false, true});
      return absl::OkStatus();
    case StreamInput::kAppend:
      if (tokens > window_) {
        return absl::InvalidArgumentError(absl::StrCat(
            "cannot append ", tokens, " tokens at once: more than the window (", window_, ")"));
      }
      // A cache that would exceed the window moves to memory whole first.
      calls->push_back({0, tokens, entries() + tokens > window_, false});
      return absl::OkStatus();
  }
  return absl::InternalError("unknown stream input");
}

// A full window is final once L − 1 tokens follow it: any question (>= 1
// token) then leaves it whole in the one-shot split.
CommitRule FotStreamCache::Commits(int last_context_length) const {
  return {window_, last_context_length - 1};
}

absl::Status FotStreamCache::Attend(const LayerStep& step) {
  LocalCache& cache = caches_[step.layer];
  const int n = step.n;
  const int first = cache.size();
  const size_t floats = static_cast<size_t>(n) * step.dims.num_kv_heads * step.dims.head_dim;

  // k and v join the local cache
  float* keys = cache.keys_at(first);
  std::copy(step.provenance, step.provenance + n, cache.provenance_at(first));
  std::memcpy(keys, step.k, floats * sizeof(float));
  std::memcpy(cache.values_at(first), step.v, floats * sizeof(float));

  // RoPE by position in the local window; memory layers also keep the raw
  // keys, which is what memory stores ("rotated as position 0")
  if (rotates_[step.layer]) {
    if (cache.keeps_raw_keys()) std::memcpy(cache.raw_keys_at(first), keys, floats * sizeof(float));
    step.rope->Apply(step.q, n, step.dims.num_heads, first);
    step.rope->Apply(keys, n, step.dims.num_kv_heads, first);
  }
  cache.Grow(n);

  // attention over the local window (+ memory), one softmax
  return fot::Attend(step.dims, step.q, n, first, cache.keys(), cache.values(), step.memory,
                     *step.retrieval, &scratch_, step.out, step.trace);
}

absl::Status FotStreamCache::Flush(absl::Span<const std::unique_ptr<KvMemory>> memory) {
  for (size_t l = 0; l < caches_.size(); ++l) {
    const LocalCache& cache = caches_[l];
    if (KvMemory* layer_memory = memory[l].get()) {
      FOT_RETURN_IF_ERROR(layer_memory->Append(cache.memory_keys(), cache.values(),
                                               cache.provenance(), cache.size()));
    }
  }
  DropWindow();
  return absl::OkStatus();
}

void FotStreamCache::DropWindow() {
  for (LocalCache& cache : caches_) cache.Clear();
}

absl::Status FotStreamCache::Write(int layer, std::ostream& out) const {
  return absl::FailedPreconditionError("a fot stream's window is not saved");
}

absl::Status FotStreamCache::Read(int layer, std::istream& in, int64_t tokens) {
  return absl::FailedPreconditionError("a fot stream's window is not saved");
}

}  // namespace fot
