#include "src/model/rope.h"

#include <cmath>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace fot {
namespace {

std::vector<float> RandomVector(int n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal;
  std::vector<float> v(n);
  for (float& x : v) x = normal(rng);
  return v;
}

double Dot(const std::vector<float>& a, const std::vector<float>& b) {
  double sum = 0;
  for (size_t i = 0; i < a.size(); ++i) sum += static_cast<double>(a[i]) * b[i];
  return sum;
}

TEST(RopeTest, PositionZeroIsTheIdentity) {
  Rope rope(8, 10000.0f, 16);
  std::vector<float> x = RandomVector(8, 1);
  const std::vector<float> before = x;
  rope.Apply(x.data(), 1, 1, 0);
  EXPECT_EQ(x, before);
}

TEST(RopeTest, PairsDimensionIWithIPlusHalfAndRotatesByPositionTimesInvFreq) {
  const int hd = 4;
  Rope rope(hd, 100.0f, 8);
  std::vector<float> x = {1, 2, 3, 4};
  rope.Apply(x.data(), 1, 1, 3);
  // inv_freq = 100^(-0/4), 100^(-2/4) = 1, 0.1
  const double a0 = 3 * 1.0, a1 = 3 * 0.1;
  EXPECT_NEAR(x[0], 1 * std::cos(a0) - 3 * std::sin(a0), 1e-5);
  EXPECT_NEAR(x[2], 3 * std::cos(a0) + 1 * std::sin(a0), 1e-5);
  EXPECT_NEAR(x[1], 2 * std::cos(a1) - 4 * std::sin(a1), 1e-5);
  EXPECT_NEAR(x[3], 4 * std::cos(a1) + 2 * std::sin(a1), 1e-5);
}

TEST(RopeTest, ScoresDependOnlyOnTheDistanceBetweenQueryAndKey) {
  Rope rope(16, 10000.0f, 64);
  const std::vector<float> q0 = RandomVector(16, 2), k0 = RandomVector(16, 3);
  auto score = [&](int qpos, int kpos) {
    std::vector<float> q = q0, k = k0;
    rope.Apply(q.data(), 1, 1, qpos);
    rope.Apply(k.data(), 1, 1, kpos);
    return Dot(q, k);
  };
  EXPECT_NEAR(score(10, 3), score(27, 20), 1e-4);
  EXPECT_NEAR(score(5, 5), Dot(q0, k0), 1e-4);
}

TEST(RopeTest, RotatesEveryRowAndHeadByItsOwnPosition) {
  Rope rope(8, 10000.0f, 16);
  std::vector<float> batch = RandomVector(3 * 2 * 8, 4);  // [3 rows, 2 heads, 8]
  std::vector<float> one_by_one = batch;
  rope.Apply(batch.data(), 3, 2, 5);
  for (int r = 0; r < 3; ++r) {
    for (int h = 0; h < 2; ++h) rope.Apply(&one_by_one[(r * 2 + h) * 8], 1, 1, 5 + r);
  }
  EXPECT_EQ(batch, one_by_one);
}

}  // namespace
}  // namespace fot
