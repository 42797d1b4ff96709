// IEEE half (float16) and bfloat16 conversions, shared by checkpoint loading
// (F16/BF16 tensors) and the memory store (f16/bf16 keys and values).
// Round to nearest even; float16 overflow gives ±inf; NaN stays NaN.
#ifndef FOTSERVE_BASE_HALF_FLOAT_H_
#define FOTSERVE_BASE_HALF_FLOAT_H_

#include <cstdint>

namespace fot {

uint16_t FloatToHalf(float value);
float HalfToFloat(uint16_t bits);
uint16_t FloatToBFloat16(float value);
float BFloat16ToFloat(uint16_t bits);

// HalfToFloat over n values; uses the CPU's F16C conversion where the build
// targets it (exact either way: every half is a float).
void HalfToFloatRow(const uint16_t* in, int64_t n, float* out);

}  // namespace fot

#endif  // FOTSERVE_BASE_HALF_FLOAT_H_
