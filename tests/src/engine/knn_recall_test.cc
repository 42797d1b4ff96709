// Approximate indexes return what exact search returns (recall@10 >= 0.95) on
// keys the engine itself produced, not only on Gaussian test vectors: memory
// keys have a few large directions and uneven norms, which is what makes
// inner-product search hard.
#include <algorithm>
#include <random>
#include <set>

#include "gtest/gtest.h"
#include "src/checkpoint/random_checkpoint.h"
#include "src/engine/engine.h"

namespace fot {
namespace {

// Keys of memory layer 1, kv head 0, after running `tokens` random tokens.
std::vector<float> EngineKeys(const Engine& engine, int tokens, uint32_t seed) {
  MemoryOptions exact;
  exact.dtype = StorageType::kFloat32;
  ModelState state = *engine.NewState(exact);
  std::mt19937 rng(seed);
  std::vector<int> ids(tokens);
  for (int& id : ids) id = static_cast<int>(rng() % engine.config().vocab_size);
  EXPECT_TRUE(
      engine.Prefill(ids, 64, &state, LogitsMode::kNone, [](int64_t, int64_t, const float*) {})
          .ok());
  const KvStore& store = state.memory[1]->store(0);
  std::vector<float> keys(store.size() * store.head_dim());
  EXPECT_TRUE(store.ReadKeys(0, store.size(), keys.data()).ok());
  return keys;
}

class KnnRecallTest : public ::testing::TestWithParam<std::string> {};

TEST_P(KnnRecallTest, ApproximateIndexFindsWhatExactSearchFindsOnEngineKeys) {
  ModelConfig c;
  c.model_type = "longllama";
  c.vocab_size = 300;
  c.hidden_size = 128;
  c.intermediate_size = 256;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 2;
  c.num_key_value_heads = 1;
  c.max_position_embeddings = 128;
  c.last_context_length = 64;
  c.mem_layers = {1};
  const std::string dir = ::testing::TempDir() + "/recall_model";
  RandomCheckpointOptions random;
  random.init_std = 0.1f;
  ASSERT_TRUE(WriteRandomCheckpoint(dir, c, random).ok());
  std::unique_ptr<Engine> engine = *Engine::Load(dir);
  const int hd = c.head_dim();
  const std::vector<float> keys = EngineKeys(*engine, 12000, 1);
  const std::vector<float> queries = EngineKeys(*engine, 264, 2);  // another stream's keys
  const int64_t n = keys.size() / hd, nq = queries.size() / hd;

  MemoryOptions exact_options, approximate_options;
  exact_options.dtype = approximate_options.dtype = StorageType::kFloat32;
  ASSERT_TRUE(ParseIndexSpec(GetParam(), &approximate_options).ok());
  std::unique_ptr<KvStore> exact = *KvStore::Create(hd, exact_options);
  std::unique_ptr<KvStore> approximate = *KvStore::Create(hd, approximate_options);
  const std::vector<Provenance> provenance(n);
  for (KvStore* store : {exact.get(), approximate.get()}) {
    ASSERT_TRUE(store->Append(keys.data(), hd, keys.data(), hd, provenance.data(), n).ok());
  }
  ASSERT_TRUE(approximate->index_built());

  constexpr int k = 10;
  std::vector<int64_t> exact_ids(nq * k), approximate_ids(nq * k);
  std::vector<float> scores(nq * k);
  ASSERT_TRUE(
      exact->Search(queries.data(), nq, hd, k, nullptr, exact_ids.data(), scores.data()).ok());
  ASSERT_TRUE(
      approximate->Search(queries.data(), nq, hd, k, nullptr, approximate_ids.data(), scores.data())
          .ok());
  int64_t found = 0;
  for (int64_t i = 0; i < nq; ++i) {
    const std::set<int64_t> truth(exact_ids.begin() + i * k, exact_ids.begin() + (i + 1) * k);
    for (int j = 0; j < k; ++j) found += truth.count(approximate_ids[i * k + j]);
  }
  const double recall = static_cast<double>(found) / (nq * k);
  std::printf("%s recall@%d on %lld engine keys: %.3f\n", GetParam().c_str(), k,
              static_cast<long long>(n), recall);
  EXPECT_GE(recall, 0.95);
}

INSTANTIATE_TEST_SUITE_P(DefaultParameters, KnnRecallTest, ::testing::Values("hnsw", "ivf"),
                         [](const auto& info) {
                           std::string name = info.param;
                           std::replace_if(
                               name.begin(), name.end(), [](char ch) { return !std::isalnum(ch); },
                               '_');
                           return name;
                         });

}  // namespace
}  // namespace fot
