// What the mma family's kernels share. The family (grouped_gemm_paths.h) runs on one tile
// scheduler (row_tiles.cuh: which rows and expert a block owns, bad offsets reported as faults):
//   - dense weights (GemmProblem below; grouped_gemm.cu picks the kernel): bfloat16 / float16
//     through WMMA (grouped_gemm_wmma.cu), float32 and mixed dtypes on SIMT FMAs (grouped_gemm_simt.cu);
//   - register-dequantizing kernels through mma.sync: FP8 block-scaled weights
//     (grouped_gemm_mma_fp8.cu) and Int8 / Int4 / MXFP4 weight-only weights (grouped_gemm_mma_wq.cu).
//
// The mma.sync kernels share the block's warp grid over a 128 × 128 output tile, the cp.async ring
// that streams K slices through shared memory, the slice loader, and the epilogue from the mma
// accumulators. What differs between them is only how a slice turns into mma operands (and, for
// FP8, the per-block scale promotion). The mma instruction and its fragment layout are
// mma_sync.cuh's.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "../core/op_args.h"
#include "async_copy.cuh"
#include "check.h"
#include "faults.cuh"
#include "float_access.cuh"
#include "kernels.h"
#include "per_device.h"
#include "row_tiles.cuh"

namespace moekit::cuda::mma {

// ---- What every problem of the family says about its groups and output -----------------------------
// The tile grid, the epilogue (storeResult) and the fault report read these; each kernel's problem
// adds its operands.
struct GemmShape {
  const void* bias;        // [groups, cols] or nullptr
  DType biasDType;
  void* output;            // [rows, cols]
  DType outputDType;
  const int32_t* offsets;  // [groups + 1] on the device; nullptr: one group of every row (linear)
  int32_t groups;
  int64_t rows;
  int64_t cols;
  int64_t depth;
  FaultSink faults;        // where a bad offset is reported

  // A grouped call's shape (weights [groups, cols, ...], K = `depth`), writing `output`.
  static GemmShape of(const GroupedGemmArgs& args, int64_t depth, void* output, DType outputDType) {
    return GemmShape{args.bias.present() ? args.bias.data : nullptr, args.bias.dtype, output, outputDType,
                     args.expertOffsets.as<int32_t>(), static_cast<int32_t>(args.weights.dim(0)), args.input.dim(0),
                     args.weights.dim(1), depth, FaultSink::of(args)};
  }
};

// ---- Dense weights: the problem and its two kernels -----------------------------------------------
struct GemmProblem : GemmShape {
  const void* input;       // [rows, depth]
  const void* weights;     // [groups, cols, depth]
};

// bfloat16 × bfloat16 or float16 × float16 (`dtype`, both operands), through WMMA
// (grouped_gemm_wmma.cu). Any shape; p.rows and p.cols are not 0.
void wmmaGemm(const GemmProblem& p, DType dtype, cudaStream_t stream);
// Any float input and weight dtypes, with float32 FMAs (grouped_gemm_simt.cu). Any shape; p.rows and
// p.cols are not 0.
void simtGemm(const GemmProblem& p, DType inputDType, DType weightDType, cudaStream_t stream);

// ---- What every kernel of the family shares -------------------------------------------------------
// The epilogue's store: C[row, col] = sum (+ bias[group, col]), in the output's dtype. `Problem` has
// bias, biasDType ([groups, cols] or nullptr), output, outputDType ([rows, cols]) and cols.
template <class Problem>
__device__ void storeResult(const Problem& p, int32_t group, int64_t row, int64_t col, float sum) {
  if (p.bias != nullptr) sum += loadAsFloat(p.bias, p.biasDType, group * p.cols + col);
  storeAsFloat(p.output, p.outputDType, row * p.cols + col, sum);
}

// The family has no fused activation: a call that asks for one multiplies into float32 products
// (stream-ordered scratch) and this finishes the rows the experts own, the contract's "activation
// on the float32 products".
inline void activateProducts(const GroupedGemmArgs& args, const TensorView& products, const int32_t* offsets, int32_t groups,
                             cudaStream_t stream) {
  ActivationArgs act;
  act.input = products;
  act.output = args.output;
  act.kind = args.activation.kind;
  act.layout = args.activation.layout;
  act.alpha = args.activation.alpha;
  act.limit = args.activation.limit;
  activationInRows(act, offsets, groups, stream);
}

// ---- The mma.sync kernels --------------------------------------------------------------------------

// The block's output tile and its warps: 8 warps as 2 × 4, each owning 64 rows × 32 columns,
// i.e. 4 × 4 mma.sync m16n8k16 tiles.
struct WarpGrid {
  static constexpr int kWarpSize = 32;
  static constexpr int kRows = 128;
  static constexpr int kCols = 128;
  static constexpr int kWarpsAlongRows = 2;
  static constexpr int kWarpsAlongCols = 4;
  static constexpr int kThreads = kWarpSize * kWarpsAlongRows * kWarpsAlongCols;
  static constexpr int kWarpRows = kRows / kWarpsAlongRows;  // 64
  static constexpr int kWarpCols = kCols / kWarpsAlongCols;  // 32
  static constexpr int kMmaRows = 16;
  static constexpr int kMmaCols = 8;
  static constexpr int kMmaDepth = 16;
  static constexpr int kRowFragments = kWarpRows / kMmaRows;  // 4
  static constexpr int kColFragments = kWarpCols / kMmaCols;  // 4
  static constexpr int kLanesPerRow = 4;                      // lanes that share a fragment row (c = lane % 4)
  static constexpr int kCopyBytes = 16;                       // cp.async granule
};

// One lane's accumulators: [row fragment][column fragment][register].
using Accumulators = float[WarpGrid::kRowFragments][WarpGrid::kColFragments][4];

// Where a lane sits in the block's warp grid.
struct LanePlace {
  int lane;
  int g;        // lane / 4: the fragment row (A, C) or column (B) it holds
  int c;        // lane % 4: which K positions (A, B) or column pair (C) it holds
  int warpRow;  // the warp's first row in the tile
  int warpCol;  // the warp's first column in the tile

