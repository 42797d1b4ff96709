#include "src/engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "gtest/gtest.h"

namespace fot {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

std::vector<double> Softmax(const std::vector<float>& logits, double temperature) {
  double max = logits[0];
  for (float v : logits) max = std::max<double>(max, v);
  std::vector<double> p(logits.size());
  double sum = 0;
  for (size_t i = 0; i < logits.size(); ++i)
    sum += p[i] = std::exp((logits[i] - max) / temperature);
  for (double& v : p) v /= sum;
  return p;
}

std::vector<double> Frequencies(Sampler& sampler, const std::vector<float>& logits, int draws) {
  std::vector<double> freq(logits.size());
  for (int i = 0; i < draws; ++i) {
    const int id = sampler.Sample(logits.data(), static_cast<int>(logits.size()));
    EXPECT_GE(id, 0);
    EXPECT_LT(id, static_cast<int>(logits.size()));
    if (id >= 0 && id < static_cast<int>(logits.size())) freq[id] += 1.0 / draws;
  }
  return freq;
}

TEST(SamplerTest, GreedyIsArgmax) {
  Sampler sampler(SamplingOptions{});
  const std::vector<float> logits = {0.1f, -3.0f, 7.5f, 7.25f, 2.0f};
  for (int i = 0; i < 5; ++i) EXPECT_EQ(sampler.Sample(logits.data(), 5), 2);
  const std::vector<float> negative = {-5.0f, -1.0f, -2.0f};
  EXPECT_EQ(sampler.Sample(negative.data(), 3), 1);
}

TEST(SamplerTest, GreedyTiesGoToTheLowestId) {
  Sampler sampler(SamplingOptions{});
  const std::vector<float> logits = {1.0f, 4.0f, 2.0f, 4.0f, 4.0f};
  EXPECT_EQ(sampler.Sample(logits.data(), 5), 1);
  const std::vector<float> flat(100, 0.0f);
  EXPECT_EQ(sampler.Sample(flat.data(), 100), 0);
}

TEST(SamplerTest, SameSeedSameTokensDifferentSeedOtherTokens) {
  std::vector<float> logits(50);
  for (int i = 0; i < 50; ++i) logits[i] = std::sin(0.7f * i);
  const SamplingOptions options{.temperature = 1.0f, .top_p = 0.95f, .seed = 1234};
  Sampler a(options), b(options);
  SamplingOptions other = options;
  other.seed = 1235;
  Sampler c(other);
  std::vector<int> seq_a, seq_b, seq_c;
  for (int i = 0; i < 200; ++i) {
    seq_a.push_back(a.Sample(logits.data(), 50));
    seq_b.push_back(b.Sample(logits.data(), 50));
    seq_c.push_back(c.Sample(logits.data(), 50));
  }
  EXPECT_EQ(seq_a, seq_b);
  EXPECT_NE(seq_a, seq_c);
}

TEST(SamplerTest, DrawsArePinnedForASeed) {
  // mt19937_64 is fully specified and the uniform variate is built from its raw
  // output, so these tokens are the same on every platform and library.
  const std::vector<float> logits = {0.0f, 1.0f, 2.0f, 3.0f};
  Sampler sampler(SamplingOptions{.temperature = 1.0f, .top_p = 1.0f, .seed = 7});
  std::vector<int> got;
  for (int i = 0; i < 12; ++i) got.push_back(sampler.Sample(logits.data(), 4));
  EXPECT_EQ(got, (std::vector<int>{3, 3, 1, 3, 2, 1, 3, 3, 2, 3, 3, 3}));
}

TEST(SamplerTest, TinyTopPAlwaysGivesTheArgmax) {
  std::vector<float> logits(1000);
  for (int i = 0; i < 1000; ++i) logits[i] = std::cos(0.37f * i);
  const int argmax = Sampler(SamplingOptions{}).Sample(logits.data(), 1000);
  Sampler sampler(SamplingOptions{.temperature = 5.0f, .top_p = 1e-6f, .seed = 99});
  for (int i = 0; i < 500; ++i) ASSERT_EQ(sampler.Sample(logits.data(), 1000), argmax);

  // Ties: the nucleus of one token is the lowest id among the most probable.
  const std::vector<float> tied = {0.0f, 3.0f, 1.0f, 3.0f};
  Sampler tie_sampler(SamplingOptions{.temperature = 1.0f, .top_p = 1e-6f, .seed = 5});
  for (int i = 0; i < 100; ++i) ASSERT_EQ(tie_sampler.Sample(tied.data(), 4), 1);
}

TEST(SamplerTest, FrequenciesMatchSoftmax) {
  const std::vector<float> logits = {1.0f, 2.0f, 0.5f, -1.0f, 3.0f, 2.5f};
  for (float temperature : {1.0f, 0.5f, 2.0f}) {
    SCOPED_TRACE(temperature);
    Sampler sampler(SamplingOptions{.temperature = temperature, .top_p = 1.0f, .seed = 42});
    const std::vector<double> freq = Frequencies(sampler, logits, 200000);
    const std::vector<double> expected = Softmax(logits, temperature);
    // Standard error is at most sqrt(0.25 / 200000) ~ 0.0011.
    for (size_t i = 0; i < logits.size(); ++i) EXPECT_NEAR(freq[i], expected[i], 0.005) << i;
  }
}

TEST(SamplerTest, NucleusKeepsTheSmallestSetReachingTopP) {
  // Probabilities 0.5, 0.25, 0.125, 0.0625, 0.0625 (ids 3, 0, 4, 1, 2).
  const std::vector<float> logits = {std::log(0.25f), std::log(0.0625f), std::log(0.0625f),
                                     std::log(0.5f), std::log(0.125f)};
  Sampler sampler(SamplingOptions{.temperature = 1.0f, .top_p = 0.7f, .seed = 3});
  const std::vector<double> freq = Frequencies(sampler, logits, 100000);
  // 0.5 + 0.25 = 0.75 >= 0.7: ids 3 and 0, renormalised to 2/3 and 1/3.
  EXPECT_NEAR(freq[3], 2.0 / 3.0, 0.01);
  EXPECT_NEAR(freq[0], 1.0 / 3.0, 0.01);
  EXPECT_EQ(freq[1] + freq[2] + freq[4], 0.0);

  // Exactly reaching top_p is enough: 0.5 >= 0.5 keeps id 3 alone.
  Sampler half(SamplingOptions{.temperature = 1.0f, .top_p = 0.5f, .seed = 3});
  for (int i = 0; i < 200; ++i) ASSERT_EQ(half.Sample(logits.data(), 5), 3);
}

TEST(SamplerTest, LargeNucleusMatchesBruteForce) {
  // Enough tokens that the cutoff is found by selection, not a small sort.
  const int vocab = 400;
  std::vector<float> logits(vocab);
  for (int i = 0; i < vocab; ++i) logits[i] = 2.0f * std::sin(0.31f * i) + 0.001f * (i % 7);
  const float top_p = 0.6f;
  const std::vector<double> p = Softmax(logits, 1.0);
  std::vector<int> order(vocab);
  for (int i = 0; i < vocab; ++i) order[i] = i;
  std::sort(order.begin(), order.end(),
            [&](int a, int b) { return p[a] != p[b] ? p[a] > p[b] : a < b; });
  std::vector<bool> in_nucleus(vocab, false);
  double mass = 0;
  for (int id : order) {
    in_nucleus[id] = true;
    mass += p[id];
    if (mass >= top_p) break;
  }
  ASSERT_GT(std::count(in_nucleus.begin(), in_nucleus.end(), true), 64);

  Sampler sampler(SamplingOptions{.temperature = 1.0f, .top_p = top_p, .seed = 17});
  const std::vector<double> freq = Frequencies(sampler, logits, 40000);
  for (int i = 0; i < vocab; ++i) {
    if (in_nucleus[i]) {
      EXPECT_NEAR(freq[i], p[i] / mass, 0.004) << i;
    } else {
      EXPECT_EQ(freq[i], 0.0) << i;
    }
  }
}

TEST(SamplerTest, LargeVocabularyNucleus) {
  // A vocabulary-sized row whose nucleus is far larger than the first sorted block.
  std::vector<float> logits(32000);
  for (int i = 0; i < 32000; ++i) logits[i] = 0.001f * static_cast<float>(i % 997);
  Sampler sampler(SamplingOptions{.temperature = 1.0f, .top_p = 0.9f, .seed = 11});
  for (int i = 0; i < 50; ++i) {
    const int id = sampler.Sample(logits.data(), 32000);
    ASSERT_GE(id, 0);
    ASSERT_LT(id, 32000);
  }
}

TEST(SamplerTest, ValidatesOptions) {
  EXPECT_TRUE(ValidateSamplingOptions(SamplingOptions{}).ok());
  EXPECT_TRUE(ValidateSamplingOptions({.temperature = 0.7f, .top_p = 0.9f, .seed = 1}).ok());
  EXPECT_TRUE(ValidateSamplingOptions({.temperature = 100.0f, .top_p = 1.0f}).ok());
  const std::vector<SamplingOptions> invalid = {
      {.temperature = -0.1f}, {.temperature = kNaN}, {.temperature = kInf}, {.top_p = 0.0f},
      {.top_p = -0.5f},       {.top_p = 1.01f},      {.top_p = kNaN},
  };
  for (const SamplingOptions& options : invalid) {
    const absl::Status status = ValidateSamplingOptions(options);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument)
        << options.temperature << " " << options.top_p;
    const bool names_field = status.message().find("temperature") != std::string::npos ||
                             status.message().find("top_p") != std::string::npos;
    EXPECT_TRUE(names_field) << status;
  }
}

