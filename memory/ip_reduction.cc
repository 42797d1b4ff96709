#include "memory/ip_reduction.h"

#include <faiss/utils/fp16.h>

#include <algorithm>
#include <cmath>

namespace fot::kv_internal {
namespace {

// Largest value e <= sqrt(r) that the key codes store exactly.
float RoundDownForCodes(const Shape& s, double r) {
  const double e = std::sqrt(std::max(r, 0.0));
  if (s.fp16_keys) {
    uint16_t h = faiss::encode_fp16(static_cast<float>(e));
    while (h > 0 && double(faiss::decode_fp16(h)) * faiss::decode_fp16(h) > r) --h;
    return faiss::decode_fp16(h);
  }
  float f = static_cast<float>(e);
  while (f > 0 && double(f) * f > r) f = std::nextafter(f, 0.0f);
  return f;
}

}  // namespace

float Stored(const Shape& s, float x) {
  return s.fp16_keys ? faiss::decode_fp16(faiss::encode_fp16(x)) : x;
}

double MaxNormSq(const Shape& s, const float* x, int64_t n) {
  double best = 0;
  for (int64_t i = 0; i < n; ++i) {
    double norm = 0;
    for (int j = 0; j < s.d; ++j)
      norm += double(Stored(s, x[i * s.d + j])) * Stored(s, x[i * s.d + j]);
    best = std::max(best, norm);
  }
  return best;
}

std::vector<float> Augment(const Shape& s, const float* x, int64_t n, double bound_sq,
                           std::vector<uint8_t>* overflow) {
  std::vector<float> out(n * s.aug, 0.0f);
  overflow->assign(n, 0);
  for (int64_t i = 0; i < n; ++i) {
    double norm = 0;
    for (int j = 0; j < s.d; ++j) {
      out[i * s.aug + j] = x[i * s.d + j];
      norm += double(Stored(s, x[i * s.d + j])) * Stored(s, x[i * s.d + j]);
    }
    if (norm > bound_sq) {
      (*overflow)[i] = 1;  // e1 = e2 = 0: misranked, so searched exactly instead
      continue;
    }
    const double r = bound_sq - norm;
    const float e1 = RoundDownForCodes(s, r);
    out[i * s.aug + s.d] = e1;
    out[i * s.aug + s.d + 1] = static_cast<float>(std::sqrt(std::max(0.0, r - double(e1) * e1)));
  }
  return out;
}

}  // namespace fot::kv_internal
