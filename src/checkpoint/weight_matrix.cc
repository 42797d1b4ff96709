#include "src/checkpoint/weight_matrix.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "base/half_float.h"

namespace fot {

const char* WeightTypeName(WeightType type) {
  switch (type) {
    case WeightType::kF32:
      return "f32";
    case WeightType::kF16:
      return "f16";
    case WeightType::kBF16:
      return "bf16";
    case WeightType::kInt8:
      return "int8";
  }
  return "?";
}

size_t WeightTypeSize(WeightType type) {
  switch (type) {
    case WeightType::kF32:
      return 4;
    case WeightType::kF16:
    case WeightType::kBF16:
      return 2;
    case WeightType::kInt8:
      return 1;
  }
  return 4;
}

size_t WeightMatrix::bytes() const {
  const size_t elements = static_cast<size_t>(rows) * static_cast<size_t>(cols);
  size_t total = elements * WeightTypeSize(type);
  if (type == WeightType::kInt8) total += static_cast<size_t>(rows * groups_per_row()) * 4;
  return total;
}

void DecodeRows(const WeightMatrix& w, int64_t first, int64_t count, float* out) {
  const size_t begin = static_cast<size_t>(first) * static_cast<size_t>(w.cols);
  const size_t n = static_cast<size_t>(count) * static_cast<size_t>(w.cols);
  switch (w.type) {
    case WeightType::kF32:
      std::memcpy(out, w.f32() + begin, n * sizeof(float));
      return;
    case WeightType::kF16:
      HalfToFloatRow(static_cast<const uint16_t*>(w.data) + begin, static_cast<int64_t>(n), out);
      return;
    case WeightType::kBF16: {
      const uint16_t* in = static_cast<const uint16_t*>(w.data) + begin;
      for (size_t i = 0; i < n; ++i) {
        const uint32_t bits = static_cast<uint32_t>(in[i]) << 16;
        std::memcpy(&out[i], &bits, sizeof(float));
      }
      return;
    }
    case WeightType::kInt8: {
      const int8_t* q = static_cast<const int8_t*>(w.data);
      const int64_t groups = w.groups_per_row();
      for (int64_t r = first; r < first + count; ++r) {
        const int8_t* qr = q + r * w.cols;
        const float* sr = w.scales + r * groups;
        float* o = out + (r - first) * w.cols;
        for (int64_t c = 0; c < w.cols; ++c) o[c] = static_cast<float>(qr[c]) * sr[c / w.group];
      }
      return;
    }
  }
}

void QuantizeInt8(const float* x, int64_t count, int group, int8_t* q, float* scales) {
  for (int64_t start = 0, g = 0; start < count; start += group, ++g) {
    const int64_t end = std::min<int64_t>(count, start + group);
    float max_abs = 0.0f;
    for (int64_t i = start; i < end; ++i) max_abs = std::max(max_abs, std::fabs(x[i]));
    if (max_abs == 0.0f) {
      scales[g] = 0.0f;
      std::fill(q + start, q + end, int8_t{0});
      continue;
    }
    scales[g] = max_abs / 127.0f;
    const float inverse = 127.0f / max_abs;
    for (int64_t i = start; i < end; ++i) {
      const float v = std::nearbyint(x[i] * inverse);
      // (NaN, from a damaged input, becomes 0: converting it is undefined.)
      q[i] = v == v ? static_cast<int8_t>(std::clamp(v, -127.0f, 127.0f)) : int8_t{0};
    }
  }
}

}  // namespace fot