TEST(SamplerTest, OddInputsDoNotCrash) {
  Sampler sampler(SamplingOptions{.temperature = 1.0f, .top_p = 0.9f, .seed = 1});
  EXPECT_EQ(sampler.Sample(nullptr, 10), -1);
  const float one = 1.0f;
  EXPECT_EQ(sampler.Sample(&one, 0), -1);
  EXPECT_EQ(sampler.Sample(&one, 1), 0);

  const std::vector<float> with_nan = {kNaN, 1.0f, kNaN, 0.5f};
  for (int i = 0; i < 100; ++i) {
    const int id = sampler.Sample(with_nan.data(), 4);
    ASSERT_TRUE(id == 1 || id == 3) << id;
  }
  EXPECT_EQ(Sampler(SamplingOptions{}).Sample(with_nan.data(), 4), 1);
  const std::vector<float> all_nan = {kNaN, kNaN};
  EXPECT_EQ(sampler.Sample(all_nan.data(), 2), 0);
  const std::vector<float> with_inf = {0.0f, kInf, 3.0f, kInf};
  EXPECT_EQ(sampler.Sample(with_inf.data(), 4), 1);
  const std::vector<float> all_neg_inf = {-kInf, -kInf, -kInf};
  EXPECT_EQ(sampler.Sample(all_neg_inf.data(), 3), 0);
  const std::vector<float> one_finite = {-kInf, 2.0f, -kInf};
  EXPECT_EQ(sampler.Sample(one_finite.data(), 3), 1);

  // Options that fail validation still give an in-range token.
  const std::vector<float> logits = {0.0f, 1.0f, 2.0f};
  EXPECT_EQ(Sampler(SamplingOptions{.temperature = -1.0f}).Sample(logits.data(), 3), 2);
  EXPECT_EQ(Sampler(SamplingOptions{.temperature = kNaN}).Sample(logits.data(), 3), 2);
  EXPECT_EQ(Sampler(SamplingOptions{.temperature = 1.0f, .top_p = 0.0f}).Sample(logits.data(), 3),
            2);
  const int id =
      Sampler(SamplingOptions{.temperature = 1.0f, .top_p = 7.0f}).Sample(logits.data(), 3);
  EXPECT_TRUE(id >= 0 && id < 3);
  // A temperature so small that every other token underflows acts as greedy.
  Sampler cold(SamplingOptions{.temperature = 1e-30f, .top_p = 1.0f, .seed = 9});
  for (int i = 0; i < 20; ++i) ASSERT_EQ(cold.Sample(logits.data(), 3), 2);
}

}  // namespace
}  // namespace fot
