// The quantizing steps (quantize.h): activations one warp per row (rows of a grouped GEMM's range
// only when offsets are given); weights one block per 128 × 128 block, each value read once into
// registers, the block's amax reduced across its warps, then quantized from the registers.
#include <algorithm>
#include <cstdint>
#include <string>

#include "../core/host_device.h"
#include "alignment.h"
#include "check.h"
#include "float_access.cuh"
#include "kernels.h"
#include "quantize.cuh"
#include "quantize.h"
#include "weight_only.h"

namespace moekit::cuda {
namespace {

// One warp per row and slice of the row's groups (blockIdx.y): a decode step quantizes a few long
// rows (14,336 columns for Mixtral's second GEMM), which one warp per row would walk group after
// group, each a dependent load and reduction.
struct QuantizeLaunch {
  static constexpr int kRowsPerBlock = 8;
  static constexpr int kThreads = kRowsPerBlock * quantize_detail::kWarpSize;
  static constexpr int64_t kGroupsPerSlice = 2 * quantize_detail::kGroupsPerStep;  // 1,024 columns
  static constexpr int64_t kMaxSlices = 65535;  // gridDim.y
};

struct QuantizeRowsParams {
  const void* input;
  int64_t inputWidth;
  int64_t rows;
  int64_t width;
  GemmActivation activation;
  const int32_t* rowOffsets;
  int32_t groups;
  uint8_t* output;
  float* scales;
  bool vectorLoads;
  bool vectorStores;
  int64_t groupsPerSlice;  // groups one warp quantizes
};

template <typename Format>
__global__ void __launch_bounds__(QuantizeLaunch::kThreads) quantizeRowsKernel(QuantizeRowsParams p) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * QuantizeLaunch::kRowsPerBlock + threadIdx.x / quantize_detail::kWarpSize;
  if (p.rowOffsets != nullptr) {
    const int64_t first = min(max(static_cast<int64_t>(p.rowOffsets[0]), int64_t{0}), p.rows);
    const int64_t last = min(max(static_cast<int64_t>(p.rowOffsets[p.groups]), first), p.rows);
    if (row < first || row >= last) return;
  }
  if (row >= p.rows) return;
  const auto* input = static_cast<const typename Format::Storage*>(p.input) + row * p.inputWidth;
  uint8_t* output = p.output + row * p.width;
  float* scales = p.scales + row * fp8BlockCount(p.width);
  const int64_t firstGroup = static_cast<int64_t>(blockIdx.y) * p.groupsPerSlice;
  const int64_t endGroup = min(firstGroup + p.groupsPerSlice, fp8BlockCount(p.width));
  if (p.activation.enabled) {
    quantizeRowWarp(ActivatedRow<Format>{input, p.width, p.activation}, p.width, output, scales, p.vectorStores, firstGroup, endGroup);
  } else {
    quantizeRowWarp(StoredRow<Format>{input, p.width, p.vectorLoads}, p.width, output, scales, p.vectorStores, firstGroup, endGroup);
  }
}

// ---- Weights: one thread block per 128 × 128 block ---------------------------------------------------
struct WeightBlockLaunch {
  static constexpr int kWarps = 8;
  static constexpr int kThreads = kWarps * quantize_detail::kWarpSize;
  static constexpr int kBlock = static_cast<int>(kFp8BlockSize);
  static constexpr int kRowsPerWarp = kBlock / kWarps;               // 16
  static constexpr int kColumnsPerLane = kBlock / quantize_detail::kWarpSize;  // 4 consecutive columns
};

// grid (column blocks, row blocks, matrices): block (x, y) of matrix z.
template <typename Format>
__global__ void __launch_bounds__(WeightBlockLaunch::kThreads)
    quantizeWeightBlocksKernel(const typename Format::Storage* input, uint8_t* output, float* scales, int64_t rows,
                               int64_t cols) {
  using Launch = WeightBlockLaunch;
  __shared__ float warpMaxima[Launch::kWarps];
  const int warp = threadIdx.x / quantize_detail::kWarpSize;
  const int lane = threadIdx.x % quantize_detail::kWarpSize;
  const int64_t matrix = blockIdx.z;
  const int64_t firstRow = static_cast<int64_t>(blockIdx.y) * Launch::kBlock + warp * Launch::kRowsPerWarp;
  const int64_t firstColumn = static_cast<int64_t>(blockIdx.x) * Launch::kBlock + lane * Launch::kColumnsPerLane;
  const int64_t base = matrix * rows * cols;

  float values[Launch::kRowsPerWarp][Launch::kColumnsPerLane];
  float amax = 0.0f;
#pragma unroll
  for (int r = 0; r < Launch::kRowsPerWarp; ++r) {
#pragma unroll
    for (int c = 0; c < Launch::kColumnsPerLane; ++c) {
      const int64_t row = firstRow + r, column = firstColumn + c;
      values[r][c] = row < rows && column < cols ? Format::load(input[base + row * cols + column]) : 0.0f;
      amax = fmaxf(amax, fabsf(values[r][c]));  // a NaN takes no part
    }
  }
  amax = quantize_detail::warpMax(amax);
  if (lane == 0) warpMaxima[warp] = amax;
  __syncthreads();
#pragma unroll
  for (int w = 0; w < Launch::kWarps; ++w) amax = fmaxf(amax, warpMaxima[w]);
  const float scale = fp8GroupScale(amax);
  if (threadIdx.x == 0) {
    const int64_t rowBlocks = gridDim.y, colBlocks = gridDim.x;
    scales[(matrix * rowBlocks + blockIdx.y) * colBlocks + blockIdx.x] = scale;
  }
#pragma unroll
  for (int r = 0; r < Launch::kRowsPerWarp; ++r) {
#pragma unroll
    for (int c = 0; c < Launch::kColumnsPerLane; ++c) {
      const int64_t row = firstRow + r, column = firstColumn + c;
      if (row < rows && column < cols) output[base + row * cols + column] = floatToFp8(fp8Scaled(values[r][c], scale));
    }
  }
}

}  // namespace

