// FP8 (e4m3fn) in device code: the conversions the W8A8 rule needs (native/core/op_args.h,
// "Quantized weights and activations"), and the cheap exact widening that feeds FP8 values to
// 16-bit tensor cores on GPUs without FP8 ones (sm_80).
#pragma once

#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include <cstdint>

#include "../core/dtype.h"
#include "../core/op_args.h"

namespace moekit::cuda {

// ---- Conversions ---------------------------------------------------------------------------------
// float → e4m3, rounded to nearest even and saturated to ±448 (infinities too): the same bits as
// moekit::floatToFloat8e4m3 for every non-NaN value. One instruction from sm_89 on; cuda_fp8.h
// emulates it on sm_80.
__device__ __forceinline__ uint8_t floatToFp8(float value) {
  return static_cast<uint8_t>(__nv_cvt_float_to_fp8(value, __NV_SATFINITE, __NV_E4M3));
}

// Two values into one 16-bit word, `low` in the low byte.
__device__ __forceinline__ uint16_t floatsToFp8x2(float low, float high) {
  return static_cast<uint16_t>(__nv_cvt_float2_to_fp8x2(make_float2(low, high), __NV_SATFINITE, __NV_E4M3));
}

// e4m3 → float, exact (every e4m3 value is a float16 value).
__device__ __forceinline__ float fp8ToFloat(uint8_t bits) {
  return __half2float(__half(__nv_cvt_fp8_to_halfraw(static_cast<__nv_fp8_storage_t>(bits), __NV_E4M3)));
}

// ---- The W8A8 rule ----------------------------------------------------------------------------------
// fp8Blocks() (op_args.h) for device code: 128-wide blocks (or groups) covering `extent`.
__host__ __device__ __forceinline__ int64_t fp8BlockCount(int64_t extent) {
  return (extent + kFp8BlockSize - 1) / kFp8BlockSize;
}

// The scale of a group whose largest magnitude is `amax`.
__device__ __forceinline__ float fp8GroupScale(float amax) { return amax / kFloat8E4M3Max; }

// One value of a group with scale `scale`: e4m3(x / scale), and 0 in a group of zeros (a NaN stays
// NaN there too). A true division (not a multiply by the reciprocal), so the bits match the CPU
// backend's.
__device__ __forceinline__ float fp8Scaled(float value, float scale) {
  return scale == 0.0f && !isnan(value) ? 0.0f : value / scale;
}

// ---- Widening for 16-bit tensor cores -------------------------------------------------------------------
// e4m3 (1 sign, 4 exponent bits with bias 7, 3 mantissa bits) sits inside float16 (bias 15) when its
// seven magnitude bits move up by 7 and its sign by 8: the float16 so made is the e4m3 value times
// 2^-8 exactly, subnormals included (both formats have them at exponent field 0). So an FP8 × FP8
// product costs two bit operations per value on the operands and one multiply by 2^16 on the
// float32 sum (kFp8WidenedProductScale); a byte permute, a shift and two masks convert four values.
// The e4m3 NaN (0x7f, all seven magnitude bits set) is made a float16 NaN (exponent bits set on top),
// so a NaN input stays NaN through the product, as the contract says.
constexpr float kFp8WidenedProductScale = 65536.0f;  // 2^8 for each operand

// A widened pair whose halves came from the e4m3 NaN pattern (magnitude bits all set) made float16
// NaNs: their exponent bits set too, keeping a non-zero mantissa.
__device__ __forceinline__ uint32_t withNaNs(uint32_t pair) {
  constexpr uint32_t kMagnitudes = 0x3f803f80u;
  constexpr uint32_t kExponents = 0x7c007c00u;
  return pair | (__vcmpeq2(pair & kMagnitudes, kMagnitudes) & kExponents);
}

// Bytes 0 and 1 of `word` → the float16 pair (low, high) of `*pair01`; bytes 2 and 3 → `*pair23`.
__device__ __forceinline__ void widenFp8x4(uint32_t word, uint32_t* pair01, uint32_t* pair23) {
  constexpr uint32_t kSigns = 0x80008000u;      // bit 15 of each 16-bit half
  constexpr uint32_t kMagnitudes = 0x3f803f80u;  // bits 7..13 of each half
  // Each byte into the high byte of its 16-bit half (selector nibbles name bytes of {0, word}).
  constexpr uint32_t kBytes01 = 0x1404u;  // half 0 ← byte 0, half 1 ← byte 1, low bytes ← zero
  constexpr uint32_t kBytes23 = 0x3424u;  // half 0 ← byte 2, half 1 ← byte 3
  const uint32_t spread01 = __byte_perm(word, 0u, kBytes01);
  const uint32_t spread23 = __byte_perm(word, 0u, kBytes23);
  *pair01 = withNaNs((spread01 & kSigns) | ((spread01 >> 1) & kMagnitudes));
  *pair23 = withNaNs((spread23 & kSigns) | ((spread23 >> 1) & kMagnitudes));
}

}  // namespace moekit::cuda
