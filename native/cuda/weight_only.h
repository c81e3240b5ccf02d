// Weight-only formats (native/core/op_args.h: Int8, Int4, MXFP4) as steps of their own on the GPU
// (weight_only.cu): dequantizing packed weights into a dense float matrix, for the GEMM families
// that multiply dense weights, and quantizing float weights to Int8 / Int4 (quantizeWeights).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <memory>

#include "../core/op_args.h"
#include "scratch.h"

namespace moekit::cuda {

// The packed weights of a weight-only GEMM: `weights` UInt8 [E, N, weightRowBytes(depth)],
// `scales` [E, N, ceil(depth / groupWidth)] (float32, or e8m0 bytes for MXFP4).
struct PackedWeights {
  TensorView weights;
  TensorView scales;
  WeightFormat format = WeightFormat::Int8;
  int64_t groupSize = 0;  // weightGroupSize (0: one group per row)
  int64_t depth = 0;      // K

  static PackedWeights of(const GroupedGemmArgs& args) {
    return PackedWeights{args.weights, args.weightScales, args.weightFormat, args.weightGroupSize, args.input.dim(1)};
  }
  int64_t groupWidth() const { return weightGroupWidth(format, groupSize, depth); }
  int64_t scaleGroups() const { return groupWidth() > 0 ? (depth + groupWidth() - 1) / groupWidth() : 0; }
};

// w = q × scale into `output` [E, N, depth] of `dtype` (float32, float16 or bfloat16): float32
// products, rounded once more to a 16-bit dtype (weight_only.cuh says when that differs from one
// rounding).
void dequantizeWeights(const PackedWeights& packed, void* output, DType dtype, cudaStream_t stream);

// Dense weights of a weight-only GEMM in stream-ordered scratch, freed (in stream order) with this
// object: E × N × K values of `dtype`.
class DequantizedWeights {
 public:
  DequantizedWeights(const PackedWeights& packed, DType dtype, cudaStream_t stream);
  TensorView view() const { return view_; }

 private:
  std::unique_ptr<ScratchBuffer> storage_;
  TensorView view_;
};

// quantizeWeights for Int8 / Int4: the rule under "The weight-only rule" (op_args.h), bit for bit
// with the CPU backend. `input` [N, K] or [E, N, K] float; `output` UInt8 [.., N, weightRowBytes(K)];
// `scales` float32 [.., N, ceil(K / g)].
void quantizeWeightGroups(const QuantizeWeightsArgs& args, cudaStream_t stream);

}  // namespace moekit::cuda
