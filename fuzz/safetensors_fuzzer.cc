// Fuzzes the safetensors reader (src/checkpoint/safetensors_reader.h) and the
// weight loader on top of it (model_weights.h) with model folders.
//
// Input: one part is model.safetensors; several parts are a sharded folder:
// model.safetensors.index.json, then the shards model-00001-of-00002 and
// model-00002-of-00002.safetensors (fuzz_support.h: parts).
//
// Checks: a checkpoint that opens hands out only tensors whose bytes are all
// readable and match dtype and shape, and Find agrees with TensorNames;
// weights that load for TinyConfig() (tiny_config.h) can all be read, in
// place and converted to int8.
#include <cstdint>
#include <string>

#include "fuzz/fuzz_support.h"
#include "fuzz/tiny_config.h"
#include "src/checkpoint/model_weights.h"
#include "src/checkpoint/safetensors_reader.h"

namespace fot::fuzz {
namespace {

constexpr const char* kShards[] = {"model-00001-of-00002.safetensors",
                                   "model-00002-of-00002.safetensors"};

std::string WriteFolder(std::string_view input) {
  const std::string dir = FreshDir("model");
  const std::vector<std::string_view> parts = SplitParts(input);
  if (parts.size() == 1) {
    WriteFileOrDie(dir + "/model.safetensors", parts[0]);
    return dir;
  }
  WriteFileOrDie(dir + "/model.safetensors.index.json", parts[0]);
  for (size_t i = 1; i < parts.size() && i <= 2; ++i) {
    WriteFileOrDie(dir + "/" + kShards[i - 1], parts[i]);
  }
  return dir;
}

// Reads every byte of every tensor (a tensor outside its mapping faults).
void CheckCheckpoint(const SafetensorsCheckpoint& checkpoint) {
  const std::vector<std::string> names = checkpoint.TensorNames();
  FOT_FUZZ_CHECK(names.size() == checkpoint.num_tensors(), "TensorNames and num_tensors differ");
  volatile uint64_t sum = 0;  // volatile: the reads must happen
  for (const std::string& name : names) {
    absl::StatusOr<const TensorInfo*> info = checkpoint.Find(name);
    FOT_FUZZ_CHECK(info.ok() && checkpoint.Contains(name), "a listed tensor is not found");
    const TensorInfo& t = **info;
    FOT_FUZZ_CHECK(t.name == name, "Find returned another tensor");
    FOT_FUZZ_CHECK(t.num_bytes == static_cast<size_t>(t.num_elements()) * DTypeSize(t.dtype),
                   "num_bytes does not match shape and dtype of " + name);
    FOT_FUZZ_CHECK(t.num_bytes == 0 || t.data != nullptr, "tensor without data: " + name);
    for (size_t i = 0; i < t.num_bytes; ++i) sum = sum + t.data[i];
  }
}

// Reads `bytes` bytes at `p` (bytes outside a mapping fault).
void ReadAll(const void* p, size_t bytes) {
  const auto* b = static_cast<const unsigned char*>(p);
  volatile unsigned sum = 0;  // volatile: the reads must happen
  for (size_t i = 0; i < bytes; ++i) sum = sum + b[i];
}

void CheckNorm(const float* norm, int64_t n, const char* what) {
  FOT_FUZZ_CHECK(norm != nullptr, std::string("weights without ") + what);
  ReadAll(norm, n * sizeof(float));
}

void CheckMatrix(const WeightMatrix& m, int64_t rows, int64_t cols, const char* what) {
  FOT_FUZZ_CHECK(m.data != nullptr && m.rows == rows && m.cols == cols,
                 std::string(what) + " missing or of another shape");
  ReadAll(m.data, rows * cols * WeightTypeSize(m.type));
  if (m.type == WeightType::kInt8) ReadAll(m.scales, rows * m.groups_per_row() * sizeof(float));
}

// Every matrix the forward pass would read, read once.
void CheckWeights(const ModelWeights& weights) {
  const ModelConfig& c = weights.config();
  const int64_t hidden = c.hidden_size, kv = c.num_key_value_heads * c.head_dim();
  CheckMatrix(weights.embed_tokens(), c.vocab_size, hidden, "embed_tokens");
  CheckMatrix(weights.lm_head(), c.vocab_size, hidden, "lm_head");
  CheckNorm(weights.final_norm(), hidden, "final_norm");
  for (int l = 0; l < weights.num_layers(); ++l) {
    const LayerWeights& w = weights.layer(l);
    CheckMatrix(w.q_proj, hidden, hidden, "q_proj");
    CheckMatrix(w.k_proj, kv, hidden, "k_proj");
    CheckMatrix(w.v_proj, kv, hidden, "v_proj");
    CheckMatrix(w.o_proj, hidden, hidden, "o_proj");
    CheckMatrix(w.gate_proj, c.intermediate_size, hidden, "gate_proj");
    CheckMatrix(w.up_proj, c.intermediate_size, hidden, "up_proj");
    CheckMatrix(w.down_proj, hidden, c.intermediate_size, "down_proj");
    CheckNorm(w.input_layernorm, hidden, "input_layernorm");
    CheckNorm(w.post_attention_layernorm, hidden, "post_attention_layernorm");
  }
}

}  // namespace
}  // namespace fot::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace fot;
  const std::string dir = fuzz::WriteFolder(fuzz::AsText(data, size));
  absl::StatusOr<std::unique_ptr<SafetensorsCheckpoint>> checkpoint =
      SafetensorsCheckpoint::Open(dir);
  if (!checkpoint.ok()) return 0;
  fuzz::CheckCheckpoint(**checkpoint);
  // As in the file (in place), and converted at load (int8 reads every value).
  absl::StatusOr<ModelWeights> weights = ModelWeights::Load(dir, fuzz::TinyConfig());
  if (!weights.ok()) return 0;
  fuzz::CheckWeights(*weights);
  WeightsOptions int8;
  int8.dtype = WeightsDType::kInt8;
  absl::StatusOr<ModelWeights> converted = ModelWeights::Load(dir, fuzz::TinyConfig(), int8);
  FOT_FUZZ_CHECK(converted.ok(),
                 "weights that load do not convert to int8: " + converted.status().ToString());
  fuzz::CheckWeights(*converted);
  return 0;
}
