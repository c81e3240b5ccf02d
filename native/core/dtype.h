// Element types shared by every backend. The numeric values are part of the contract with
// lib/dtype.ts (DTYPE_CODES): keep the two in step.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace moekit {

// Float32, Float16 and BFloat16 are the compute dtypes ops read and write. Float8E4M3 holds
// quantized values (op_args.h, "Quantized weights and activations"), always beside their scales;
// UInt8 holds raw bytes (packed formats).
enum class DType : int32_t {
  Float32 = 0,
  Float16 = 1,
  BFloat16 = 2,
  Int32 = 3,
  Float8E4M3 = 4,
  UInt8 = 5,
};

constexpr DType kLastDType = DType::UInt8;

inline size_t dtypeSize(DType dtype) {
  switch (dtype) {
    case DType::Float32: return 4;
    case DType::Float16: return 2;
    case DType::BFloat16: return 2;
    case DType::Int32: return 4;
    case DType::Float8E4M3: return 1;
    case DType::UInt8: return 1;
  }
  return 0;
}

inline const char* dtypeName(DType dtype) {
  switch (dtype) {
    case DType::Float32: return "float32";
    case DType::Float16: return "float16";
    case DType::BFloat16: return "bfloat16";
    case DType::Int32: return "int32";
    case DType::Float8E4M3: return "float8_e4m3";
    case DType::UInt8: return "uint8";
  }
  return "unknown";
}

// The dtypes ops compute in (and accept wherever op_args.h says "float").
inline bool isComputeFloat(DType dtype) {
  return dtype == DType::Float32 || dtype == DType::Float16 || dtype == DType::BFloat16;
}

// Host-side conversions between the 16-bit float formats and float32. bfloat16 rounds to
// nearest-even, as PyTorch does; NaN stays NaN.
inline float bfloat16ToFloat(uint16_t bits) {
  uint32_t word = static_cast<uint32_t>(bits) << 16;
  float value;
  std::memcpy(&value, &word, sizeof(value));
  return value;
}

