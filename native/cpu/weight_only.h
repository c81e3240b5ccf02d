// The weight-only formats of native/core/op_args.h (Int8, Int4, Mxfp4) on the host: their weights
// dequantized to float32 rows, for the GEMMs, and the at-load rule that makes Int8 / Int4 weights.
#pragma once

#include <cstdint>

#include "../core/op_args.h"

namespace moekit::cpu {

// One [N, K] matrix of weight-only weights: bytes [N, weightRowBytes(K)] and scales [N, groups].
struct WeightOnlyMatrix {
  const uint8_t* data;
  const void* scales;  // float32 (Int8, Int4) or e8m0 bytes (Mxfp4)
  WeightFormat format;
  int64_t groupSize;   // weightGroupSize (Int8, Int4)
  int64_t depth;       // K
};

// The matrix of expert `expert` within weights [E, N, rowBytes] and scales [E, N, groups].
WeightOnlyMatrix weightOnlyMatrix(const TensorView& weights, const TensorView& scales, WeightFormat format,
                                  int64_t groupSize, int64_t expert);

// Rows [first, first + count) of w (all K) as float32, into values [count, K].
void dequantizeWeightRows(const WeightOnlyMatrix& w, int64_t first, int64_t count, float* values);

// quantizeWeights for Int8 and Int4 (the rule under "The weight-only rule").
void quantizeWeightsWeightOnly(const QuantizeWeightsArgs& args);

}  // namespace moekit::cpu
