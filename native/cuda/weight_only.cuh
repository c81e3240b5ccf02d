// Weight-only formats in device code (native/core/op_args.h, WeightFormat Int8, Int4 and Mxfp4):
// turning packed bytes and their group scales into the weights w = q × scale. Shared by the
// dequantizing step (weight_only.cu), the decode kernel (grouped_gemm_small_m_wq.cu) and any
// kernel that dequantizes inside its main loop.
//
// Every decoder works on one 32-bit word of packed bytes (4 Int8 values, or 8 Int4 / e2m1 nibbles,
// lowest address and low nibble first, i.e. in K order) and yields exact float32 values of q;
// w = q × scale is then one float32 multiply:
// - MXFP4: q × 2^(s - 127) is exact in float32 (a 3-bit significand times a power of two; the
//   smallest product, 0.5 × 2^-127, is a float32 subnormal), so rounding w to bfloat16 or float16
//   afterwards is the contract's single rounding.
// - Int8 / Int4: the float32 product is rounded once, and rounding it to 16 bits is a second
//   rounding; the two differ from one rounding of the exact product only when the float32 result
//   lands exactly halfway between two 16-bit values (about one weight in 2^16 for bfloat16), by one
//   16-bit ulp. The float32 CPU backend keeps the float32 product, so this is far inside every
//   tolerance (op_args.h: "one rounding of q * scale" is the intent; see the report of issue 13).
//
// The conversions avoid I2F (a quarter-rate instruction): an integer u below 2^23 written into
// the mantissa of 2^23 is the float 2^23 + u, and one subtraction leaves u (or q, for an offset u).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <type_traits>

#include "../core/op_args.h"
#include "float_access.cuh"

