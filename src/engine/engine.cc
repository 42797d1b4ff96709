#include "src/engine/engine.h"

#include <algorithm>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "src/model/kernels.h"

namespace fot {
namespace {

// lm_head is applied this many rows at a time, so logits of a whole window
// (rows × vocab) never sit in memory at once.
constexpr int kLogitsRows = 64;

}  // namespace

absl::StatusOr<std::unique_ptr<Engine>> Engine::Load(const std::string& model_dir,
                                                     const WeightsOptions& weights_options) {
  FOT_ASSIGN_OR_RETURN(ModelConfig config, ModelConfig::FromFile(model_dir + "/config.json"));
  FOT_ASSIGN_OR_RETURN(ModelWeights weights,
                       ModelWeights::Load(model_dir, config, weights_options));
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
  ModelState state;
  state.attention = base.attention;
  state.cache = base.cache->Fork();  // continues base's stream
  state.memory.resize(base.memory.size());
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
  return Run(StreamInput::kWindow, tokens, 0, state, LogitsMode::kNone, nullptr, provenance);
}

absl::Status Engine::CheckInput(absl::Span<const int> tokens,
                                absl::Span<const Provenance> provenance) const {
  if (!provenance.empty() && provenance.size() != tokens.size()) {
    return absl::InvalidArgumentError(absl::StrCat("provenance has ", provenance.size(),
                                                   " entries for ", tokens.size(), " tokens"));
  }
  return CheckTokenIds(config(), tokens);
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
  if (tokens.empty()) return absl::InvalidArgumentError("the input has no tokens");
  return Run(StreamInput::kPrefill, tokens, last_context_length, state, mode, sink, provenance);
}

absl::Status Engine::Append(absl::Span<const int> tokens, ModelState* state, LogitsMode mode,
                            const LogitsSink& sink, absl::Span<const Provenance> provenance) const {
  if (tokens.empty()) return absl::InvalidArgumentError("no tokens to append");
  return Run(StreamInput::kAppend, tokens, 0, state, mode, sink, provenance);
}

absl::Status Engine::Run(StreamInput input, absl::Span<const int> tokens, int last_context_length,
                         ModelState* state, LogitsMode mode, const LogitsSink& sink,
                         absl::Span<const Provenance> provenance) const {
  // The cache cuts the input into Forward calls and says when memory takes it.
  std::vector<ForwardCall>& calls = state->scratch.calls;
  FOT_RETURN_IF_ERROR(
      state->cache->Plan(input, static_cast<int64_t>(tokens.size()), last_context_length, &calls));
  FOT_RETURN_IF_ERROR(CheckInput(tokens, provenance));
  for (size_t i = 0; i < calls.size(); ++i) {
    const ForwardCall& call = calls[i];
    if (state->cancelled && state->cancelled()) {
      return absl::CancelledError("the query was cancelled or ran out of time");
    }
    if (call.flush_before) FOT_RETURN_IF_ERROR(transformer_.FlushLocalCache(state));
    FOT_RETURN_IF_ERROR(RunChunk(tokens.subspan(call.begin, call.size),
                                 provenance.empty() ? nullptr : &provenance[call.begin], call.begin,
                                 state, mode, /*is_last_chunk=*/i + 1 == calls.size(), sink));
    if (call.flush_after) FOT_RETURN_IF_ERROR(transformer_.FlushLocalCache(state));
  }
  return absl::OkStatus();
}

}  // namespace fot
