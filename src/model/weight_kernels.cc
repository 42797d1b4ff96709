#include "src/model/weight_kernels.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "base/half_float.h"

namespace fot {
namespace {

// Every kernel reads rows in chunks of 32 values (bf16, int8) or 16 (f16).
constexpr int64_t kChunk = 32;

int64_t PaddedLength(int64_t cols) { return (cols + kChunk - 1) / kChunk * kChunk; }

float Bf16ToFloat(uint16_t bits) {
  const uint32_t wide = static_cast<uint32_t>(bits) << 16;
  float f;
  std::memcpy(&f, &wide, sizeof(f));
  return f;
}

// The reduction trees both variants use, lane i with lane i + half.
float SumLanes16(const float* v) {
  float a8[8], a4[4];
  for (int i = 0; i < 8; ++i) a8[i] = v[i] + v[i + 8];
  for (int i = 0; i < 4; ++i) a4[i] = a8[i] + a8[i + 4];
  const float a0 = a4[0] + a4[2], a1 = a4[1] + a4[3];
  return a0 + a1;
}

float SumLanes8(const float* v) {
  float a4[4];
  for (int i = 0; i < 4; ++i) a4[i] = v[i] + v[i + 4];
  const float a0 = a4[0] + a4[2], a1 = a4[1] + a4[3];
  return a0 + a1;
}

void Store(float value, bool accumulate, float* y) { *y = accumulate ? *y + value : value; }

// --- portable ---------------------------------------------------------------

// Full chunks of a weight row are read in place, the last partial one from a
// zero-padded copy; the loops over lanes are plain enough to vectorise.

// 16 float lanes (GCC and Clang vector extensions: whatever vectors the
// target has, scalar code on none).
typedef float Lanes16 __attribute__((vector_size(64)));
typedef uint32_t Bits16 __attribute__((vector_size(64)));

// 32 bfloat16 values as floats: the even-indexed ones and the odd ones.
inline void SplitBf16Pairs(const uint16_t* p, Lanes16* even, Lanes16* odd) {
  Bits16 e, o;
  for (int j = 0; j < 16; ++j) {
    uint32_t pair;  // p[2j] in the low half, p[2j+1] in the high half
    std::memcpy(&pair, p + 2 * j, sizeof(pair));
    e[j] = pair << 16;
    o[j] = pair & 0xffff0000u;
  }
  std::memcpy(even, &e, sizeof(e));
  std::memcpy(odd, &o, sizeof(o));
}

// vdpbf16ps's order, lane j of a 32-value chunk: acc += w[2j+1]·x[2j+1],
// then acc += w[2j]·x[2j]; each product of two bfloat16 is exact in float.
float Bf16DotPortable(const uint16_t* w, int64_t cols, const uint16_t* const parts[3],
                      int64_t stride) {
  Lanes16 acc[3] = {};
  uint16_t tail[kChunk] = {};
  for (int64_t c = 0; c < stride; c += kChunk) {
    const uint16_t* chunk = w + c;
    if (c + kChunk > cols) {
      std::copy(w + c, w + cols, tail);
      chunk = tail;
    }
    Lanes16 w_even, w_odd;
    SplitBf16Pairs(chunk, &w_even, &w_odd);
    for (int p = 0; p < 3; ++p) {
      Lanes16 x_even, x_odd;
      SplitBf16Pairs(parts[p] + c, &x_even, &x_odd);
      acc[p] = (acc[p] + w_odd * x_odd) + w_even * x_even;
    }
  }
  const Lanes16 sum = (acc[2] + acc[1]) + acc[0];
  float v[16];
  std::memcpy(v, &sum, sizeof(v));
  return SumLanes16(v);
}

float F16DotPortable(const uint16_t* w, int64_t cols, const float* x, int64_t stride) {
  float acc[16] = {};
  for (int64_t c = 0; c < stride; c += 16) {
    float wf[16] = {};
    HalfToFloatRow(w + c, std::min<int64_t>(16, cols - c), wf);
    for (int j = 0; j < 16; ++j) acc[j] = std::fma(wf[j], x[c + j], acc[j]);
  }
  return SumLanes16(acc);
}

// Lane j of a 32-byte chunk holds the exact integer sum over its 4 bytes;
// per group: acc[j] = fma(lane sum, w scale · x scale, acc[j]).
float Int8DotPortable(const int8_t* w, const float* w_scales, int64_t cols, int group,
                      const int8_t* xq, const float* x_scales) {
  float acc[8] = {};
  int8_t tail[kChunk] = {};
  for (int64_t start = 0, g = 0; start < cols; start += group, ++g) {
    const int64_t end = std::min<int64_t>(cols, start + group);
    int32_t lanes[8] = {};
    for (int64_t c = start; c < end; c += kChunk) {
      const int8_t* chunk = w + c;
      if (c + kChunk > cols) {
        std::copy(w + c, w + cols, tail);
        chunk = tail;
      }
      for (int j = 0; j < 8; ++j) {
        int32_t sum = 0;
        for (int b = 0; b < 4; ++b) sum += chunk[4 * j + b] * xq[c + 4 * j + b];
        lanes[j] += sum;
      }
    }
    const float scale = w_scales[g] * x_scales[g];
    for (int j = 0; j < 8; ++j) acc[j] = std::fma(static_cast<float>(lanes[j]), scale, acc[j]);
  }
  return SumLanes8(acc);
}

// --- AVX-512 ----------------------------------------------------------------

#define FOT_AVX512_BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16,fma")))
#define FOT_AVX512_VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,fma")))
#define FOT_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,fma")))

FOT_AVX512 inline float SumLanes16Avx512(__m512 v) {
  alignas(64) float lanes[16];
  _mm512_store_ps(lanes, v);
  return SumLanes16(lanes);
}

// R weight rows against one activation row, vdpbf16ps on the three parts.
template <int R>
FOT_AVX512_BF16 void Bf16DotsAvx512(const uint16_t* w, int64_t cols, const uint16_t* const parts[3],
                                    int64_t stride, float* out) {
  __m512 acc[R][3];
  for (int r = 0; r < R; ++r) {
    for (int p = 0; p < 3; ++p) acc[r][p] = _mm512_setzero_ps();
  }
  for (int64_t c = 0; c < stride; c += kChunk) {
    const __mmask32 mask = c + kChunk <= cols ? ~__mmask32{0} : (__mmask32{1} << (cols - c)) - 1;
    const __m512bh hi = (__m512bh)_mm512_loadu_si512(parts[0] + c);
    const __m512bh mid = (__m512bh)_mm512_loadu_si512(parts[1] + c);
    const __m512bh lo = (__m512bh)_mm512_loadu_si512(parts[2] + c);
    for (int r = 0; r < R; ++r) {
      const __m512bh wv = (__m512bh)_mm512_maskz_loadu_epi16(mask, w + r * cols + c);
      acc[r][0] = _mm512_dpbf16_ps(acc[r][0], wv, hi);
      acc[r][1] = _mm512_dpbf16_ps(acc[r][1], wv, mid);
      acc[r][2] = _mm512_dpbf16_ps(acc[r][2], wv, lo);
    }
  }
  for (int r = 0; r < R; ++r) {
    out[r] = SumLanes16Avx512(_mm512_add_ps(_mm512_add_ps(acc[r][2], acc[r][1]), acc[r][0]));
  }
}

template <int R>
FOT_AVX512 void F16DotsAvx512(const uint16_t* w, int64_t cols, const float* x, int64_t stride,
                              float* out) {
  __m512 acc[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
  for (int64_t c = 0; c < stride; c += 16) {
    const __mmask16 mask = c + 16 <= cols ? __mmask16(0xffff) : __mmask16((1u << (cols - c)) - 1);
    const __m512 xv = _mm512_loadu_ps(x + c);
    for (int r = 0; r < R; ++r) {
      const __m512 wv =
          _mm512_maskz_cvtph_ps(0xffff, _mm256_maskz_loadu_epi16(mask, w + r * cols + c));
      acc[r] = _mm512_fmadd_ps(wv, xv, acc[r]);
    }
  }
  for (int r = 0; r < R; ++r) out[r] = SumLanes16Avx512(acc[r]);
}

// vpdpbusd multiplies unsigned by signed bytes: the weights go in as q + 128
// (q xor 0x80), and each lane starts at -128 · Σ x over its bytes, so the
// lane ends at Σ q·x exactly.
template <int R>
FOT_AVX512_VNNI void Int8DotsAvx512(const int8_t* w, const float* w_scales, int64_t cols, int group,
                                    const int8_t* xq, const float* x_scales,
                                    const int32_t* lane_sums, float* out) {
  const int64_t groups = (cols + group - 1) / group;
  const __m256i flip = _mm256_set1_epi8(static_cast<char>(0x80));
  __m256 acc[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm256_setzero_ps();
  for (int64_t g = 0; g < groups; ++g) {
    const int64_t start = g * group, end = std::min<int64_t>(cols, start + group);
    const __m256i bias = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(lane_sums + g * 8));
    __m256i sums[R];
    for (int r = 0; r < R; ++r) sums[r] = bias;
    for (int64_t c = start; c < end; c += kChunk) {
      const __mmask32 mask = c + kChunk <= cols ? ~__mmask32{0} : (__mmask32{1} << (cols - c)) - 1;
      const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq + c));
      for (int r = 0; r < R; ++r) {
        const __m256i wv = _mm256_xor_si256(_mm256_maskz_loadu_epi8(mask, w + r * cols + c), flip);
        sums[r] = _mm256_dpbusd_epi32(sums[r], wv, xv);
      }
    }
    for (int r = 0; r < R; ++r) {
      const __m256 scale = _mm256_set1_ps(w_scales[r * groups + g] * x_scales[g]);
      acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sums[r]), scale, acc[r]);
    }
  }
  for (int r = 0; r < R; ++r) out[r] = SumLanes8(reinterpret_cast<const float*>(&acc[r]));
}