void quantizeWeightBlocks(const TensorView& input, const TensorView& output, const TensorView& scales, cudaStream_t stream) {
  const bool grouped = input.shape.size() == 3;
  const int64_t matrices = grouped ? input.dim(0) : 1;
  const int64_t rows = input.dim(grouped ? 1 : 0), cols = input.dim(grouped ? 2 : 1);
  if (matrices == 0 || rows == 0 || cols == 0) return;
  constexpr int64_t kMaxGridExtent = 65535;  // gridDim.y and gridDim.z
  const int64_t rowBlocks = fp8Blocks(rows), colBlocks = fp8Blocks(cols);
  if (rowBlocks > kMaxGridExtent || matrices > kMaxGridExtent || colBlocks > INT32_MAX) {
    throw NativeError("E_INVALID_ARGUMENT", "quantizeWeights: " + std::to_string(matrices) + " x " + std::to_string(rows) + " x " +
                                                std::to_string(cols) + " weights exceed the CUDA grid limits");
  }
  const dim3 grid(static_cast<unsigned>(colBlocks), static_cast<unsigned>(rowBlocks), static_cast<unsigned>(matrices));
  dispatchFloat(input.dtype, "quantizeWeights input", [&](auto format) {
    using Format = decltype(format);
    quantizeWeightBlocksKernel<Format><<<grid, WeightBlockLaunch::kThreads, 0, stream>>>(
        static_cast<const typename Format::Storage*>(input.data), output.as<uint8_t>(), scales.as<float>(), rows, cols);
    MOEKIT_CHECK_LAUNCH("quantizeWeightBlocksKernel");
  });
}

void quantizeRows(const QuantizeRowsArgs& args, cudaStream_t stream) {
  const int64_t rows = args.input.dim(0);
  if (rows == 0 || args.width == 0) return;
  constexpr int64_t kFour = quantize_detail::kValuesPerLane;
  QuantizeRowsParams params{args.input.data,
                                  args.input.dim(1),
                                  rows,
                                  args.width,
                                  args.activation,
                                  args.rowOffsets,
                                  args.groups,
                                  args.output,
                                  args.scales,
                                  args.input.dim(1) % kFour == 0 && alignedTo(args.input.data, kFour * dtypeSize(args.input.dtype)),
                                  args.width % kFour == 0 && alignedTo(args.output, kFour),
                                  0};
  // Slices of kGroupsPerSlice groups, or wider ones if a row is too long for the grid's y extent.
  const int64_t groups = fp8BlockCount(args.width);
  const int64_t slices = std::min(ceilDiv(groups, QuantizeLaunch::kGroupsPerSlice), QuantizeLaunch::kMaxSlices);
  params.groupsPerSlice = ceilDiv(groups, slices);
  const dim3 blocks(static_cast<unsigned>(ceilDiv(rows, QuantizeLaunch::kRowsPerBlock)), static_cast<unsigned>(slices));
  dispatchFloat(args.input.dtype, "quantize input", [&](auto format) {
    quantizeRowsKernel<decltype(format)><<<blocks, QuantizeLaunch::kThreads, 0, stream>>>(params);
    MOEKIT_CHECK_LAUNCH("quantizeRowsKernel");
  });
}

QuantizedRows::QuantizedRows(const TensorView& input, const TensorView& inputScales, cudaStream_t stream) {
  if (input.dtype == DType::Float8E4M3) {
    values_ = input.as<uint8_t>();
    scales_ = inputScales.as<float>();
    return;
  }
  const int64_t rows = input.dim(0), depth = input.dim(1);
  const size_t valueBytes = ScratchBuffer::roundUp(static_cast<size_t>(rows * depth));
  const size_t scaleBytes = static_cast<size_t>(rows * fp8BlockCount(depth)) * sizeof(float);
  storage_ = std::make_unique<ScratchBuffer>(valueBytes + scaleBytes, stream);
  auto* values = static_cast<uint8_t*>(storage_->data());
  auto* scales = static_cast<float*>(storage_->at(valueBytes));
  QuantizeRowsArgs quantize;
  quantize.input = input;
  quantize.output = values;
  quantize.scales = scales;
  quantize.width = depth;
  quantizeRows(quantize, stream);
  values_ = values;
  scales_ = scales;
}

void quantizeWeights(const QuantizeWeightsArgs& args, cudaStream_t stream) {
  switch (args.format) {
    case WeightFormat::Fp8Block128: quantizeWeightBlocks(args.input, args.output, args.scales, stream); return;
    case WeightFormat::Int8:
    case WeightFormat::Int4: quantizeWeightGroups(args, stream); return;
    case WeightFormat::Dense:
    case WeightFormat::Mxfp4: break;  // MXFP4 is only read, as published
  }
  throw NativeError("E_INVALID_ARGUMENT", "quantizeWeights: the format is not a quantized one");
}

}  // namespace moekit::cuda
