#include "src/checkpoint/random_checkpoint.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <random>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "nlohmann/json.hpp"
#include "src/checkpoint/model_weights.h"
#include "src/checkpoint/safetensors_writer.h"

namespace fot {
namespace {

namespace fs = std::filesystem;

constexpr char kSingleFile[] = "model.safetensors";
constexpr char kIndexFile[] = "model.safetensors.index.json";

std::string_view TorchDType(DType dtype) {
  switch (dtype) {
    case DType::kF32:
      return "float32";
    case DType::kF16:
      return "float16";
    case DType::kBF16:
      return "bfloat16";
  }
  return "float32";
}

int64_t Product(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t dim : shape) n *= dim;
  return n;
}

// FNV-1a: a hash that is the same on every platform, unlike std::hash.
uint64_t StableHash(std::string_view text) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : text) h = (h ^ c) * 1099511628211ull;
  return h;
}

absl::Status RemoveIfExists(const fs::path& path) {
  std::error_code ec;
  fs::remove(path, ec);
  if (ec)
    return absl::InternalError(absl::StrCat(path.string(), ": cannot remove: ", ec.message()));
  return absl::OkStatus();
}

// Receives a tensor's floats in order, in one piece or more.
using EmitFloats = std::function<absl::Status(const float* values, size_t count)>;
// Sends the floats of the tensor `spec` to `emit`.
using TensorValues = std::function<absl::Status(const TensorSpec& spec, const EmitFloats& emit)>;

// The deterministic random floats of one tensor, drawn in pieces: the same
// sequence however it is cut.
class RandomValues {
 public:
  RandomValues(const std::string& name, bool is_norm, const RandomCheckpointOptions& options)
      : mean_(is_norm ? 1.0f : 0.0f), std_(options.init_std) {
    const uint64_t h = StableHash(name);
    std::seed_seq seq{options.seed, static_cast<uint32_t>(h), static_cast<uint32_t>(h >> 32)};
    rng_.seed(seq);
  }
  void Next(float* out, size_t count) {
    for (size_t i = 0; i < count; ++i) out[i] = mean_ + std_ * normal_(rng_);
  }

 private:
  const float mean_, std_;
  std::mt19937 rng_;
  std::normal_distribution<float> normal_{0.0f, 1.0f};
};

// Writes config.json and the tensors of `plan`, whose floats `values` sends
// one piece at a time: memory holds a piece, never a tensor or a shard.
absl::Status WriteFolder(const std::string& dir, const ModelConfig& config,
                         const std::vector<TensorSpec>& plan, DType dtype, int num_shards,
                         const TensorValues& values) {
  FOT_RETURN_IF_ERROR(config.Validate());
  if (plan.empty()) return absl::InvalidArgumentError(absl::StrCat(dir, ": no tensors to write"));
  if (num_shards < 1 || static_cast<size_t>(num_shards) > plan.size()) {
    return absl::InvalidArgumentError(absl::StrCat(dir, ": num_shards (", num_shards,
                                                   ") must be between 1 and the number of "
                                                   "tensors (",
                                                   plan.size(), ")"));
  }
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return absl::PermissionDeniedError(absl::StrCat(dir, ": cannot create: ", ec.message()));
  const fs::path folder(dir);
  FOT_RETURN_IF_ERROR(WriteFileAtomically(*Env::Default(), (folder / "config.json").string(),
                                          config.ToJson(TorchDType(dtype))));

  // Shard boundaries: cut where the running byte count passes s/N of the
  // total, keeping at least one tensor in every shard.
  std::vector<uint64_t> bytes;
  uint64_t total = 0;
  for (const TensorSpec& spec : plan) {
    bytes.push_back(static_cast<uint64_t>(Product(spec.shape)) * DTypeSize(dtype));
    total += bytes.back();
  }
  const size_t n = plan.size();
  std::vector<size_t> starts = {0};
  uint64_t running = 0;
  size_t next = 0;
  for (int s = 1; s < num_shards; ++s) {
    const long double target = static_cast<long double>(total) * s / num_shards;
    while (next < n && running < target) running += bytes[next++];
    size_t cut = std::max(next, starts.back() + 1);
    cut = std::min(cut, n - static_cast<size_t>(num_shards - s));
    starts.push_back(cut);
    while (next < cut) running += bytes[next++];
  }
  starts.push_back(n);

  nlohmann::json weight_map = nlohmann::json::object();
  for (int s = 0; s < num_shards; ++s) {
    char shard_name[64];
    std::snprintf(shard_name, sizeof(shard_name), "model-%05d-of-%05d.safetensors", s + 1,
                  num_shards);
    const std::string file_name = num_shards == 1 ? std::string(kSingleFile) : shard_name;
    std::vector<TensorHeader> headers;
    for (size_t i = starts[s]; i < starts[s + 1]; ++i) {
      headers.push_back({plan[i].name, dtype, plan[i].shape});
      weight_map[plan[i].name] = file_name;
    }
    FOT_ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFileWriter> writer,
                         SafetensorsFileWriter::Create((folder / file_name).string(), headers));
    const EmitFloats emit = [&](const float* floats, size_t count) {
      const std::vector<uint8_t> bytes = EncodeFloats(floats, count, dtype);
      return writer->Append(
          std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
    };
    for (size_t i = starts[s]; i < starts[s + 1]; ++i) FOT_RETURN_IF_ERROR(values(plan[i], emit));
    FOT_RETURN_IF_ERROR(writer->Finish());
  }
  if (num_shards == 1) return RemoveIfExists(folder / kIndexFile);

  nlohmann::json index = {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}};
  FOT_RETURN_IF_ERROR(WriteFileAtomically(
      *Env::Default(), (folder / kIndexFile).string(),
      index.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n"));
  // transformers (and SafetensorsCheckpoint::Open) prefer a single file.
  return RemoveIfExists(folder / kSingleFile);
}

}  // namespace

