#include "src/checkpoint/random_checkpoint.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <new>
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

// Writes config.json and the tensors of `plan`, whose floats come from
// `values` one tensor at a time (so at most one shard is in memory).
absl::Status WriteFolder(const std::string& dir, const ModelConfig& config,
                         const std::vector<TensorSpec>& plan, DType dtype, int num_shards,
                         const std::function<std::vector<float>(const TensorSpec&)>& values) {
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
    std::vector<TensorToWrite> shard;
    try {
      for (size_t i = starts[s]; i < starts[s + 1]; ++i) {
        std::vector<float> floats = values(plan[i]);
        shard.push_back({plan[i].name, dtype, plan[i].shape,
                         EncodeFloats(floats.data(), floats.size(), dtype)});
        weight_map[plan[i].name] = file_name;
      }
    } catch (const std::bad_alloc&) {
      return absl::ResourceExhaustedError(
          absl::StrCat(dir, ": out of memory building ", file_name, " (", total, " bytes in all)"));
    }
    FOT_RETURN_IF_ERROR(WriteSafetensors((folder / file_name).string(), shard));
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

std::vector<float> RandomTensorValues(const std::string& name, int64_t count, bool is_norm,
                                      const RandomCheckpointOptions& options) {
  const uint64_t h = StableHash(name);
  std::seed_seq seq{options.seed, static_cast<uint32_t>(h), static_cast<uint32_t>(h >> 32)};
  std::mt19937 rng(seq);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> values(static_cast<size_t>(count));
  for (float& v : values) v = (is_norm ? 1.0f : 0.0f) + options.init_std * normal(rng);
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
                     [&options](const TensorSpec& spec) {
                       return RandomTensorValues(spec.name, Product(spec.shape),
                                                 absl::EndsWith(spec.name, "norm.weight"), options);
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
                     [&tensors](const TensorSpec& spec) { return tensors.at(spec.name); });
}

}  // namespace fot