inline uint16_t floatToBfloat16(float value) {
  uint32_t word;
  std::memcpy(&word, &value, sizeof(word));
  if ((word & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((word >> 16) | 0x40u);
  const uint32_t roundingBias = 0x7fffu + ((word >> 16) & 1u);
  return static_cast<uint16_t>((word + roundingBias) >> 16);
}

inline float float16ToFloat(uint16_t bits) {
  const uint32_t sign = static_cast<uint32_t>(bits & 0x8000u) << 16;
  uint32_t exponent = (bits >> 10) & 0x1fu;
  uint32_t mantissa = bits & 0x3ffu;
  uint32_t word;
  if (exponent == 0) {
    if (mantissa == 0) {
      word = sign;
    } else {  // subnormal: normalise it
      exponent = 127 - 15 + 1;
      while ((mantissa & 0x400u) == 0) {
        mantissa <<= 1;
        --exponent;
      }
      mantissa &= 0x3ffu;
      word = sign | (exponent << 23) | (mantissa << 13);
    }
  } else if (exponent == 0x1fu) {
    word = sign | 0x7f800000u | (mantissa << 13);
  } else {
    word = sign | ((exponent + 127 - 15) << 23) | (mantissa << 13);
  }
  float value;
  std::memcpy(&value, &word, sizeof(value));
  return value;
}

inline uint16_t floatToFloat16(float value) {
  uint32_t word;
  std::memcpy(&word, &value, sizeof(word));
  const uint16_t sign = static_cast<uint16_t>((word >> 16) & 0x8000u);
  const uint32_t magnitude = word & 0x7fffffffu;
  if (magnitude > 0x7f800000u) return sign | 0x7e00u;           // NaN
  if (magnitude >= 0x47800000u) return sign | 0x7c00u;          // overflow to infinity
  if (magnitude < 0x33000001u) return sign;                     // underflow to zero
  int exponent = static_cast<int>(magnitude >> 23) - 127 + 15;
  uint32_t mantissa = (magnitude & 0x7fffffu) | 0x800000u;
  if (exponent <= 0) {  // subnormal result
    const int shift = 14 - exponent;
    uint32_t rounded = mantissa >> shift;
    const uint32_t remainder = mantissa & ((1u << shift) - 1);
    const uint32_t half = 1u << (shift - 1);
    if (remainder > half || (remainder == half && (rounded & 1u))) ++rounded;
    return sign | static_cast<uint16_t>(rounded);
  }
  uint32_t rounded = mantissa >> 13;
  const uint32_t remainder = mantissa & 0x1fffu;
  if (remainder > 0x1000u || (remainder == 0x1000u && (rounded & 1u))) ++rounded;
  if (rounded & 0x800u) {  // mantissa carried into the exponent
    rounded >>= 1;
    ++exponent;
  }
  if (exponent >= 0x1f) return sign | 0x7c00u;
  return sign | static_cast<uint16_t>(exponent << 10) | static_cast<uint16_t>(rounded & 0x3ffu);
}

// OCP float8 e4m3 ("e4m3fn", as PyTorch's float8_e4m3fn): 1 sign, 4 exponent (bias 7), 3 mantissa
// bits; no infinities; 0x7f/0xff are NaN; the largest finite value is 448.
constexpr float kFloat8E4M3Max = 448.0f;

inline float float8e4m3ToFloat(uint8_t bits) {
  const float sign = (bits & 0x80u) ? -1.0f : 1.0f;
  const int exponent = (bits >> 3) & 0xf;
  const int mantissa = bits & 0x7;
  if (exponent == 0xf && mantissa == 0x7) return sign * __builtin_nanf("");
  if (exponent == 0) return sign * static_cast<float>(mantissa) * 0x1p-9f;  // subnormal: m / 8 * 2^-6
  return sign * (1.0f + static_cast<float>(mantissa) / 8.0f) * __builtin_ldexpf(1.0f, exponent - 7);
}

// Rounds to nearest even and saturates to ±448 (as the W8A8 rule and PyTorch's saturating casts
// do); NaN stays NaN.
inline uint8_t floatToFloat8e4m3(float value) {
  uint32_t word;
  std::memcpy(&word, &value, sizeof(word));
  const uint8_t sign = static_cast<uint8_t>((word >> 24) & 0x80u);
  const uint32_t magnitude = word & 0x7fffffffu;
  if (magnitude > 0x7f800000u) return sign | 0x7fu;  // NaN
  float absolute;
  std::memcpy(&absolute, &magnitude, sizeof(absolute));
  if (absolute >= kFloat8E4M3Max) return sign | 0x7eu;  // saturate (and infinity) to 448
  // Smallest normal is 2^-6; below it the step is 2^-9 (subnormals).
  const int exponent = static_cast<int>(magnitude >> 23) - 127;
  const int quantumExponent = exponent < -6 ? -9 : exponent - 3;
  const float quantum = __builtin_ldexpf(1.0f, quantumExponent);
  const float steps = absolute / quantum;  // exact: a power-of-two scaling
  float whole = static_cast<float>(static_cast<int64_t>(steps));
  const float fraction = steps - whole;
  if (fraction > 0.5f || (fraction == 0.5f && static_cast<int64_t>(whole) % 2 != 0)) whole += 1.0f;
  const float rounded = whole * quantum;
  if (rounded >= kFloat8E4M3Max) return sign | 0x7eu;
  if (rounded < 0x1p-6f) return sign | static_cast<uint8_t>(static_cast<int>(whole));  // subnormal (or zero)
  uint32_t roundedWord;
  std::memcpy(&roundedWord, &rounded, sizeof(roundedWord));
  const int roundedExponent = static_cast<int>(roundedWord >> 23) - 127;
  const uint32_t mantissa = (roundedWord >> 20) & 0x7u;
  return sign | static_cast<uint8_t>(((roundedExponent + 7) << 3) | mantissa);
}

}  // namespace moekit
