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

// ---- Packed 16-bit decoding (Marlin's conversions) ----------------------------------------------------
// The decode kernel (grouped_gemm_small_m_wq.cu) turns packed bytes straight into mma operand
// pairs of the input's 16-bit Element (BF16 or F16), two values per instruction where the format
// allows, and applies group scales after the mma where it can. A "span" is the kSpanValues K
// values of one 16-byte vector of 16-bit tokens; spanPairs() decodes the weights of one span into
// kSpanPairs registers of two values each, in the pair order below, and tokenPairs() permutes the
// span's token words into the same order, so that pair p of both operands holds the same K values.
//
// Pair order (values of the span, low half first):
//   Int4, MXFP4 (one 32-bit word per span): pair p = (p, p + 4): (w >> 4p) & 0x000F000F puts
//     nibbles p and p + 4 in the two halves with one shift and one LOP3.
//   Int8 (two words per span): pair p = (p', p' + 2), p' = p % 2 + 4 (p / 2): one byte permute
//     puts bytes 0 and 2 (1 and 3) of a word in the two halves.
//
// Values (every one exact):
//   Int4: ((w >> 4p) & 0x000F000F) ^ magic, magic = the 16-bit 128 (BF16 0x4300) or 1024 (F16
//     0x6400) with bit 3 set: flipping the nibble's sign bit makes q + 8, written into a mantissa
//     whose ulp is 1, so the half is 128 + 8 + q (1024 + 8 + q); one HSUB2 leaves q.
//   Int8, F16: the byte q + 128 under F16's 1024 exponent (one PRMT per pair), one HSUB2 leaves q.
//   Int8, BF16: BF16 has 7 mantissa bits, too few for a byte: each byte goes under float32's 2^23
//     (int8Value), one FADD leaves q as a float32, and q (at most 8 significant bits) is exactly
//     the high half of that float: one PRMT packs two of them.
//   MXFP4: e2m1 (sign, 2 exponent bits, 1 mantissa bit) is moved bit for bit into the 16-bit
//     format: sign to bit 15, exponent and mantissa to the bottom of the 16-bit exponent and the
//     top of its mantissa. With the 16-bit bias (BF16 127, F16 15) in place of e2m1's 1, the
//     value is e2m1 × 2^-126 (BF16) or × 2^-14 (F16), e2m1's subnormal 0.5 a 16-bit subnormal
//     included; one HMUL2 by 2^126 (2^14) is exact and leaves the e2m1 value.
constexpr int kSpanValues = 8;
constexpr int kSpanPairs = kSpanValues / 2;

__device__ __forceinline__ uint32_t subtractPair(uint32_t a, uint32_t b, BF16) {
  const __nv_bfloat162 d = __hsub2(*reinterpret_cast<const __nv_bfloat162*>(&a), *reinterpret_cast<const __nv_bfloat162*>(&b));
  return *reinterpret_cast<const uint32_t*>(&d);
}
__device__ __forceinline__ uint32_t subtractPair(uint32_t a, uint32_t b, F16) {
  const __half2 d = __hsub2(*reinterpret_cast<const __half2*>(&a), *reinterpret_cast<const __half2*>(&b));
  return *reinterpret_cast<const uint32_t*>(&d);
}
__device__ __forceinline__ uint32_t multiplyPair(uint32_t a, uint32_t b, BF16) {
  const __nv_bfloat162 d = __hmul2(*reinterpret_cast<const __nv_bfloat162*>(&a), *reinterpret_cast<const __nv_bfloat162*>(&b));
  return *reinterpret_cast<const uint32_t*>(&d);
}
__device__ __forceinline__ uint32_t multiplyPair(uint32_t a, uint32_t b, F16) {
  const __half2 d = __hmul2(*reinterpret_cast<const __half2*>(&a), *reinterpret_cast<const __half2*>(&b));
  return *reinterpret_cast<const uint32_t*>(&d);
}

