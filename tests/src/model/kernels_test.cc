#include "src/model/kernels.h"

#include <cmath>
#include <limits>
#include <vector>

#include "gtest/gtest.h"

namespace fot {
namespace {

TEST(ExpInPlaceTest, MatchesStdExpToFloatPrecisionOverTheSoftmaxRange) {
  std::vector<float> x;
  for (float v = -87.0f; v <= 10.0f; v += 0.01f) x.push_back(v);
  std::vector<float> y = x;
  ExpInPlace(y.data(), static_cast<int64_t>(y.size()));
  for (size_t i = 0; i < x.size(); ++i) {
    const double expected = std::exp(static_cast<double>(x[i]));
    EXPECT_NEAR(y[i] / expected, 1.0, 5e-7) << "x = " << x[i];
  }
}

TEST(ExpInPlaceTest, MasksAndDeepNegativesBecomeZero) {
  std::vector<float> x = {-std::numeric_limits<float>::infinity(), -1e30f, -100.0f, 0.0f};
  ExpInPlace(x.data(), 4);
  EXPECT_EQ(x[0], 0.0f);
  EXPECT_EQ(x[1], 0.0f);
  EXPECT_EQ(x[2], 0.0f);
  EXPECT_FLOAT_EQ(x[3], 1.0f);
}

// A NaN score (from a NaN key or value in a damaged memory; found by
// fuzz/session_store) once reached an undefined float-to-int conversion
// (ubsan_tests runs this under UndefinedBehaviorSanitizer).
TEST(ExpInPlaceTest, NanStaysNanAndInfinitiesClampLikeTheRange) {
  constexpr float kNan = std::numeric_limits<float>::quiet_NaN();
  constexpr float kInf = std::numeric_limits<float>::infinity();
  std::vector<float> x(35, kNan);  // vector lanes and a scalar tail
  x[3] = kInf;
  x[4] = -kInf;
  x[5] = 1.0f;
  ExpInPlace(x.data(), static_cast<int64_t>(x.size()));
  for (size_t i = 0; i < x.size(); ++i) {
    if (i < 3 || i > 5) {
      EXPECT_TRUE(std::isnan(x[i])) << i;
    }
  }
  EXPECT_NEAR(x[3] / std::exp(88.0), 1.0, 1e-6);  // clamped at 88
  EXPECT_EQ(x[4], 0.0f);
  EXPECT_FLOAT_EQ(x[5], std::exp(1.0f));
  float scores[] = {kNan, 0.0f, -1.0f, kNan};
  EXPECT_TRUE(std::isnan(ExpShiftedSum(scores, 4, 0.0f)));
}

TEST(RmsNormTest, ScalesEachRowToUnitRootMeanSquareTimesWeight) {
  const std::vector<float> x = {1, 2, 3, 4, -2, 0, 2, 0};
  const std::vector<float> w = {1, 0.5f, 2, 1};
  std::vector<float> y(8);
  RmsNorm(x.data(), w.data(), 2, 4, 1e-6f, y.data());
  const double rms0 = std::sqrt((1 + 4 + 9 + 16) / 4.0 + 1e-6);
  const double rms1 = std::sqrt((4 + 0 + 4 + 0) / 4.0 + 1e-6);
  for (int i = 0; i < 4; ++i) {
    EXPECT_NEAR(y[i], x[i] / rms0 * w[i], 1e-6);
    EXPECT_NEAR(y[4 + i], x[4 + i] / rms1 * w[i], 1e-6);
  }
}

TEST(SwiGluTest, IsSiluOfGateTimesUp) {
  std::vector<float> gate = {-3, -0.5f, 0, 2};
  const std::vector<float> up = {2, 3, 4, -1};
  const std::vector<float> g0 = gate;
  SwiGlu(gate.data(), up.data(), 4);
  for (int i = 0; i < 4; ++i) {
    EXPECT_NEAR(gate[i], g0[i] / (1 + std::exp(-g0[i])) * up[i], 1e-6);
  }
}

TEST(LinearTest, MultipliesByTheTransposedWeightForOneAndManyRows) {
  // w is [out=2, in=3]; y = x · wᵀ
  const std::vector<float> w = {1, 2, 3, -1, 0, 1};
  const std::vector<float> x = {1, 1, 1, 2, 0, -1};
  std::vector<float> y(4);
  Linear(x.data(), 2, 3, w.data(), 2, y.data());
  EXPECT_EQ(y, (std::vector<float>{6, 0, -1, -3}));
  std::vector<float> single(2);
  Linear(x.data(), 1, 3, w.data(), 2, single.data());
  EXPECT_EQ(single, (std::vector<float>{6, 0}));
  LinearAccumulate(x.data(), 1, 3, w.data(), 2, single.data());
  EXPECT_EQ(single, (std::vector<float>{12, 0}));
}

TEST(ArgMaxTest, TiesGoToTheLowestIndex) {
  const std::vector<float> x = {0, 3, 1, 3};
  EXPECT_EQ(ArgMax(x.data(), 4), 1);
}

}  // namespace
}  // namespace fot
