#include "src/engine/engine.h"

#include <algorithm>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "src/model/window_split.h"
#include "src/model/kernels.h"

namespace fot {
namespace {

// lm_head is applied this many rows at a time, so logits of a whole window
// (rows × vocab) never sit in memory at once.
constexpr int kLogitsRows = 64;

}  // namespace

absl::StatusOr<std::unique_ptr<Engine>> Engine::Load(const std::string& model_dir) {
  FOT_ASSIGN_OR_RETURN(ModelConfig config, ModelConfig::FromFile(model_dir + "/config.json"));
  FOT_ASSIGN_OR_RETURN(ModelWeights weights, ModelWeights::Load(model_dir, config));
  return std::make_unique<Engine>(Transformer(std::move(config), std::move(weights)));
}

Engine::Engine(Transformer transformer) : transformer_(std::move(transformer)) {
  UseSingleThreadedBlas();
}

MemoryOptions Engine::DefaultMemoryOptions() const {
  MemoryOptions options;
  options.index_kind = IndexKind::kFlat;
  // Validate() admits only these three names.
  options.dtype = config().mem_dtype == "float16"    ? StorageType::kFloat16
                  : config().mem_dtype == "bfloat16" ? StorageType::kBFloat16
                                                     : StorageType::kFloat32;
  return options;
}

absl::StatusOr<ModelState> Engine::NewOverlayState(const ModelState& base) const {
  FOT_ASSIGN_OR_RETURN(ModelState state, NewState(MemoryOptions{}, base.attention));
  state.lambda_caches = base.lambda_caches;  // lambda: continue base's stream
  for (size_t l = 0; l < base.memory.size(); ++l) {
    if (base.memory[l] == nullptr) continue;
    FOT_ASSIGN_OR_RETURN(state.memory[l], KvMemory::CreateOverlay(base.memory[l].get()));
  }
  state.retrieval = base.retrieval;
  state.tokens_seen = base.tokens_seen;
  return state;
}

absl::Status Engine::ProcessWindow(absl::Span<const int> tokens, ModelState* state,
                                   absl::Span<const Provenance> provenance) const {
  if (tokens.empty() || static_cast<int64_t>(tokens.size()) > config().max_position_embeddings) {
    return absl::InvalidArgumentError(absl::StrCat(
        "a window holds 1 to ", config().max_position_embeddings, " tokens, not ", tokens.size()));
  }
  if (state->attention.mode == AttentionMode::kLambda) {
    return RunLambda(tokens, state, LogitsMode::kNone, nullptr, provenance);
  }
  if (state->cache_size() != 0) {
    return absl::FailedPreconditionError("ProcessWindow needs an empty local cache");
  }
  FOT_RETURN_IF_ERROR(CheckInput(tokens, provenance));
  FOT_RETURN_IF_ERROR(RunChunk(tokens, provenance.empty() ? nullptr : provenance.data(), 0, state,
                               LogitsMode::kNone, /*is_last_chunk=*/false, nullptr));
  return transformer_.FlushLocalCache(state);
}

absl::Status Engine::CheckInput(absl::Span<const int> tokens,
                                absl::Span<const Provenance> provenance) const {
  if (!provenance.empty() && provenance.size() != tokens.size()) {
    return absl::InvalidArgumentError(absl::StrCat("provenance has ", provenance.size(),
                                                   " entries for ", tokens.size(), " tokens"));
  }
  const int vocab = config().vocab_size;
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (tokens[i] < 0 || tokens[i] >= vocab) {
      return absl::InvalidArgumentError(absl::StrCat("token id ", tokens[i], " at position ", i,
                                                     " is outside the vocabulary [0, ", vocab,
                                                     ")"));
    }
  }
  return absl::OkStatus();
}