// The 16-bit constants of each Element, as the bits of a pair of equal values: Int4's magic (the
// 16-bit number whose ulp is 1, with bit 3 set) is also its offset; Int8's exponent byte and
// offset (F16 only); MXFP4's bit positions and the bias multiplier.
template <typename Element>
struct PackedConstants;
template <>
struct PackedConstants<BF16> {
  static constexpr uint32_t kInt4Magic = 0x43084308u;  // 136 = 128 + 8: 136 + q after the XOR
  static constexpr int kE2m1MagnitudeShift = 6;         // e2m1 bits 0-2 → bits 6-8
  static constexpr uint32_t kE2m1MagnitudeMask = 0x01C001C0u;
  static constexpr uint32_t kE2m1Bias = 0x7E807E80u;    // 2^126
};
template <>
struct PackedConstants<F16> {
  static constexpr uint32_t kInt4Magic = 0x64086408u;   // 1032 = 1024 + 8: 1032 + q after the XOR
  static constexpr uint32_t kInt8Exponent = 0x64646464u;  // F16 1024's high byte, four times
  static constexpr uint32_t kInt8Offset = 0x64806480u;    // 1152 = 1024 + 128
  static constexpr int kE2m1MagnitudeShift = 9;          // e2m1 bits 0-2 → bits 9-11
  static constexpr uint32_t kE2m1MagnitudeMask = 0x0E000E00u;
  static constexpr uint32_t kE2m1Bias = 0x74007400u;     // 2^14
};

constexpr uint32_t kLowNibblePair = 0x000F000Fu;  // bits 0-3 of each half
constexpr uint32_t kSignPair = 0x80008000u;       // bit 15 of each half
constexpr uint32_t kNibbleSignBit = 3;
constexpr uint32_t kHalfBits = 16;

// (value & mask) ^ bits in one LOP3: written as two operations with two immediates, it compiles
// to two LOP3s (one immediate each), one instruction more per decoded pair.
__device__ __forceinline__ uint32_t maskThenFlip(uint32_t value, uint32_t mask, uint32_t bits) {
  constexpr uint32_t kA = 0xF0, kB = 0xCC, kC = 0xAA;  // lop3's truth-table operands
  constexpr uint32_t kTable = (kA & kB) ^ kC;
  uint32_t result;
  asm("lop3.b32 %0, %1, %2, %3, %4;\n" : "=r"(result) : "r"(value), "r"(mask), "r"(bits), "n"(kTable));
  return result;
}

// A logical shift left by `shift` (right by -shift); shift is a compile-time constant once unrolled.
__device__ __forceinline__ uint32_t shiftBy(uint32_t value, int shift) {
  return shift >= 0 ? value << shift : value >> -shift;
}

// Pair p of an Int4 / MXFP4 word: values p, p + 4.
template <WeightFormat kFormat, typename Element>
__device__ __forceinline__ uint32_t nibblePair(uint32_t word, int p) {
  using C = PackedConstants<Element>;
  if constexpr (kFormat == WeightFormat::Int4) {
    const uint32_t biased = maskThenFlip(word >> (4 * p), kLowNibblePair, C::kInt4Magic);
    return subtractPair(biased, C::kInt4Magic, Element{});
  } else {
    static_assert(kFormat == WeightFormat::Mxfp4, "nibble formats");
    constexpr int kSignShift = kHalfBits - 1 - kNibbleSignBit;  // nibble 0's sign → bit 15
    const uint32_t sign = shiftBy(word, kSignShift - 4 * p) & kSignPair;
    const uint32_t magnitude = shiftBy(word, C::kE2m1MagnitudeShift - 4 * p) & C::kE2m1MagnitudeMask;
    return multiplyPair(sign | magnitude, C::kE2m1Bias, Element{});
  }
}

// Pairs 2·half, 2·half + 1 of an Int8 word: values (0, 2) and (1, 3) of the word.
template <typename Element>
__device__ __forceinline__ void bytePairs(uint32_t word, uint32_t* pairs) {
  constexpr uint32_t kSignBits = 0x80808080u;  // q → q + 128
  const uint32_t biased = word ^ kSignBits;
  if constexpr (std::is_same_v<Element, F16>) {
    using C = PackedConstants<F16>;
    constexpr uint32_t kBytes02 = 0x7250u, kBytes13 = 0x7351u;  // bytes 0, 2 (1, 3) under 0x64
    pairs[0] = subtractPair(__byte_perm(biased, C::kInt8Exponent, kBytes02), C::kInt8Offset, F16{});
    pairs[1] = subtractPair(__byte_perm(biased, C::kInt8Exponent, kBytes13), C::kInt8Offset, F16{});
  } else {
    constexpr uint32_t kHighHalves = 0x7632u;  // the high halves of two floats
    uint32_t q[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) q[i] = __float_as_uint(int8Value(word, i));
    pairs[0] = __byte_perm(q[0], q[2], kHighHalves);
    pairs[1] = __byte_perm(q[1], q[3], kHighHalves);
  }
}

