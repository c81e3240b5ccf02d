// The FP8 rules of native/core/op_args.h ("Quantized weights and activations") on the host, in one
// place for every op that quantizes or reads FP8 values: the W8A8 rule for activation rows (per
// row, per group of 128 channels), the at-load rule for weights (per 128×128 block), both with
// scale = amax / 448 and q = e4m3(x / scale), and FP8 values back to float.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#include "../core/dtype.h"
#include "../core/op_args.h"

namespace moekit::cpu {

// q * scale for one e4m3 pattern q, rounded once (as float8e4m3ToFloat(q) * scale). Weights are
// converted on a GEMM's path, so this is branch-free arithmetic the compiler vectorizes (4x the
// speed of a table or a branch, measured on SSE2): e4m3's exponent and mantissa bits, moved into
// float32's fields, read as the value times 2^-120 (subnormals included, as float32 subnormals),
// and the exact power-of-two product restores it. Only the NaN patterns (0x7f, 0xff) come out as
// ±480, which no other pattern does.
inline float fp8Scaled(uint8_t q, float scale) {
  const uint32_t bits = (static_cast<uint32_t>(q & 0x80u) << 24) | (static_cast<uint32_t>(q & 0x7fu) << 20);
  float value;
  std::memcpy(&value, &bits, sizeof(value));
  value *= 0x1p120f;
  value = __builtin_fabsf(value) == 480.0f ? std::numeric_limits<float>::quiet_NaN() : value;
  return value * scale;
}

// The scale of a group or block whose largest magnitude is amax.
inline float fp8Scale(float amax) { return amax / kFloat8E4M3Max; }

// One value quantized under its group's scale; a scale of 0 (a group of zeros) gives 0, except
// that a NaN stays NaN.
inline uint8_t fp8Quantize(float value, float scale) {
  return scale == 0.0f && !std::isnan(value) ? 0 : floatToFloat8e4m3(value / scale);
}

// The W8A8 rule on one row of `width` values: q [width] and scales [fp8Blocks(width)].
void quantizeRowFp8(const float* values, int64_t width, uint8_t* q, float* scales);

// Rows [first, first + count) of a [*, width] FP8 matrix as the values the rule stands for,
// x' = q * scale, into float rows of the same layout (`values` points at row 0).
void dequantizeRowsFp8(const uint8_t* q, const float* scales, int64_t first, int64_t count, int64_t width, float* values);

// The W8A8 rule on rows [first, first + count) of a [*, width] float32 matrix: q and scales rows
// of the same indices.
void quantizeRowsFp8(const float* values, int64_t first, int64_t count, int64_t width, uint8_t* q, float* scales);

// What the W8A8 rule makes of rows [first, first + count) of a float matrix (any float dtype):
// x' = q * scale, as float32 rows of the same layout (`values` points at row 0).
void w8a8RowsAsFloat(const TensorView& input, int64_t first, int64_t count, float* values);

// quantizeWeights for Fp8Block128 (the at-load block rule of QuantizeWeightsArgs).
void quantizeWeightsFp8Block(const QuantizeWeightsArgs& args);

}  // namespace moekit::cpu
