#include "src/model/rope.h"

#include <cmath>

namespace fot {

Rope::Rope(int head_dim, float theta, int max_positions)
    : head_dim_(head_dim), max_positions_(max_positions) {
  const int half = head_dim / 2;
  cos_.resize(static_cast<size_t>(max_positions) * half);
  sin_.resize(cos_.size());
  for (int pos = 0; pos < max_positions; ++pos) {
    for (int i = 0; i < half; ++i) {
      // The reference computes inv_freq and the angle in float32; doing the
      // same keeps the angles identical, not merely close.
      const float inv_freq =
          1.0f / std::pow(theta, static_cast<float>(2 * i) / static_cast<float>(head_dim));
      const float angle = static_cast<float>(pos) * inv_freq;
      cos_[pos * half + i] = std::cos(angle);
      sin_[pos * half + i] = std::sin(angle);
    }
  }
}

void Rope::Apply(float* x, int n, int num_heads, int first_position) const {
  const int half = head_dim_ / 2;
  for (int r = 0; r < n; ++r) {
    const float* c = &cos_[(first_position + r) * half];
    const float* s = &sin_[(first_position + r) * half];
    for (int h = 0; h < num_heads; ++h) {
      float* v = x + (static_cast<size_t>(r) * num_heads + h) * head_dim_;
      for (int i = 0; i < half; ++i) {
        const float a = v[i];
        const float b = v[i + half];
        v[i] = a * c[i] - b * s[i];
        v[i + half] = b * c[i] + a * s[i];
      }
    }
  }
}

}  // namespace fot
