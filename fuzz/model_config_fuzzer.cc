// Fuzzes config.json parsing (src/checkpoint/model_config.h).
//
// Input: the text of a config.json.
//
// Checks: a config that parses is valid, writes back (ToJson) as a config
// that parses to the same config, and can be asked for its tensors and its
// token-id and window checks without failing or overflowing.
#include <cstdint>
#include <string>

#include "fuzz/fuzz_support.h"
#include "src/checkpoint/model_config.h"
#include "src/checkpoint/model_weights.h"

namespace fot::fuzz {
namespace {

void CheckRoundTrip(const ModelConfig& config) {
  FOT_FUZZ_CHECK(config.Validate().ok(), "FromJson returned a config that Validate refuses");
  const std::string json = config.ToJson();
  absl::StatusOr<ModelConfig> again = ModelConfig::FromJson(json, "round trip");
  FOT_FUZZ_CHECK(again.ok(), "ToJson wrote a config FromJson refuses: " + json);
  FOT_FUZZ_CHECK(again->ToJson() == json, "ToJson/FromJson changed the config: " + json);
}

void CheckQueries(const ModelConfig& config) {
  const int ids[] = {0, config.vocab_size - 1, config.vocab_size, -1};
  FOT_FUZZ_CHECK(CheckTokenIds(config, {ids, 2}).ok(), "ids inside the vocabulary refused");
  FOT_FUZZ_CHECK(!CheckTokenIds(config, {ids + 2, 1}).ok(), "id vocab_size accepted");
  FOT_FUZZ_CHECK(!CheckTokenIds(config, {ids + 3, 1}).ok(), "id -1 accepted");
  FOT_FUZZ_CHECK(
      CheckLastContextLength(config.last_context_length, config.max_position_embeddings).ok(),
      "a valid config's last_context_length is refused");
  for (int l = -1; l <= config.num_hidden_layers; ++l) config.IsMemoryLayer(l);
  for (const TensorSpec& spec : ExpectedTensors(config)) {
    FOT_FUZZ_CHECK(!spec.name.empty() && !spec.shape.empty(), "a tensor spec without name/shape");
    for (int64_t dim : spec.shape) FOT_FUZZ_CHECK(dim > 0, "non-positive dim in " + spec.name);
  }
}

}  // namespace
}  // namespace fot::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  absl::StatusOr<fot::ModelConfig> config =
      fot::ModelConfig::FromJson(fot::fuzz::AsText(data, size), "fuzz config.json");
  if (!config.ok()) return 0;
  fot::fuzz::CheckRoundTrip(*config);
  fot::fuzz::CheckQueries(*config);
  return 0;
}