// Weight rows [first, first + count) against activation row t, four rows at
// a time where the AVX-512 kernels run; out[count].
void DotsOfRow(const WeightMatrix& w, int64_t first, int64_t count, const PreparedActivations& x,
               int64_t t, KernelIsa isa, float* out) {
  const int64_t cols = w.cols, stride = x.stride;
  switch (w.type) {
    case WeightType::kBF16: {
      const uint16_t* parts[3];
      for (int p = 0; p < 3; ++p) parts[p] = x.bf16.data() + (p * x.n + t) * stride;
      const uint16_t* rows = static_cast<const uint16_t*>(w.data) + first * cols;
      int64_t r = 0;
      if (isa == KernelIsa::kAvx512) {
        for (; r + 4 <= count; r += 4)
          Bf16DotsAvx512<4>(rows + r * cols, cols, parts, stride, out + r);
        for (; r < count; ++r) Bf16DotsAvx512<1>(rows + r * cols, cols, parts, stride, out + r);
      }
      for (; r < count; ++r) out[r] = Bf16DotPortable(rows + r * cols, cols, parts, stride);
      return;
    }
    case WeightType::kF16: {
      const float* xr = x.f32.data() + t * stride;
      const uint16_t* rows = static_cast<const uint16_t*>(w.data) + first * cols;
      int64_t r = 0;
      if (isa == KernelIsa::kAvx512) {
        for (; r + 4 <= count; r += 4) F16DotsAvx512<4>(rows + r * cols, cols, xr, stride, out + r);
        for (; r < count; ++r) F16DotsAvx512<1>(rows + r * cols, cols, xr, stride, out + r);
      }
      for (; r < count; ++r) out[r] = F16DotPortable(rows + r * cols, cols, xr, stride);
      return;
    }
    case WeightType::kInt8: {
      const int64_t groups = w.groups_per_row();
      const int8_t* rows = static_cast<const int8_t*>(w.data) + first * cols;
      const float* w_scales = w.scales + first * groups;
      const int8_t* xq = x.q.data() + t * stride;
      const float* x_scales = x.scales.data() + t * groups;
      const int32_t* lane_sums = x.lane_sums.data() + t * groups * 8;
      int64_t r = 0;
      if (isa == KernelIsa::kAvx512) {
        for (; r + 4 <= count; r += 4) {
          Int8DotsAvx512<4>(rows + r * cols, w_scales + r * groups, cols, w.group, xq, x_scales,
                            lane_sums, out + r);
        }
        for (; r < count; ++r) {
          Int8DotsAvx512<1>(rows + r * cols, w_scales + r * groups, cols, w.group, xq, x_scales,
                            lane_sums, out + r);
        }
      }
      for (; r < count; ++r) {
        out[r] =
            Int8DotPortable(rows + r * cols, w_scales + r * groups, cols, w.group, xq, x_scales);
      }
      return;
    }
    case WeightType::kF32:
      break;  // BLAS's (linear.cc)
  }
}

}  // namespace

