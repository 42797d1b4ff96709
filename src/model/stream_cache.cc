#include "src/model/stream_cache.h"

#include "src/model/fot_stream_cache.h"
#include "src/model/lambda_stream_cache.h"

namespace fot {

// The one place the attention mode chooses how a stream keeps its past.
std::unique_ptr<StreamCache> NewStreamCache(const ModelConfig& config,
                                            const AttentionOptions& attention) {
  switch (attention.mode) {
    case AttentionMode::kFot:
      return std::make_unique<FotStreamCache>(config);
    case AttentionMode::kLambda:
      return std::make_unique<LambdaStreamCache>(config, attention);
  }
  return nullptr;
}

bool RotatesPositions(const ModelConfig& config, int layer) {
  return config.mem_positionals || !config.IsMemoryLayer(layer);
}

}  // namespace fot
