// The products over f16, bf16 and int8 weights: against a float64 product of
// the same (decoded) weights, for the row kernels (few rows) and the
// converted-panel GEMM (many rows), and the AVX-512 kernels against the
// portable ones, bit for bit.
#include "src/model/linear.h"

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "base/half_float.h"
#include "gtest/gtest.h"
#include "src/model/weight_kernels.h"

namespace fot {
namespace {

// A [rows, cols] matrix of one weight type with its storage.
struct TestMatrix {
  std::vector<uint16_t> halves;
  std::vector<int8_t> q;
  std::vector<float> scales;
  WeightMatrix view;
};

TestMatrix RandomMatrix(WeightType type, int64_t rows, int64_t cols, int group, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 0.05f);
  std::vector<float> values(static_cast<size_t>(rows * cols));
  for (float& v : values) v = normal(rng);
  TestMatrix m;
  m.view = {type, nullptr, rows, cols};
  switch (type) {
    case WeightType::kF16:
    case WeightType::kBF16:
      for (float v : values) {
        m.halves.push_back(type == WeightType::kF16 ? FloatToHalf(v) : FloatToBFloat16(v));
      }
      m.view.data = m.halves.data();
      break;
    case WeightType::kInt8:
      m.view.group = group;
      m.q.resize(values.size());
      m.scales.resize(static_cast<size_t>(rows * m.view.groups_per_row()));
      for (int64_t r = 0; r < rows; ++r) {
        QuantizeInt8(values.data() + r * cols, cols, group, m.q.data() + r * cols,
                     m.scales.data() + r * m.view.groups_per_row());
      }
      m.view.data = m.q.data();
      m.view.scales = m.scales.data();
      break;
    case WeightType::kF32:
      break;
  }
  return m;
}

std::vector<float> RandomActivations(int64_t n, int64_t cols, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(n * cols));
  for (float& v : x) v = normal(rng) * (1.0f + 3.0f * static_cast<float>(rng() % 2));
  return x;
}

// What the kernels multiply: x itself, or (int8) x quantized and scaled back.
std::vector<float> EffectiveActivations(const std::vector<float>& x, int64_t n,
                                        const WeightMatrix& w) {
  if (w.type != WeightType::kInt8) return x;
  std::vector<float> out(x.size());
  std::vector<int8_t> q(static_cast<size_t>(w.cols));
  std::vector<float> scales(static_cast<size_t>(w.groups_per_row()));
  for (int64_t t = 0; t < n; ++t) {
    QuantizeInt8(x.data() + t * w.cols, w.cols, w.group, q.data(), scales.data());
    for (int64_t c = 0; c < w.cols; ++c) out[t * w.cols + c] = q[c] * scales[c / w.group];
  }
  return out;
}

struct Case {
  WeightType type;
  int64_t rows, cols;
  int group;
};

std::string CaseName(const ::testing::TestParamInfo<Case>& info) {
  return std::string(WeightTypeName(info.param.type)) + "_" + std::to_string(info.param.rows) +
         "x" + std::to_string(info.param.cols) +
         (info.param.group > 0 ? "_g" + std::to_string(info.param.group) : "");
}

class LinearWeightTypesTest : public ::testing::TestWithParam<Case> {};