absl::Status Engine::RunChunk(absl::Span<const int> tokens, const Provenance* provenance,
                              int64_t first, ModelState* state, LogitsMode mode, bool is_last_chunk,
                              const LogitsSink& sink) const {
  const int n = static_cast<int>(tokens.size());
  if (provenance == nullptr) {
    std::vector<Provenance>& defaults = state->scratch.provenance;
    defaults.clear();
    for (int i = 0; i < n; ++i) defaults.push_back({0, state->tokens_seen + i, tokens[i]});
    provenance = defaults.data();
  }
  FOT_ASSIGN_OR_RETURN(const float* hidden,
                       transformer_.Forward(tokens.data(), provenance, n, state));
  if (mode == LogitsMode::kNone || (mode == LogitsMode::kLast && !is_last_chunk)) {
    return absl::OkStatus();
  }

  const int hidden_size = config().hidden_size;
  const int begin = mode == LogitsMode::kAll ? 0 : n - 1;
  // Kept in the state: generation asks for a [vocab] row every token.
  std::vector<float>& logits = state->scratch.logits;
  logits.resize(static_cast<size_t>(std::min(kLogitsRows, n - begin)) * config().vocab_size);
  for (int row = begin; row < n; row += kLogitsRows) {
    const int rows = std::min(kLogitsRows, n - row);
    transformer_.Logits(hidden + static_cast<size_t>(row) * hidden_size, rows, logits.data());
    sink(first + row, rows, logits.data());
  }
  return absl::OkStatus();
}

absl::Status Engine::Prefill(absl::Span<const int> tokens, int last_context_length,
                             ModelState* state, LogitsMode mode, const LogitsSink& sink,
                             absl::Span<const Provenance> provenance) const {
  const int window = config().max_position_embeddings;
  if (tokens.empty()) return absl::InvalidArgumentError("the input has no tokens");
  if (state->attention.mode == AttentionMode::kLambda) {
    return RunLambda(tokens, state, mode, sink, provenance);
  }
  if (last_context_length < 1 || last_context_length > window) {
    return absl::InvalidArgumentError(
        absl::StrCat("last_context_length ", last_context_length,
                     " must lie in [1, max_position_embeddings = ", window, "]"));
  }
  if (state->cache_size() != 0) {
    return absl::FailedPreconditionError(
        "Prefill needs an empty local cache; use Append to continue a stream");
  }
  FOT_RETURN_IF_ERROR(CheckInput(tokens, provenance));

  const std::vector<TokenRange> windows =
      SplitWindows(static_cast<int64_t>(tokens.size()), window, last_context_length);
  for (size_t i = 0; i < windows.size(); ++i) {
    const TokenRange& w = windows[i];
    const bool last = i + 1 == windows.size();
    FOT_RETURN_IF_ERROR(RunChunk(tokens.subspan(w.begin, w.size),
                                 provenance.empty() ? nullptr : &provenance[w.begin], w.begin,
                                 state, mode, last, sink));
    if (!last) FOT_RETURN_IF_ERROR(transformer_.FlushLocalCache(state));
  }
  return absl::OkStatus();
}

absl::Status Engine::Append(absl::Span<const int> tokens, ModelState* state, LogitsMode mode,
                            const LogitsSink& sink, absl::Span<const Provenance> provenance) const {
  const int window = config().max_position_embeddings;
  if (tokens.empty()) return absl::InvalidArgumentError("no tokens to append");
  if (state->attention.mode == AttentionMode::kLambda) {
    return RunLambda(tokens, state, mode, sink, provenance);
  }
  if (static_cast<int64_t>(tokens.size()) > window) {
    return absl::InvalidArgumentError(absl::StrCat(
        "cannot append ", tokens.size(), " tokens at once: more than the window (", window, ")"));
  }
  FOT_RETURN_IF_ERROR(CheckInput(tokens, provenance));
  if (state->cache_size() + static_cast<int64_t>(tokens.size()) > window) {
    FOT_RETURN_IF_ERROR(transformer_.FlushLocalCache(state));
  }
  return RunChunk(tokens, provenance.empty() ? nullptr : provenance.data(), 0, state, mode,
                  /*is_last_chunk=*/true, sink);
}

// --- lambda attention (attention_options.h, lambda_attention.h) ------------

absl::Status Engine::RunLambda(absl::Span<const int> tokens, ModelState* state, LogitsMode mode,
                               const LogitsSink& sink,
                               absl::Span<const Provenance> provenance) const {
  FOT_RETURN_IF_ERROR(CheckInput(tokens, provenance));
  const int64_t total = static_cast<int64_t>(tokens.size());
  const int block = state->attention.local_window;
  for (int64_t begin = 0; begin < total; begin += block) {
    const int64_t size = std::min<int64_t>(block, total - begin);
    FOT_RETURN_IF_ERROR(RunChunk(tokens.subspan(begin, size),
                                 provenance.empty() ? nullptr : &provenance[begin], begin, state,
                                 mode, /*is_last_chunk=*/begin + size == total, sink));
  }
  return absl::OkStatus();
}

}  // namespace fot
