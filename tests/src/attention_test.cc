#include "src/attention.h"

#include <cmath>
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

// The definition, in float64: one softmax over every memory entry of the kv
// head and the causal local keys.
std::vector<float> NaiveAttention(const AttentionDims& d, const std::vector<float>& q, int n,
                                  int cached, const std::vector<float>& keys,
                                  const std::vector<float>& values, const KvMemory* memory) {
  const int hd = d.head_dim, group = d.num_heads / d.num_kv_heads;
  const int64_t m = memory ? memory->size() : 0;
  std::vector<float> out(static_cast<size_t>(n) * d.num_heads * hd);
  for (int p = 0; p < n; ++p) {
    for (int h = 0; h < d.num_heads; ++h) {
      const int g = h / group;
      const float* qv = &q[(p * d.num_heads + h) * hd];
      std::vector<double> scores;
      std::vector<const float*> vals;
      for (int64_t j = 0; j < m; ++j) {
        double s = 0;
        for (int i = 0; i < hd; ++i) s += qv[i] * memory->keys(g)[j * hd + i];
        scores.push_back(s / std::sqrt(hd));
        vals.push_back(memory->values(g) + j * hd);
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
  const std::vector<float> keys = RandomVector(size_t(local) * d.num_kv_heads * d.head_dim, 2, 2.0f);
  const std::vector<float> values = RandomVector(keys.size(), 3);
  KvMemory memory(d.num_kv_heads, d.head_dim);
  if (c.memory_size > 0) {
    const size_t count = size_t(c.memory_size) * d.num_kv_heads * d.head_dim;
    memory.Append(RandomVector(count, 4, 2.0f).data(), RandomVector(count, 5).data(),
                  c.memory_size);
  }
  const KvMemory* mem = c.memory_size >= 0 ? &memory : nullptr;

  std::vector<float> out(q.size());
  AttentionScratch scratch;
  Attend(d, q.data(), c.n, c.cached, keys.data(), values.data(), mem, &scratch, out.data());
  const std::vector<float> expected =
      NaiveAttention(d, q, c.n, c.cached, keys, values, mem);
  for (size_t i = 0; i < out.size(); ++i) ASSERT_NEAR(out[i], expected[i], 2e-5) << i;
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, AttentionTest,
    ::testing::Values(Case{"MhaNoMemory", {4, 4, 16}, 20, 0, -1},
                      Case{"MhaEmptyMemory", {4, 4, 16}, 20, 0, 0},
                      Case{"MhaMemorySpanningBlocks", {4, 4, 16}, 37, 0, 1300},
                      Case{"GqaCachedQueries", {8, 2, 16}, 5, 30, 700},
                      Case{"MqaTilesOfManyRows", {8, 1, 8}, 70, 0, 600},
                      Case{"SingleTokenAfterCache", {4, 2, 16}, 1, 63, 513}),
    [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace fot
