#include "src/engine/memory_snapshot.h"

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/status_macros.h"

namespace fot {
namespace {

constexpr char kMagic[] = "fotserve-memory 1";

// What must match between the saved memory and the model loading it. A
// stream whose cache is saved with it (lambda) names its attention, so that
// only the same attention loads it; fot manifests are what they were before
// lambda attention existed.
std::string Manifest(const ModelConfig& config, const ModelState& state, int64_t tokens_seen) {
  std::string manifest =
      absl::StrCat(kMagic, "\nmem_layers ", absl::StrJoin(state.cache->memory_layers(), ","),
                   "\nnum_key_value_heads ", config.num_key_value_heads, "\nhead_dim ",
                   config.head_dim(), "\ntokens_seen ", tokens_seen, "\n");
  if (state.cache->persistent()) {
    absl::StrAppend(&manifest, "attention ", DescribeAttention(state.attention), "\n");
  }
  return manifest;
}

std::string LayerDir(const std::string& dir, int layer) {
  return absl::StrCat(dir, "/layer_", layer);
}

// A saved stream cache's layer, e.g. dir/lambda/layer_3.bin.
std::string CacheFile(const std::string& dir, const StreamCache& cache, int layer) {
  return absl::StrCat(dir, "/", cache.kind(), "/layer_", layer, ".bin");
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

absl::Status WriteMemory(const Transformer& model, const ModelState& state, const std::string& dir,
                         Env& env) {
  FOT_RETURN_IF_ERROR(env.CreateDirs(dir));
  const ModelConfig& config = model.config();
  for (int layer : state.cache->memory_layers()) {
    if (layer >= static_cast<int>(state.memory.size()) || state.memory[layer] == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("the state has no memory for memory layer ", layer, " of the model"));
    }
    FOT_RETURN_IF_ERROR(state.memory[layer]->Save(LayerDir(dir, layer), &env));
  }
  if (state.cache->persistent()) {
    const std::string cache_dir = absl::StrCat(dir, "/", state.cache->kind());
    FOT_RETURN_IF_ERROR(env.CreateDirs(cache_dir));
    for (int layer = 0; layer < config.num_hidden_layers; ++layer) {
      std::ostringstream out;
      FOT_RETURN_IF_ERROR(state.cache->Write(layer, out));
      FOT_RETURN_IF_ERROR(WriteFile(env, CacheFile(dir, *state.cache, layer), out.str()));
    }
    FOT_RETURN_IF_ERROR(env.SyncDir(cache_dir));
  }
  FOT_RETURN_IF_ERROR(
      WriteFile(env, dir + "/MANIFEST", Manifest(config, state, state.tokens_seen)));
  return env.SyncDir(dir);
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
  const std::string expected = Manifest(config, state, tokens_seen);
  if (saved != expected) {
    return absl::FailedPreconditionError(absl::StrCat(
        dir, " holds memory of a model with other memory layers or head shapes, or ",
        "of another attention: it says\n", saved, "where this stream needs\n", expected));
  }
  for (int layer : state.cache->memory_layers()) {
    FOT_ASSIGN_OR_RETURN(state.memory[layer],
                         KvMemory::Load(LayerDir(dir, layer), config.num_key_value_heads));
  }
  for (int layer = 0; state.cache->persistent() && layer < config.num_hidden_layers; ++layer) {
    const std::string path = CacheFile(dir, *state.cache, layer);
    std::ifstream in(path, std::ios::binary);
    if (!in) return absl::DataLossError(absl::StrCat(path, " is missing"));
    const absl::Status read = state.cache->Read(layer, in, tokens_seen);
    if (!read.ok()) return absl::DataLossError(absl::StrCat(path, ": ", read.message()));
  }
  state.tokens_seen = tokens_seen;
  return state;
}

}  // namespace fot
