// Session options as clients write them, and their resolution against the
// server's defaults and the model. Knows nothing of gRPC.
#ifndef FOTSERVE_SRC_SERVER_SESSION_OPTIONS_H_
#define FOTSERVE_SRC_SERVER_SESSION_OPTIONS_H_

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "src/checkpoint/model_config.h"
#include "src/engine/session.h"

namespace fot {

// Session options as clients write them; empty / 0 fields take defaults.
struct SessionOptionsSpec {
  std::string retrieval;        // "dense" | "knn:K"
  std::string index;            // ParseIndexSpec syntax: "flat", "hnsw:m=32", "ivf:nlist=256"
  std::string memory_dtype;     // "f32" | "f16" | "bf16"
  int last_context_length = 0;  // fot only
  // (Initialised here so that the brace-initialised specs of the four fields
  // above need not list these.)
  std::string attention = "";  // "fot" | "lambda"; empty: the defaults' (fot)
  // The rest: lambda only (attention_options.h); setting one for a fot
  // session is InvalidArgument.
  std::optional<int> n_global = std::nullopt;  // sink tokens; unset: 4 (0 is valid)
  int local_window = 0;                        // L; 0: max_position_embeddings
  std::string memory_positioning = "";  // "as_first" | "fixed_distance" | "none"; empty: default
  std::string memory_layers = "";       // "3,6" | "none"; empty: the config's mem_layers
};

// `defaults` with the fields `spec` sets replaced, validated for `config`.
// InvalidArgument naming the bad field.
absl::StatusOr<SessionOptions> ResolveSessionOptions(const SessionOptionsSpec& spec,
                                                     const SessionOptions& defaults,
                                                     const ModelConfig& config);

}  // namespace fot

#endif  // FOTSERVE_SRC_SERVER_SESSION_OPTIONS_H_
