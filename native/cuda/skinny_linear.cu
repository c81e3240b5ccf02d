// Linear for a few rows: output[m, n] = sum_k input[m, k] * weight[n, k] (+ bias[n]) when M is
// small (the router at decode: M = tokens, N = experts). The WMMA tile kernel (grouped_gemm_wmma.cu)
// gives such a product one or two blocks that walk all of K alone (0.1–0.2 ms for a 1-token router);
// here every block takes kColumns weight rows × kRowGroup input rows, and its warps split K
// between them, so even N = 8 spreads K over 16 warps and the call costs a few microseconds.
//
// Each lane reads 16-byte vectors (8 bf16/f16 values) of its weight rows and input rows and
// accumulates float32 products; a butterfly sums the lanes, shared memory sums the warps in a
// fixed order (deterministic results). Weights are read once per row group, so supports() keeps
// M small (skinny_linear.h says how small).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <type_traits>

#include "alignment.h"
#include "check.h"
#include "float_access.cuh"
#include "skinny_linear.h"
#include "skinny_order.cuh"

namespace moekit::cuda::skinny {
namespace {

constexpr int kThreads = kWarps * kWarpSize;
constexpr int kColumns = 4;            // weight rows (output columns) per block
constexpr int kRowGroup = 8;           // input rows per block
constexpr int64_t kMaxGridRows = 65535;  // gridDim.y: row groups

struct SkinnyProblem {
  const void* input;   // [rows, depth]
  const void* weight;  // [cols, depth]
  const void* bias;    // [cols] or nullptr
  DType biasDType;
  void* output;        // [rows, cols]
  DType outputDType;
  int64_t rows;
  int64_t cols;
  int64_t depth;
};

template <typename Element>
__global__ void __launch_bounds__(kThreads) skinnyLinearKernel(SkinnyProblem p) {
  using T = typename Element::Storage;
  __shared__ float partials[kWarps][kColumns][kRowGroup];
  const int warp = threadIdx.x / kWarpSize;
  const int lane = threadIdx.x % kWarpSize;
  const int64_t firstColumn = static_cast<int64_t>(blockIdx.x) * kColumns;
  const int64_t firstRow = static_cast<int64_t>(blockIdx.y) * kRowGroup;
  const T* weight = static_cast<const T*>(p.weight);
  const T* input = static_cast<const T*>(p.input);

  float sums[kColumns][kRowGroup] = {};
  // Warp w takes the K spans w, w + kWarps, ...; within a span, lane l the vector l.
  for (int64_t k = (warp * int64_t{kWarpSize} + lane) * kElementsPerVector; k < p.depth; k += kWarps * kVectorSpan) {
    uint4 w[kColumns];
    uint4 x[kRowGroup];
#pragma unroll
    for (int c = 0; c < kColumns; ++c) {
      const int64_t column = firstColumn + c;
      w[c] = column < p.cols ? *reinterpret_cast<const uint4*>(weight + column * p.depth + k) : uint4{0, 0, 0, 0};
    }
#pragma unroll
    for (int r = 0; r < kRowGroup; ++r) {
      const int64_t row = firstRow + r;
      x[r] = row < p.rows ? *reinterpret_cast<const uint4*>(input + row * p.depth + k) : uint4{0, 0, 0, 0};
    }
#pragma unroll
    for (int c = 0; c < kColumns; ++c) {
#pragma unroll
      for (int r = 0; r < kRowGroup; ++r) sums[c][r] = dot8<Element>(w[c], x[r], sums[c][r]);
    }
  }
#pragma unroll
  for (int c = 0; c < kColumns; ++c) {
#pragma unroll
    for (int r = 0; r < kRowGroup; ++r) {
      const float total = warpSum(sums[c][r]);
      if (lane == 0) partials[warp][c][r] = total;
    }
  }
  __syncthreads();
  // One thread per output of the block: the warps' partial sums in warp order, then the bias.
  if (threadIdx.x < kColumns * kRowGroup) {
    const int c = threadIdx.x % kColumns;
    const int r = threadIdx.x / kColumns;
    const int64_t column = firstColumn + c;
    const int64_t row = firstRow + r;
    if (column < p.cols && row < p.rows) {
      float total = 0.0f;
      for (int w = 0; w < kWarps; ++w) total += partials[w][c][r];
      if (p.bias != nullptr) total += loadAsFloat(p.bias, p.biasDType, column);
      storeAsFloat(p.output, p.outputDType, row * p.cols + column, total);
    }
  }
}

}  // namespace

bool supports(const LinearArgs& args) {
  const DType dtype = args.input.dtype;
  if (dtype != DType::BFloat16 && dtype != DType::Float16) return false;
  if (args.weight.dtype != dtype || args.output.dtype == DType::Int32) return false;
  if (args.bias.present() && args.bias.dtype == DType::Int32) return false;
  const int64_t rows = args.input.dim(0);
  const int64_t depth = args.input.dim(1);
  // 16-byte vectors along K from 16-byte aligned rows.
  if (depth % kElementsPerVector != 0 || !aligned16(args.input.data) || !aligned16(args.weight.data)) return false;
  if (rows <= kAlwaysRows) return rows >= 1;
  if (args.weight.dim(0) <= kNarrowCols) return (rows + kRowGroup - 1) / kRowGroup <= kMaxGridRows;
  return rows <= kMaxRows && static_cast<int64_t>(args.weight.nbytes()) <= kMaxCachedWeightBytes;
}

void linear(const LinearArgs& args, cudaStream_t stream) {
  SkinnyProblem p{};
  p.input = args.input.data;
  p.weight = args.weight.data;
  p.bias = args.bias.present() ? args.bias.data : nullptr;
  p.biasDType = args.bias.dtype;
  p.output = args.output.data;
  p.outputDType = args.output.dtype;
  p.rows = args.input.dim(0);
  p.cols = args.weight.dim(0);
  p.depth = args.input.dim(1);
  if (p.rows == 0 || p.cols == 0) return;
  const dim3 grid(static_cast<unsigned>((p.cols + kColumns - 1) / kColumns), static_cast<unsigned>((p.rows + kRowGroup - 1) / kRowGroup));
  if (args.input.dtype == DType::BFloat16) {
    skinnyLinearKernel<BF16><<<grid, kThreads, 0, stream>>>(p);
  } else {
    skinnyLinearKernel<F16><<<grid, kThreads, 0, stream>>>(p);
  }
  MOEKIT_CHECK_LAUNCH("skinnyLinearKernel");
}

}  // namespace moekit::cuda::skinny
