// How a stream attends: the FoT window rules of DESIGN.md §1 (the default), or
// LM-Infinite's Λ-shaped attention with a distance cap (lambda_attention.h),
// which lets any LLaMA-family checkpoint run on unbounded input.
//
// An AttentionOptions value lives in each ModelState (Engine::NewState), so it
// is a per-stream — per-session — choice. Resolve it against the model config
// before use: that fills the model-dependent defaults and checks every field.
//
// Plain values: copy freely; safe to read from several threads at once.
#ifndef FOTSERVE_SRC_MODEL_ATTENTION_OPTIONS_H_
#define FOTSERVE_SRC_MODEL_ATTENTION_OPTIONS_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "src/checkpoint/model_config.h"

namespace fot {

enum class AttentionMode {
  kFot,     // windows of W, local cache flushed whole into memory (DESIGN.md §1)
  kLambda,  // Λ mask: n_global first tokens + the L most recent, distance capped at L
};

// Under lambda, how a memory layer's query scores memory keys (all keys are
// the raw projection, i.e. rotated by angle 0):
enum class MemoryPositioning {
  kAsFirst,        // query rotated by its local position min(t, L−1) (FoT's rule)
  kFixedDistance,  // query rotated by L·θ: every memory entry sits at distance L
  kNone,           // query not rotated: memory scores carry no position
};

struct AttentionOptions {
  AttentionMode mode = AttentionMode::kFot;

  // The rest applies to lambda only.
  // Sink tokens: the first n_global tokens of the stream, visible to every
  // later query at the capped distance. 0 allowed (a sliding window).
  int n_global = 4;
  // L, the local branch (the most recent tokens, true distances); also the
  // capped distance of the global branch. 0: max_position_embeddings.
  int local_window = 0;
  // Default: kAsFirst for longllama checkpoints, kFixedDistance for llama.
  std::optional<MemoryPositioning> memory_positioning;
  // Memory layers under lambda. Default: the config's mem_layers (none for a
  // plain llama checkpoint); an empty list turns memory off.
  std::optional<std::vector<int>> memory_layers;
};

// "fot" | "lambda"
absl::StatusOr<AttentionMode> ParseAttentionMode(const std::string& name);
// "as_first" | "fixed_distance" | "none"
absl::StatusOr<MemoryPositioning> ParseMemoryPositioning(const std::string& name);
// "1,3,5" (sorted on return) or "none" (no layer).
absl::StatusOr<std::vector<int>> ParseLayerList(const std::string& list);

const char* AttentionModeName(AttentionMode mode);
const char* MemoryPositioningName(MemoryPositioning positioning);
// One line for logs, e.g. "lambda n_global=4 L=512 memory=as_first layers=3,6".
std::string DescribeAttention(const AttentionOptions& options);

// Attention options as users write them (command-line flags, request fields,
// saved sessions): text, and fields left unset. ApplyAttentionSpec is the one
// parser of them.
struct AttentionSpec {
  std::string mode;                // "fot" | "lambda"; empty: the base's
  std::optional<int> n_global;     // lambda only; unset: the base's (4)
  int local_window = 0;            // lambda only; 0: the base's (max_position_embeddings)
  std::string memory_positioning;  // lambda only; "as_first" | "fixed_distance" | "none"
  std::string memory_layers;       // lambda only; "3,6" | "none" (no memory)
};

// `base` with the fields `spec` sets (a change of mode starts from the new
// mode's defaults), resolved for `config`. InvalidArgument naming the field:
// an unknown mode or positioning, a malformed layer list, lambda fields for a
// fot stream, or a value out of range.
absl::StatusOr<AttentionOptions> ApplyAttentionSpec(const AttentionSpec& spec,
                                                    const AttentionOptions& base,
                                                    const ModelConfig& config);

// The options with every default filled in for `config` (lambda: local_window,
// memory_positioning and memory_layers always set), or InvalidArgument naming
// the field: n_global < 0, local_window outside [1, max_position_embeddings],
// memory layers out of range or repeated, or lambda-only fields set for fot.
absl::StatusOr<AttentionOptions> ResolveAttentionOptions(const ModelConfig& config,
                                                         const AttentionOptions& options);

}  // namespace fot

#endif  // FOTSERVE_SRC_MODEL_ATTENTION_OPTIONS_H_
