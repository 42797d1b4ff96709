#include "src/engine/memory_snapshot.h"

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/status_macros.h"

namespace fot {
namespace {

constexpr char kMagic[] = "fotserve-memory 1";

// The layers with memory under `attention` (resolved).
const std::vector<int>& MemoryLayers(const ModelConfig& config, const AttentionOptions& attention) {
  return attention.mode == AttentionMode::kLambda ? *attention.memory_layers : config.mem_layers;
}

// What must match between the saved memory and the model loading it. fot
// manifests are what they were before lambda attention existed.
std::string Manifest(const ModelConfig& config, const AttentionOptions& attention,
                     int64_t tokens_seen) {
  std::string manifest =
      absl::StrCat(kMagic, "\nmem_layers ", absl::StrJoin(MemoryLayers(config, attention), ","),
                   "\nnum_key_value_heads ", config.num_key_value_heads, "\nhead_dim ",
                   config.head_dim(), "\ntokens_seen ", tokens_seen, "\n");
  if (attention.mode == AttentionMode::kLambda) {
    absl::StrAppend(&manifest, "attention ", DescribeAttention(attention), "\n");
  }
  return manifest;
}

std::string LayerDir(const std::string& dir, int layer) {
  return absl::StrCat(dir, "/layer_", layer);
}

std::string LambdaFile(const std::string& dir, int layer) {
  return absl::StrCat(dir, "/lambda/layer_", layer, ".bin");
}

}  // namespace

namespace {

// Writes everything SaveMemory saves into the empty directory `staging`.
absl::Status WriteMemory(const Transformer& model, const ModelState& state,
                         const std::string& staging, Env& env) {
  const ModelConfig& config = model.config();
  for (int layer : MemoryLayers(config, state.attention)) {
    if (layer >= static_cast<int>(state.memory.size()) || state.memory[layer] == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("the state has no memory for memory layer ", layer, " of the model"));
    }
    FOT_RETURN_IF_ERROR(state.memory[layer]->Save(LayerDir(staging, layer), &env));
  }
  if (state.attention.mode == AttentionMode::kLambda) {
    FOT_RETURN_IF_ERROR(env.CreateDirs(staging + "/lambda"));
    for (size_t layer = 0; layer < state.lambda_caches.size(); ++layer) {
      std::ostringstream out;
      FOT_RETURN_IF_ERROR(state.lambda_caches[layer].Write(out));
      FOT_RETURN_IF_ERROR(WriteFile(env, LambdaFile(staging, static_cast<int>(layer)), out.str()));
    }
  }
  return WriteFile(env, staging + "/MANIFEST",
                   Manifest(config, state.attention, state.tokens_seen));
}

}  // namespace

absl::Status SaveMemory(const Transformer& model, const ModelState& state, const std::string& dir,
                        Env* env) {
  if (env->Exists(dir) && !env->Exists(dir + "/MANIFEST")) {
    return absl::FailedPreconditionError(
        absl::StrCat(dir, " exists and is not a saved memory; refusing to replace it"));
  }
  FOT_ASSIGN_OR_RETURN(const std::string staging, MakeStagingDirectory(*env, dir));
  if (absl::Status written = WriteMemory(model, state, staging, *env); !written.ok()) {
    env->RemoveAll(staging).IgnoreError();  // the error to report is `written`
    return written;
  }
  return ReplaceDirectory(*env, staging, dir);
}

absl::StatusOr<ModelState> LoadMemory(const Transformer& model, const std::string& dir,
                                      const AttentionOptions& attention) {
  const ModelConfig& config = model.config();
  std::ifstream in(dir + "/MANIFEST");
  if (!in) return absl::NotFoundError(absl::StrCat(dir, ": no saved memory (no MANIFEST)"));
  std::stringstream text;
  text << in.rdbuf();
  const std::string saved = text.str();
  const size_t tokens_at = saved.find("tokens_seen ");
  if (saved.rfind(kMagic, 0) != 0 || tokens_at == std::string::npos) {
    return absl::DataLossError(absl::StrCat(dir, "/MANIFEST is not a fotserve memory manifest"));
  }
  const int64_t tokens_seen = std::atoll(saved.c_str() + tokens_at + 12);
  FOT_ASSIGN_OR_RETURN(ModelState state, model.NewState(MemoryOptions{}, attention));
  const std::string expected = Manifest(config, state.attention, tokens_seen);
  if (saved != expected) {
    return absl::FailedPreconditionError(absl::StrCat(
        dir, " holds memory of a model with other memory layers or head shapes, or ",
        "of another attention: it says\n", saved, "where this stream needs\n", expected));
  }
  for (int layer : MemoryLayers(config, state.attention)) {
    FOT_ASSIGN_OR_RETURN(state.memory[layer],
                         KvMemory::Load(LayerDir(dir, layer), config.num_key_value_heads));
  }
  for (size_t layer = 0; layer < state.lambda_caches.size(); ++layer) {
    const std::string path = LambdaFile(dir, static_cast<int>(layer));
    std::ifstream in(path, std::ios::binary);
    if (!in) return absl::DataLossError(absl::StrCat(path, " is missing"));
    const absl::Status read = state.lambda_caches[layer].Read(in);
    if (!read.ok()) return absl::DataLossError(absl::StrCat(path, ": ", read.message()));
    if (state.lambda_caches[layer].tokens() != tokens_seen) {
      return absl::DataLossError(absl::StrCat(path, " holds ", state.lambda_caches[layer].tokens(),
                                              " tokens, the manifest ", tokens_seen));
    }
  }
  state.tokens_seen = tokens_seen;
  return state;
}

}  // namespace fot