// The kSpanPairs pairs of span `span` of a 16-byte vector of packed weights, exact q (Int4,
// Int8) or e2m1 values (MXFP4), in the pair order above.
template <WeightFormat kFormat, typename Element>
__device__ __forceinline__ void spanPairs(const uint32_t (&words)[4], int span, uint32_t (&pairs)[kSpanPairs]) {
  if constexpr (kFormat == WeightFormat::Int8) {
    bytePairs<Element>(words[2 * span], &pairs[0]);
    bytePairs<Element>(words[2 * span + 1], &pairs[2]);
  } else {
#pragma unroll
    for (int p = 0; p < kSpanPairs; ++p) pairs[p] = nibblePair<kFormat, Element>(words[span], p);
  }
}

// The four words of a 16-byte vector of tokens (values 2i, 2i + 1 in word i) as the span's pairs.
template <WeightFormat kFormat>
__device__ __forceinline__ void tokenPairs(const uint32_t (&words)[4], uint32_t (&pairs)[kSpanPairs]) {
  constexpr uint32_t kLowHalves = 0x5410u, kHighHalves = 0x7632u;
  // Int4 / MXFP4: (0, 4) (1, 5) (2, 6) (3, 7) pair words 0 and 2, 1 and 3; Int8: (0, 2) (1, 3)
  // (4, 6) (5, 7) pair words 0 and 1, 2 and 3.
  constexpr bool kNibbles = kFormat != WeightFormat::Int8;
  const uint32_t a0 = words[0], b0 = kNibbles ? words[2] : words[1];
  const uint32_t a1 = kNibbles ? words[1] : words[2], b1 = words[3];
  pairs[0] = __byte_perm(a0, b0, kLowHalves);
  pairs[1] = __byte_perm(a0, b0, kHighHalves);
  pairs[2] = __byte_perm(a1, b1, kLowHalves);
  pairs[3] = __byte_perm(a1, b1, kHighHalves);
}

// A group scale applied to decoded pairs before the mma (for groups narrower than what one mma
// sums; MXFP4 always, its groups being one lane's 32 values):
//   Int8 / Int4: the float32 scale rounded to Element, one HMUL2: w = rn(q × rn(scale)), a
//     second rounding beside the contract's one rounding of q × scale (at most one more 16-bit
//     ulp; float16 scales below 2^-14 also lose bits as float16 subnormals).
//   MXFP4, BF16: 2^(s - 127) is a BF16 value for every s (2^-127 a subnormal; 255 NaN), and the
//     e2m1 value times it is exact (a 2-bit significand; the smallest product 2^-128 is a BF16
//     subnormal) unless it overflows, where rounding w to BF16 overflows too: one HMUL2 is
//     exactly the contract's w.
//   MXFP4, F16: float16 holds 2^(s - 127) only for s in [103, 142], so the pair is multiplied in
//     float32 (exact) and rounded to float16 once: the contract's w.
template <WeightFormat kFormat, typename Element>
struct PairScale {
  static constexpr bool kFloat32 = kFormat == WeightFormat::Mxfp4 && std::is_same_v<Element, F16>;
  // A scale's code as stored (float32 bits, or the e8m0 byte), read without converting it, so
  // that a kernel can start the load early and convert (fromCode) once it has landed.
  __device__ static uint32_t code(const void* scales, int64_t index) {
    if constexpr (kFormat != WeightFormat::Mxfp4) {
      return __float_as_uint(Decoder<kFormat>::scale(scales, index));
    } else {
      return __ldg(static_cast<const uint8_t*>(scales) + index);
    }
  }
  // The scale as the bits apply() takes: a pair of Element, or (kFloat32) a float32.
  __device__ static uint32_t fromCode(uint32_t code) {
    if constexpr (kFormat != WeightFormat::Mxfp4) {
      const float scale = __uint_as_float(code);
      return packPair<Element>(scale, scale);
    } else {
      if constexpr (kFloat32) return __float_as_uint(e8m0ToFloat(code));
      constexpr uint32_t kNaN = 0x7FC0u, kSmallest = 0x0040u;  // BF16 NaN; 2^-127, a subnormal
      constexpr uint32_t kNaNCode = 255, kMantissaBits = 7;
      const uint32_t bits = code == kNaNCode ? kNaN : code == 0 ? kSmallest : code << kMantissaBits;
      return bits | (bits << kHalfBits);
    }
  }
  __device__ static uint32_t load(const void* scales, int64_t index) { return fromCode(code(scales, index)); }
  __device__ static uint32_t apply(uint32_t pair, uint32_t scale) {
    if constexpr (kFloat32) {
      const float2 values = __half22float2(*reinterpret_cast<const __half2*>(&pair));
      const float factor = __uint_as_float(scale);
      return packPair<F16>(values.x * factor, values.y * factor);
    } else {
      return multiplyPair(pair, scale, Element{});
    }
  }
};

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