absl::StatusOr<ModelConfig> PublishedShape(std::string_view name) {
  ModelConfig config;
  config.model_type = "longllama";
  config.num_attention_heads = 32;
  config.num_key_value_heads = 32;
  config.max_position_embeddings = 2048;
  config.last_context_length = 1024;
  config.mem_dtype = "bfloat16";
  if (name == "longllama-3b") {
    config.hidden_size = 3200;
    config.num_hidden_layers = 26;
    config.intermediate_size = 8640;
    config.vocab_size = 32000;
    config.mem_layers = {6, 12, 18};
  } else if (name == "longllama-7b") {
    config.hidden_size = 4096;
    config.num_hidden_layers = 32;
    config.intermediate_size = 11008;
    config.vocab_size = 32016;
    config.mem_layers = {8, 16, 24};
    config.rope_theta = 1e6f;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("shape '", std::string(name), "' is not one of longllama-3b, longllama-7b"));
  }
  config.source = std::string(name);
  return config;
}

std::vector<float> RandomTensorValues(const std::string& name, int64_t count, bool is_norm,
                                      const RandomCheckpointOptions& options) {
  std::vector<float> values(static_cast<size_t>(count));
  RandomValues(name, is_norm, options).Next(values.data(), values.size());
  return values;
}

absl::Status WriteRandomCheckpoint(const std::string& dir, const ModelConfig& config,
                                   const RandomCheckpointOptions& options) {
  if (!(options.init_std >= 0.0f)) {
    return absl::InvalidArgumentError(
        absl::StrCat(dir, ": init_std (", options.init_std, ") must be >= 0"));
  }
  FOT_RETURN_IF_ERROR(config.Validate());
  return WriteFolder(dir, config, ExpectedTensors(config), options.dtype, options.num_shards,
                     [&options](const TensorSpec& spec, const EmitFloats& emit) -> absl::Status {
                       constexpr size_t kPiece = size_t{1} << 20;
                       RandomValues random(spec.name, absl::EndsWith(spec.name, "norm.weight"),
                                           options);
                       std::vector<float> piece;
                       for (size_t done = 0, total = static_cast<size_t>(Product(spec.shape));
                            done < total; done += piece.size()) {
                         piece.resize(std::min(kPiece, total - done));
                         random.Next(piece.data(), piece.size());
                         FOT_RETURN_IF_ERROR(emit(piece.data(), piece.size()));
                       }
                       return absl::OkStatus();
                     });
}

absl::Status WriteCheckpoint(const std::string& dir, const ModelConfig& config,
                             const std::map<std::string, std::vector<float>>& tensors, DType dtype,
                             int num_shards) {
  FOT_RETURN_IF_ERROR(config.Validate());
  std::map<std::string, std::vector<int64_t>> known;
  for (TensorSpec& spec : ExpectedTensors(config)) known[spec.name] = std::move(spec.shape);
  std::vector<TensorSpec> plan;
  for (const auto& [name, floats] : tensors) {
    auto it = known.find(name);
    const int64_t count = static_cast<int64_t>(floats.size());
    if (it != known.end() && Product(it->second) == count) {
      plan.push_back({name, it->second});
    } else {
      plan.push_back({name, {count}});
    }
  }
  return WriteFolder(dir, config, plan, dtype, num_shards,
                     [&tensors](const TensorSpec& spec, const EmitFloats& emit) {
                       const std::vector<float>& floats = tensors.at(spec.name);
                       return emit(floats.data(), floats.size());
                     });
}

}  // namespace fot
