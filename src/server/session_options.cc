#include "src/server/session_options.h"

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"

namespace fot {

namespace {

// The attention options of `spec` over `defaults`, resolved for `config`.
absl::StatusOr<AttentionOptions> ResolveSessionAttention(const SessionOptionsSpec& spec,
                                                         const SessionOptions& defaults,
                                                         const ModelConfig& config) {
  const AttentionSpec attention{spec.attention, spec.n_global, spec.local_window,
                                spec.memory_positioning, spec.memory_layers};
  FOT_ASSIGN_OR_RETURN(const AttentionOptions resolved,
                       ApplyAttentionSpec(attention, defaults.attention, config));
  if (resolved.mode == AttentionMode::kLambda && spec.last_context_length != 0) {
    return absl::InvalidArgumentError(
        "last_context_length is an option of attention 'fot'; under 'lambda' the local branch is "
        "local_window");
  }
  return resolved;
}

}  // namespace

absl::StatusOr<SessionOptions> ResolveSessionOptions(const SessionOptionsSpec& spec,
                                                     const SessionOptions& defaults,
                                                     const ModelConfig& config) {
  SessionOptions options = defaults;
  if (!spec.index.empty()) {
    MemoryOptions memory;
    memory.dtype = defaults.memory.dtype;
    absl::Status status = ParseIndexSpec(spec.index, &memory);
    if (!status.ok()) return absl::InvalidArgumentError(absl::StrCat("index: ", status.message()));
    options.memory = memory;
  }
  if (!spec.memory_dtype.empty()) {
    auto dtype = ParseStorageType(spec.memory_dtype);
    if (!dtype.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("memory_dtype: ", dtype.status().message()));
    }
    options.memory.dtype = *dtype;
  }
  absl::Status valid = ValidateMemoryOptions(options.memory, config.head_dim());
  if (!valid.ok()) return absl::InvalidArgumentError(absl::StrCat("index: ", valid.message()));
  if (!spec.retrieval.empty()) {
    auto retrieval = ParseRetrieval(spec.retrieval);
    if (!retrieval.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("retrieval: ", retrieval.status().message()));
    }
    options.retrieval = *retrieval;
  }
  if (spec.last_context_length != 0) {
    if (absl::Status s =
            CheckLastContextLength(spec.last_context_length, config.max_position_embeddings);
        !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(s.message(), ", or 0 for the model's own"));
    }
  }
  if (spec.last_context_length > 0) options.last_context_length = spec.last_context_length;
  FOT_ASSIGN_OR_RETURN(options.attention, ResolveSessionAttention(spec, defaults, config));
  return options;
}

}  // namespace fot
