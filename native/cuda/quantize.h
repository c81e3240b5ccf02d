// The W8A8 rule (native/core/op_args.h, "Quantized weights and activations") as a step of its own
// on the GPU: a GEMM's float input quantized before FP8 weights multiply it, and a GEMM's float
// results quantized when a family cannot do it in its epilogue. (permute quantizes inside its
// gather, and the sm90 family in its epilogue; both with the same device code, quantize.cuh.)
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <memory>

#include "../core/op_args.h"
#include "scratch.h"

namespace moekit::cuda {

struct QuantizeRowsArgs {
  TensorView input;           // [rows, inputWidth] float: the values, or an activation's inputs
  uint8_t* output = nullptr;  // [rows, width] e4m3
  float* scales = nullptr;    // [rows, fp8Blocks(width)]
  int64_t width = 0;          // inputWidth, or inputWidth / 2 for a gated activation
  GemmActivation activation;  // optional: applied to the input before quantizing
  // Optional device offsets: only rows [offsets[0], offsets[groups]) (clamped into the rows) are
  // written, as a grouped GEMM leaves rows no expert owns untouched.
  const int32_t* rowOffsets = nullptr;
  int32_t groups = 0;
};

void quantizeRows(const QuantizeRowsArgs& args, cudaStream_t stream);

// Fp8Block128 weights from float ones, as a loader quantizes a 16-bit checkpoint: for each [N, K]
// matrix and each of its 128 × 128 blocks (partial at the edges), scale = amax / 448 and
// q = e4m3(w / scale), q = 0 in a block whose scale is 0. `input` [N, K] or [E, N, K] float,
// `output` e4m3 of the same shape, `scales` float32 [(E,) ceil(N/128), ceil(K/128)]. (The
// quantizeWeights op's Fp8Block128 format: kernels.h.)
void quantizeWeightBlocks(const TensorView& input, const TensorView& output, const TensorView& scales, cudaStream_t stream);

// The FP8 rows a GEMM with Fp8Block128 weights multiplies: its input when it arrives quantized
// (Float8E4M3 with inputScales), else a copy of the float input quantized here into stream-ordered
// scratch that lives as long as this object.
class QuantizedRows {
 public:
  QuantizedRows(const TensorView& input, const TensorView& inputScales, cudaStream_t stream);

  const uint8_t* values() const { return values_; }
  const float* scales() const { return scales_; }

 private:
  std::unique_ptr<ScratchBuffer> storage_;
  const uint8_t* values_ = nullptr;
  const float* scales_ = nullptr;
};

}  // namespace moekit::cuda
