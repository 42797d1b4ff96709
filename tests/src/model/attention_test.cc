#include "src/model/attention.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <memory>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace fot {
namespace {

std::vector<float> RandomVector(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = normal(rng);
  return v;
}

// Memory rows of one kv head, read back from the store.
struct HeadMemory {
  std::vector<float> keys, values;
};

HeadMemory ReadHead(const KvMemory& memory, int g) {
  HeadMemory h;
  const int64_t m = memory.size(), hd = memory.head_dim();
  h.keys.resize(m * hd);
  h.values.resize(m * hd);
  EXPECT_TRUE(memory.store(g).ReadKeys(0, m, h.keys.data()).ok());
  EXPECT_TRUE(memory.store(g).ReadValues(0, m, h.values.data()).ok());
  return h;
}

// The definition, in float64: one softmax over the causal local keys and the
// memory entries of the kv head that the query sees: all of them (dense), or
// its top_k by inner product (knn); `visible` hides entries (deleted ones).
std::vector<float> NaiveAttention(const AttentionDims& d, const std::vector<float>& q, int n,
                                  int cached, const std::vector<float>& keys,
                                  const std::vector<float>& values, const KvMemory* memory,
                                  int top_k = 0, const std::vector<bool>& visible = {}) {
  const int hd = d.head_dim, group = d.num_heads / d.num_kv_heads;
  const int64_t m = memory ? memory->size() : 0;
  std::vector<float> out(static_cast<size_t>(n) * d.num_heads * hd);
  for (int p = 0; p < n; ++p) {
    for (int h = 0; h < d.num_heads; ++h) {
      const int g = h / group;
      const float* qv = &q[(p * d.num_heads + h) * hd];
      std::vector<double> scores;
      std::vector<const float*> vals;
      std::vector<HeadMemory> heads;
      if (memory != nullptr) heads.push_back(ReadHead(*memory, g));
      std::vector<std::pair<double, int64_t>> memory_scores;
      for (int64_t j = 0; j < m; ++j) {
        if (!visible.empty() && !visible[j]) continue;
        double s = 0;
        for (int i = 0; i < hd; ++i) s += qv[i] * heads[0].keys[j * hd + i];
        memory_scores.push_back({s, j});
      }
      if (top_k > 0 && static_cast<int64_t>(memory_scores.size()) > top_k) {
        std::partial_sort(memory_scores.begin(), memory_scores.begin() + top_k, memory_scores.end(),
                          std::greater<>());
        memory_scores.resize(top_k);
      }
      for (const auto& [s, j] : memory_scores) {
        scores.push_back(s / std::sqrt(hd));
        vals.push_back(&heads[0].values[j * hd]);
      }
      for (int j = 0; j <= cached + p; ++j) {
        double s = 0;
        for (int i = 0; i < hd; ++i) s += qv[i] * keys[(j * d.num_kv_heads + g) * hd + i];
        scores.push_back(s / std::sqrt(hd));
        vals.push_back(&values[(j * d.num_kv_heads + g) * hd]);
      }
      double mx = -1e300, sum = 0;
      for (double s : scores) mx = std::max(mx, s);
      for (double& s : scores) sum += (s = std::exp(s - mx));
      for (int i = 0; i < hd; ++i) {
        double acc = 0;
        for (size_t j = 0; j < scores.size(); ++j) acc += scores[j] / sum * vals[j][i];
        out[(p * d.num_heads + h) * hd + i] = static_cast<float>(acc);
      }
    }
  }
  return out;
}

// A flat float32 memory of `size` random entries; entry i is document i / 100.
std::unique_ptr<KvMemory> RandomMemory(const AttentionDims& d, int size) {
  MemoryOptions options;
  options.dtype = StorageType::kFloat32;
  auto memory = KvMemory::Create(d.num_kv_heads, d.head_dim, options);
  EXPECT_TRUE(memory.ok()) << memory.status();
  if (size > 0) {
    const size_t count = size_t(size) * d.num_kv_heads * d.head_dim;
    std::vector<Provenance> provenance(size);
    for (int i = 0; i < size; ++i) provenance[i] = {i / 100, i % 100, 7};
    EXPECT_TRUE((*memory)
                    ->Append(RandomVector(count, 4, 2.0f).data(), RandomVector(count, 5).data(),
                             provenance.data(), size)
                    .ok());
  }
  return *std::move(memory);
}

struct Case {
  const char* name;
  AttentionDims dims;
  int n;
  int cached;
  int memory_size;  // -1: no memory
};

class AttentionTest : public ::testing::TestWithParam<Case> {};

TEST_P(AttentionTest, OneSoftmaxOverMemoryAndCausalLocalKeysMatchesTheDefinition) {
  const Case& c = GetParam();
  const AttentionDims& d = c.dims;
  const int local = c.cached + c.n;
  const std::vector<float> q = RandomVector(size_t(c.n) * d.num_heads * d.head_dim, 1, 2.0f);
  const std::vector<float> keys =
      RandomVector(size_t(local) * d.num_kv_heads * d.head_dim, 2, 2.0f);
  const std::vector<float> values = RandomVector(keys.size(), 3);
  std::unique_ptr<KvMemory> memory = RandomMemory(d, std::max(c.memory_size, 0));
  const KvMemory* mem = c.memory_size >= 0 ? memory.get() : nullptr;

  std::vector<float> out(q.size());
  AttentionScratch scratch;
  ASSERT_TRUE(Attend(d, q.data(), c.n, c.cached, keys.data(), values.data(), mem, Retrieval{},
                     &scratch, out.data())
                  .ok());
  const std::vector<float> expected = NaiveAttention(d, q, c.n, c.cached, keys, values, mem);
  for (size_t i = 0; i < out.size(); ++i) ASSERT_NEAR(out[i], expected[i], 2e-5) << i;
}

INSTANTIATE_TEST_SUITE_P(Shapes, AttentionTest,
                         ::testing::Values(Case{"MhaNoMemory", {4, 4, 16}, 20, 0, -1},
                                           Case{"MhaEmptyMemory", {4, 4, 16}, 20, 0, 0},
                                           Case{"MhaMemorySpanningBlocks", {4, 4, 16}, 37, 0, 1300},
                                           Case{"GqaCachedQueries", {8, 2, 16}, 5, 30, 700},
                                           Case{"MqaTilesOfManyRows", {8, 1, 8}, 70, 0, 600},
                                           Case{"SingleTokenAfterCache", {4, 2, 16}, 1, 63, 513}),
                         [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace fot

namespace fot {
namespace {

struct Inputs {
  AttentionDims dims{8, 2, 16};
  int n = 24, cached = 8;
  std::vector<float> q, keys, values;
  Inputs() {
    q = RandomVector(size_t(n) * dims.num_heads * dims.head_dim, 11, 2.0f);
    keys = RandomVector(size_t(cached + n) * dims.num_kv_heads * dims.head_dim, 12, 2.0f);
    values = RandomVector(keys.size(), 13);
  }
  std::vector<float> Run(const KvMemory& memory, const Retrieval& retrieval) const {
    std::vector<float> out(q.size());
    AttentionScratch scratch;
    absl::Status status = Attend(dims, q.data(), n, cached, keys.data(), values.data(), &memory,
                                 retrieval, &scratch, out.data());
    EXPECT_TRUE(status.ok()) << status;
    return out;
  }
};

float MaxAbsDifference(const std::vector<float>& a, const std::vector<float>& b) {
  float worst = 0;
  for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::fabs(a[i] - b[i]));
  return worst;
}

TEST(KnnAttentionTest, KAtLeastTheMemorySizeEqualsDense) {
  const Inputs in;
  std::unique_ptr<KvMemory> memory = RandomMemory(in.dims, 300);
  Retrieval knn;
  knn.mode = Retrieval::Mode::kKnn;
  knn.top_k = 300;
  EXPECT_LE(MaxAbsDifference(in.Run(*memory, knn), in.Run(*memory, Retrieval{})), 1e-5);
  knn.top_k = 1000;  // more than there is: padded, same result
  EXPECT_LE(MaxAbsDifference(in.Run(*memory, knn), in.Run(*memory, Retrieval{})), 1e-5);
}

TEST(KnnAttentionTest, EachQueryAndHeadAttendsToItsTopKByInnerProduct) {
  const Inputs in;
  std::unique_ptr<KvMemory> memory = RandomMemory(in.dims, 700);
  Retrieval knn;
  knn.mode = Retrieval::Mode::kKnn;
  knn.top_k = 5;
  const std::vector<float> expected =
      NaiveAttention(in.dims, in.q, in.n, in.cached, in.keys, in.values, memory.get(), 5);
  EXPECT_LE(MaxAbsDifference(in.Run(*memory, knn), expected), 2e-5);
}

TEST(DenseAttentionTest, DeletedDocumentsAndTheDocumentFilterHideEntries) {
  const Inputs in;
  std::unique_ptr<KvMemory> memory = RandomMemory(in.dims, 500);  // documents 0..4
  ASSERT_TRUE(memory->DeleteDocument(1).ok());
  std::vector<bool> visible(500);
  for (int i = 0; i < 500; ++i) visible[i] = i / 100 != 1;
  EXPECT_LE(MaxAbsDifference(in.Run(*memory, Retrieval{}),
                             NaiveAttention(in.dims, in.q, in.n, in.cached, in.keys, in.values,
                                            memory.get(), 0, visible)),
            2e-5);

  Retrieval only_three;
  only_three.filter.documents = {3};
  for (int i = 0; i < 500; ++i) visible[i] = i / 100 == 3;
  EXPECT_LE(MaxAbsDifference(in.Run(*memory, only_three),
                             NaiveAttention(in.dims, in.q, in.n, in.cached, in.keys, in.values,
                                            memory.get(), 0, visible)),
            2e-5);
  only_three.mode = Retrieval::Mode::kKnn;
  only_three.top_k = 100;
  EXPECT_LE(MaxAbsDifference(in.Run(*memory, only_three),
                             NaiveAttention(in.dims, in.q, in.n, in.cached, in.keys, in.values,
                                            memory.get(), 0, visible)),
            2e-5);
}

TEST(RetrievalTest, ParsesDenseAndKnnAndRejectsTheRest) {
  EXPECT_EQ(ParseRetrieval("dense")->mode, Retrieval::Mode::kDense);
  auto knn = ParseRetrieval("knn:32");
  ASSERT_TRUE(knn.ok());
  EXPECT_EQ(knn->mode, Retrieval::Mode::kKnn);
  EXPECT_EQ(knn->top_k, 32);
  EXPECT_EQ(DescribeRetrieval(*knn), "knn:32");
  EXPECT_FALSE(knn->filter.exact);
  auto exact = ParseRetrieval("knn:8:exact");
  ASSERT_TRUE(exact.ok());
  EXPECT_EQ(exact->top_k, 8);
  EXPECT_TRUE(exact->filter.exact);
  EXPECT_EQ(DescribeRetrieval(*exact), "knn:8:exact");
  for (const char* bad : {"", "knn", "knn:", "knn:0", "knn:-3", "knn:x", "sparse", "dense:exact",
                          "knn:exact", "knn:8:exact:exact", "knn:8:approx"}) {
    EXPECT_EQ(ParseRetrieval(bad).status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
}

}  // namespace
}  // namespace fot