  __device__ static LanePlace ofThread() {
    using Grid = WarpGrid;
    const int warp = threadIdx.x / Grid::kWarpSize;
    const int lane = threadIdx.x % Grid::kWarpSize;
    return LanePlace{lane, lane / Grid::kLanesPerRow, lane % Grid::kLanesPerRow,
                     (warp / Grid::kWarpsAlongCols) * Grid::kWarpRows, (warp % Grid::kWarpsAlongCols) * Grid::kWarpCols};
  }
};

__device__ __forceinline__ uint32_t word(const uint4& vector, int index) {
  return index == 0 ? vector.x : index == 1 ? vector.y : index == 2 ? vector.z : vector.w;
}

// Loads bytes [byteOffset, byteOffset + sliceBytes) of rows [0, tileRows) of a row-major byte
// matrix (rows `rowBytes` apart in global memory) into shared memory, rows `sharedStride` apart;
// zeros at or past `validRows` and `rowBytes`. With kVectorLoads, 16-byte cp.async copies: rowBytes
// a multiple of 16 and a 16-aligned base, so a copy lies wholly inside a row or wholly past it.
template <bool kVectorLoads, int tileRows, int sliceBytes, int sharedStride>
__device__ void loadSlice(uint8_t* shared, const uint8_t* global, int64_t validRows, int64_t rowBytes, int64_t byteOffset) {
  using Grid = WarpGrid;
  if constexpr (kVectorLoads) {
    constexpr int kCopiesPerRow = sliceBytes / Grid::kCopyBytes;
    static_assert(kCopiesPerRow * Grid::kCopyBytes == sliceBytes && sharedStride % Grid::kCopyBytes == 0,
                  "whole, aligned copies");
    for (int copy = threadIdx.x; copy < tileRows * kCopiesPerRow; copy += Grid::kThreads) {
      const int row = copy / kCopiesPerRow;
      const int column = (copy % kCopiesPerRow) * Grid::kCopyBytes;
      const bool valid = row < validRows && byteOffset + column < rowBytes;
      copyAsync16(shared + row * sharedStride + column, valid ? global + row * rowBytes + byteOffset + column : global, valid);
    }
  } else {
    for (int i = threadIdx.x; i < tileRows * sliceBytes; i += Grid::kThreads) {
      const int row = i / sliceBytes;
      const int column = i % sliceBytes;
      const bool valid = row < validRows && byteOffset + column < rowBytes;
      shared[row * sharedStride + column] = valid ? global[row * rowBytes + byteOffset + column] : uint8_t{0};
    }
  }
}

// The K loop's software pipeline: a ring of kStages slices in shared memory, kStages - 1 in flight
// while one is multiplied. loadStage(stage, slice) issues a slice's cp.async copies;
// multiplyStage(stage, slice) consumes it. Every iteration commits one group (empty past the end)
// so that "all but the newest kStages - 2" is always the slice about to be used. Contains
// __syncthreads(): call from every thread.
template <int kStages, class LoadStage, class MultiplyStage>
__device__ __forceinline__ void pipelineSlices(int64_t slices, LoadStage&& loadStage, MultiplyStage&& multiplyStage) {
  static_assert(kStages >= 2, "one slice in flight while another is multiplied");
  for (int stage = 0; stage < kStages - 1; ++stage) {
    if (stage < slices) loadStage(stage, static_cast<int64_t>(stage));
    commitAsyncCopies();
  }
  for (int64_t slice = 0; slice < slices; ++slice) {
    waitAsyncCopies<kStages - 2>();
    __syncthreads();  // the slice is visible to all; every warp is done with the stage refilled next
    const int64_t next = slice + kStages - 1;
    if (next < slices) loadStage(static_cast<int>(next % kStages), next);
    commitAsyncCopies();
    multiplyStage(static_cast<int>(slice % kStages), slice);
  }
}

// Epilogue: bias and the output dtype, straight from the registers (storeResult's `Problem`).
template <class Problem>
__device__ void storeAccumulators(const Problem& p, const RowTile& tile, int64_t colBegin, const LanePlace& at,
                                  const Accumulators& total) {
  using Grid = WarpGrid;
#pragma unroll
  for (int i = 0; i < Grid::kRowFragments; ++i) {
#pragma unroll
    for (int r = 0; r < 4; ++r) {
      const int64_t row = tile.begin + at.warpRow + i * Grid::kMmaRows + (r / 2) * (Grid::kMmaRows / 2) + at.g;
      if (row >= tile.end) continue;
#pragma unroll
      for (int j = 0; j < Grid::kColFragments; ++j) {
        const int64_t col = colBegin + at.warpCol + j * Grid::kMmaCols + 2 * at.c + r % 2;
        if (col < p.cols) storeResult(p, tile.group, row, col, total[i][j][r]);
      }
    }
  }
}

// Raises a kernel's dynamic shared-memory limit past the default 48 KB, once per device.
template <typename Kernel>
void allowSharedMemory(Kernel kernel, int bytes, PerDevice<bool>& raised) {
  raised.get([&](int) {
    MOEKIT_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes));
    return true;
  });
}

}  // namespace moekit::cuda::mma