KernelIsa BestKernelIsa(WeightType type) {
  static const bool has_avx512 =
      __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("fma");
  static const bool has_bf16 = has_avx512 && __builtin_cpu_supports("avx512bf16");
  static const bool has_vnni = has_avx512 && __builtin_cpu_supports("avx512vnni");
  switch (type) {
    case WeightType::kBF16:
      return has_bf16 ? KernelIsa::kAvx512 : KernelIsa::kPortable;
    case WeightType::kInt8:
      return has_vnni ? KernelIsa::kAvx512 : KernelIsa::kPortable;
    case WeightType::kF16:
      return has_avx512 ? KernelIsa::kAvx512 : KernelIsa::kPortable;
    case WeightType::kF32:
      break;
  }
  return KernelIsa::kPortable;
}

void PrepareActivations(const float* x, int64_t n, const WeightMatrix& w,
                        PreparedActivations* out) {
  const int64_t cols = w.cols, stride = PaddedLength(cols);
  out->type = w.type;
  out->n = n;
  out->cols = cols;
  out->stride = stride;
  out->group = w.group;
  switch (w.type) {
    case WeightType::kF16:
      out->f32.assign(static_cast<size_t>(n * stride), 0.0f);
      for (int64_t t = 0; t < n; ++t) std::copy_n(x + t * cols, cols, out->f32.data() + t * stride);
      return;
    case WeightType::kBF16: {
      out->bf16.assign(static_cast<size_t>(3 * n * stride), 0);
      uint16_t* hi = out->bf16.data();
      uint16_t* mid = hi + n * stride;
      uint16_t* lo = mid + n * stride;
      for (int64_t t = 0; t < n; ++t) {
        for (int64_t c = 0; c < cols; ++c) {
          // Each part rounds what the previous left; the third is exact,
          // since 3 x 8 significant bits cover float's 24.
          const float v = x[t * cols + c];
          const size_t i = static_cast<size_t>(t * stride + c);
          hi[i] = FloatToBFloat16(v);
          if (!std::isfinite(Bf16ToFloat(hi[i]))) continue;  // inf or NaN: no remainder
          const float rest = v - Bf16ToFloat(hi[i]);
          mid[i] = FloatToBFloat16(rest);
          lo[i] = FloatToBFloat16(rest - Bf16ToFloat(mid[i]));
        }
      }
      return;
    }
    case WeightType::kInt8: {
      const int64_t groups = w.groups_per_row();
      out->q.assign(static_cast<size_t>(n * stride), 0);
      out->scales.assign(static_cast<size_t>(n * groups), 0.0f);
      out->lane_sums.assign(static_cast<size_t>(n * groups * 8), 0);
      for (int64_t t = 0; t < n; ++t) {
        int8_t* q = out->q.data() + t * stride;
        QuantizeInt8(x + t * cols, cols, w.group, q, out->scales.data() + t * groups);
        int32_t* sums = out->lane_sums.data() + t * groups * 8;
        for (int64_t c = 0; c < cols; ++c) sums[(c / w.group) * 8 + (c % kChunk) / 4] -= 128 * q[c];
      }
      return;
    }
    case WeightType::kF32:
      return;
  }
}

void RowDots(const WeightMatrix& w, int64_t first, int64_t count, const PreparedActivations& x,
             bool accumulate, float* y, int64_t ldy, KernelIsa isa) {
  // Blocks of rows whose weights stay in cache while every activation row
  // reads them.
  constexpr int64_t kBlock = 16;
  float out[kBlock];
  for (int64_t b = 0; b < count; b += kBlock) {
    const int64_t rows = std::min(kBlock, count - b);
    for (int64_t t = 0; t < x.n; ++t) {
      DotsOfRow(w, first + b, rows, x, t, isa, out);
      for (int64_t r = 0; r < rows; ++r) Store(out[r], accumulate, &y[t * ldy + b + r]);
    }
  }
}

}  // namespace fot