// Float64 of the same products; the float32 sums may differ from it by a few
// roundings of the sum of magnitudes.
TEST_P(LinearWeightTypesTest, MatchesAFloat64ProductOfTheDecodedWeights) {
  const Case c = GetParam();
  const TestMatrix m = RandomMatrix(c.type, c.rows, c.cols, c.group, 1);
  std::vector<float> w(static_cast<size_t>(c.rows * c.cols));
  DecodeRows(m.view, 0, c.rows, w.data());
  for (int64_t n : {1, 3, 8, 9, 40}) {
    SCOPED_TRACE("n = " + std::to_string(n));
    const std::vector<float> x = RandomActivations(n, c.cols, 2);
    const std::vector<float> xe = EffectiveActivations(x, n, m.view);
    std::vector<float> y(static_cast<size_t>(n * c.rows), 0.5f);
    Linear(x.data(), n, m.view, y.data());
    std::vector<float> acc(y.size(), 0.5f);
    LinearAccumulate(x.data(), n, m.view, acc.data());
    for (int64_t t = 0; t < n; ++t) {
      for (int64_t r = 0; r < c.rows; ++r) {
        double exact = 0, magnitude = 0;
        for (int64_t k = 0; k < c.cols; ++k) {
          exact += static_cast<double>(w[r * c.cols + k]) * xe[t * c.cols + k];
          magnitude += std::fabs(static_cast<double>(w[r * c.cols + k]) * xe[t * c.cols + k]);
        }
        const size_t i = static_cast<size_t>(t * c.rows + r);
        ASSERT_NEAR(y[i], exact, 1e-6 * magnitude + 1e-30) << "t " << t << ", r " << r;
        ASSERT_NEAR(acc[i], exact + 0.5, 1e-6 * magnitude + 1e-6) << "t " << t << ", r " << r;
      }
    }
  }
}

// The AVX-512 kernels and the portable ones perform the same float
// operations in the same order.
TEST_P(LinearWeightTypesTest, Avx512KernelsGiveThePortableBits) {
  const Case c = GetParam();
  if (BestKernelIsa(c.type) != KernelIsa::kAvx512) {
    GTEST_SKIP() << "this CPU lacks the AVX-512 instructions of " << WeightTypeName(c.type);
  }
  const TestMatrix m = RandomMatrix(c.type, c.rows, c.cols, c.group, 3);
  const int64_t n = 3;
  const std::vector<float> x = RandomActivations(n, c.cols, 4);
  PreparedActivations prepared;
  PrepareActivations(x.data(), n, m.view, &prepared);
  std::vector<float> portable(static_cast<size_t>(n * c.rows)), avx512(portable.size());
  RowDots(m.view, 0, c.rows, prepared, false, portable.data(), c.rows, KernelIsa::kPortable);
  RowDots(m.view, 0, c.rows, prepared, false, avx512.data(), c.rows, KernelIsa::kAvx512);
  ASSERT_EQ(std::memcmp(portable.data(), avx512.data(), portable.size() * sizeof(float)), 0);
  // A slice of rows, added into y.
  std::vector<float> a(static_cast<size_t>(n * c.rows), 1.0f), b = a;
  RowDots(m.view, 5, c.rows - 5, prepared, true, a.data(), c.rows, KernelIsa::kPortable);
  RowDots(m.view, 5, c.rows - 5, prepared, true, b.data(), c.rows, KernelIsa::kAvx512);
  EXPECT_EQ(a, b);
}

// Widths with and without a partial last chunk (32 values) and group.
INSTANTIATE_TEST_SUITE_P(
    Shapes, LinearWeightTypesTest,
    ::testing::Values(Case{WeightType::kBF16, 37, 64, 0}, Case{WeightType::kBF16, 21, 100, 0},
                      Case{WeightType::kF16, 37, 64, 0}, Case{WeightType::kF16, 21, 100, 0},
                      Case{WeightType::kInt8, 37, 64, 32}, Case{WeightType::kInt8, 21, 100, 32},
                      Case{WeightType::kInt8, 37, 128, 64}, Case{WeightType::kInt8, 21, 172, 64}),
    CaseName);

// bf16 weights times float32 activations: the three-part split keeps every
// bit of x, so a weight row of powers of two gives the float32 sum exactly.
TEST(LinearBf16Test, ActivationsKeepAllTheirBits) {
  std::vector<uint16_t> w(32, FloatToBFloat16(0.0f));
  w[0] = FloatToBFloat16(1.0f);
  w[1] = FloatToBFloat16(0.5f);
  const WeightMatrix view{WeightType::kBF16, w.data(), 1, 32};
  std::vector<float> x(32, 0.0f);
  x[0] = 1.0f + std::ldexp(1.0f, -23);  // not a bfloat16: needs all 24 bits
  x[1] = 3.0f * std::ldexp(1.0f, -20);
  float y = 0;
  Linear(x.data(), 1, view, &y);
  EXPECT_EQ(y, x[0] + 0.5f * x[1]);
}

}  // namespace
}  // namespace fot