namespace moekit::cuda::weight_only {

constexpr uint32_t kMagicBits = 0x4B000000u;  // the float 2^23: its mantissa holds an integer
constexpr float kMagic = 8388608.0f;           // 2^23

// ---- Scales ------------------------------------------------------------------------------------------
// e8m0: 2^(s - 127), s = 255 is NaN; s = 0 is 2^-127, a float32 subnormal (mantissa bit 22).
__host__ __device__ __forceinline__ float e8m0ToFloat(uint32_t s) {
  constexpr uint32_t kNaNBits = 0x7FC00000u;
  constexpr uint32_t kSmallestBits = 0x00400000u;  // 2^-127
  constexpr uint32_t kNaNCode = 255;
  const uint32_t bits = s == kNaNCode ? kNaNBits : s == 0 ? kSmallestBits : s << 23;
#ifdef __CUDA_ARCH__
  return __uint_as_float(bits);
#else
  float value;
  __builtin_memcpy(&value, &bits, sizeof(value));
  return value;
#endif
}

// ---- Values --------------------------------------------------------------------------------------------
// Int8: byte i of `word`, two's complement. Flipping the top bit makes it q + 128 (unsigned); the
// byte permute writes it under 2^23's exponent.
__device__ __forceinline__ float int8Value(uint32_t word, int i) {
  constexpr uint32_t kSignBits = 0x80808080u;
  constexpr uint32_t kHighBytes = 0x00004B00u;  // bytes 4, 5 of the permute: 0x00, 0x4B
  const uint32_t biased = word ^ kSignBits;
  const uint32_t bits = __byte_perm(biased, kHighBytes, 0x5440u | static_cast<uint32_t>(i));
  return __uint_as_float(bits) - (kMagic + 128.0f);
}

// Int4: nibble j of `word` (bits 4j..4j+3), two's complement. Flipping bit 3 makes it q + 8.
__device__ __forceinline__ float int4Value(uint32_t word, int j) {
  constexpr uint32_t kNibble = 0xFu;
  const uint32_t bits = ((word >> (4 * j)) & kNibble) ^ (kMagicBits | 0x8u);
  return __uint_as_float(bits) - (kMagic + 8.0f);
}

// e2m1: nibble j of `word`: bit 3 the sign, bits 0-2 index {0, 0.5, 1, 1.5, 2, 3, 4, 6}. Twice the
// magnitude is an integer {0, 1, 2, 3, 4, 6, 8, 12}: a table of nibbles in one constant.
constexpr uint32_t kE2m1Doubled = 0xC8643210u;  // nibble m: 2 × |e2m1 value m|
__device__ __forceinline__ float e2m1Doubled(uint32_t word, int j) {
  const uint32_t nibble = (word >> (4 * j)) & 0xFu;
  const uint32_t doubled = (kE2m1Doubled >> (4 * (nibble & 0x7u))) & 0xFu;
  const float magnitude = __uint_as_float(kMagicBits | doubled) - kMagic;
  return __uint_as_float(__float_as_uint(magnitude) | ((nibble & 0x8u) << 28));  // the sign bit
}

// ---- Decoders ----------------------------------------------------------------------------------------------
// Decoder<format>: kValuesPerWord values per 32-bit word; scale(scales, index) reads one group
// scale as the float the values are multiplied by; value(word, i, scale) is w for value i of the
// word in float32.
template <WeightFormat kFormat>
struct Decoder;

template <>
struct Decoder<WeightFormat::Int8> {
  static constexpr int kValuesPerWord = 4;
  __device__ static float scale(const void* scales, int64_t index) { return __ldg(static_cast<const float*>(scales) + index); }
  __device__ static float value(uint32_t word, int i, float scale) { return int8Value(word, i) * scale; }
};

template <>
struct Decoder<WeightFormat::Int4> {
  static constexpr int kValuesPerWord = 8;
  __device__ static float scale(const void* scales, int64_t index) { return __ldg(static_cast<const float*>(scales) + index); }
  __device__ static float value(uint32_t word, int i, float scale) { return int4Value(word, i) * scale; }
};

template <>
struct Decoder<WeightFormat::Mxfp4> {
  static constexpr int kValuesPerWord = 8;
  // Half the power of two: the values come doubled (e2m1Doubled). 2^(s - 128) is exact for every
  // s (2^-128 is a float32 subnormal; NaN stays NaN).
  __device__ static float scale(const void* scales, int64_t index) {
    return e8m0ToFloat(__ldg(static_cast<const uint8_t*>(scales) + index)) * 0.5f;
  }
  __device__ static float value(uint32_t word, int i, float scale) { return e2m1Doubled(word, i) * scale; }
};

// Values per byte of a format (Int8: 1; Int4 and MXFP4: 2).
template <WeightFormat kFormat>
constexpr int kValuesPerByte = Decoder<kFormat>::kValuesPerWord / 4;

// Two float values as one 32-bit pair of Element (BF16 or F16), `low` in the low half, each
// rounded to nearest even (one cvt.rn.*x2.f32 on sm_80 and up).
template <typename Element>
__device__ __forceinline__ uint32_t packPair(float low, float high) {
  if constexpr (std::is_same_v<Element, BF16>) {
    const __nv_bfloat162 pair = __floats2bfloat162_rn(low, high);
    return *reinterpret_cast<const uint32_t*>(&pair);
  } else {
    const __half2 pair = __floats2half2_rn(low, high);
    return *reinterpret_cast<const uint32_t*>(&pair);
  }
}

// The kValuesPerWord / 2 Element pairs of one word whose values share `scale`: pair p holds
// values 2p (low half) and 2p + 1.
template <WeightFormat kFormat, typename Element>
__device__ __forceinline__ void decodePairs(uint32_t word, float scale, uint32_t* pairs) {
  using Decode = Decoder<kFormat>;
#pragma unroll
  for (int p = 0; p < Decode::kValuesPerWord / 2; ++p) {
    pairs[p] = packPair<Element>(Decode::value(word, 2 * p, scale), Decode::value(word, 2 * p + 1, scale));
  }
}

// Calls body(std::integral_constant<WeightFormat, format>{}) for a weight-only format.
template <typename Body>
void dispatchFormat(WeightFormat format, Body&& body) {
  switch (format) {
    case WeightFormat::Int8: body(std::integral_constant<WeightFormat, WeightFormat::Int8>{}); return;
    case WeightFormat::Int4: body(std::integral_constant<WeightFormat, WeightFormat::Int4>{}); return;
    case WeightFormat::Mxfp4: body(std::integral_constant<WeightFormat, WeightFormat::Mxfp4>{}); return;
    default: throw NativeError("E_INVALID_ARGUMENT", "weight-only kernel: the weight format is not a weight-only one");
  }
}

}  // namespace moekit::cuda::weight_only
