// The mma family's 16-bit kernel: bfloat16 × bfloat16 or float16 × float16 on tensor cores through
// the WMMA API (nvcuda::wmma: 16×16×16 fragments, float32 accumulation), sm_80 and up. The family's
// FP8 and weight-only kernels use mma.sync instead (grouped_gemm_mma_fp8.cu, grouped_gemm_mma_wq.cu).
//
// 128×128×32 block tiles, double-buffered in shared memory by cp.async. Rows of 16 bytes are
// copied asynchronously when K % 8 == 0 and the bases are 16-byte aligned; other shapes fall back
// to element-wise copies into the same tiles. The grid is the family's tile scheduler
// (row_tiles.cuh); each output element's K sum runs in a fixed order, so results are deterministic
// run to run.
#include <mma.h>

#include <cstdint>

#include "alignment.h"
#include "grouped_gemm_mma.cuh"

namespace moekit::cuda::mma {
namespace {

namespace wmma = nvcuda::wmma;

constexpr int kWarpSize = 32;

struct WmmaTile {
  static constexpr int kRows = 128;  // rows of A (tokens) per block
  static constexpr int kCols = 128;  // rows of B (output features) per block
  static constexpr int kDepth = 32;  // K per pipeline stage
  static constexpr int kStages = 2;
  static constexpr int kWarpsAlongRows = 2;
  static constexpr int kWarpsAlongCols = 4;
  static constexpr int kThreads = kWarpSize * kWarpsAlongRows * kWarpsAlongCols;
  static constexpr int kFragment = 16;  // WMMA m = n = k
  static constexpr int kWarpRows = kRows / kWarpsAlongRows;
  static constexpr int kWarpCols = kCols / kWarpsAlongCols;
  static constexpr int kFragmentsAlongRows = kWarpRows / kFragment;
  static constexpr int kFragmentsAlongCols = kWarpCols / kFragment;
  // Shared-memory rows are kDepth + 8 elements (80 bytes): still 16-byte aligned for cp.async and
  // a multiple of 8 for WMMA, while consecutive rows start in different banks.
  static constexpr int kStride = kDepth + 8;
  static constexpr int kElementsPerCopy = 8;  // 16 bytes of 16-bit values
  static constexpr int kStageElements = (kRows + kCols) * kStride;
  static constexpr int kEpilogueFloatsPerWarp = kFragment * kFragment;
};

// Loads a [tileRows, kDepth] slice of a K-contiguous matrix into shared memory (row stride
// kStride), zero-filling rows at or past `validRows` and columns at or past `depth`.
template <bool kVectorLoads, int tileRows, typename T>
__device__ void loadTileSlice(T* shared, const T* global, int64_t validRows, int64_t depth, int64_t k0) {
  using Tile = WmmaTile;
  if constexpr (kVectorLoads) {
    constexpr int kCopiesPerRow = Tile::kDepth / Tile::kElementsPerCopy;
    for (int copy = threadIdx.x; copy < tileRows * kCopiesPerRow; copy += Tile::kThreads) {
      const int row = copy / kCopiesPerRow;
      const int column = (copy % kCopiesPerRow) * Tile::kElementsPerCopy;
      const bool valid = row < validRows && k0 + column < depth;  // depth % 8 == 0: all or nothing
      const T* source = valid ? global + row * depth + k0 + column : global;
      copyAsync16(shared + row * Tile::kStride + column, source, valid);
    }
  } else {
    // Any K: element by element through registers (bit copies; zero is all-zero bits).
    const auto* source = reinterpret_cast<const uint16_t*>(global);
    auto* destination = reinterpret_cast<uint16_t*>(shared);
    for (int i = threadIdx.x; i < tileRows * Tile::kDepth; i += Tile::kThreads) {
      const int row = i / Tile::kDepth;
      const int column = i % Tile::kDepth;
      const bool valid = row < validRows && k0 + column < depth;
      destination[row * Tile::kStride + column] = valid ? source[row * depth + k0 + column] : uint16_t{0};
    }
  }
}

template <typename Element, bool kVectorLoads>
__global__ void __launch_bounds__(WmmaTile::kThreads) wmmaGemmKernel(GemmProblem p) {
  using Tile = WmmaTile;
  using T = typename Element::Storage;
  __shared__ __align__(128) T shared[Tile::kStages * Tile::kStageElements];
  static_assert(sizeof(shared) >= sizeof(float) * Tile::kEpilogueFloatsPerWarp * (Tile::kThreads / kWarpSize),
                "the epilogue reuses the pipeline's shared memory");

  RowTile tile;
  if (!blockRowTile(p, Tile::kRows, &tile)) return;
  const int64_t colBegin = static_cast<int64_t>(blockIdx.y) * Tile::kCols;
  const int warp = threadIdx.x / kWarpSize;
  const int lane = threadIdx.x % kWarpSize;
  const int warpRow = (warp / Tile::kWarpsAlongCols) * Tile::kWarpRows;
  const int warpCol = (warp % Tile::kWarpsAlongCols) * Tile::kWarpCols;

  const T* a = static_cast<const T*>(p.input) + tile.begin * p.depth;
  const T* b = static_cast<const T*>(p.weights) + (static_cast<int64_t>(tile.group) * p.cols + colBegin) * p.depth;
  const int64_t validRows = tile.end - tile.begin;
  const int64_t validCols = min(static_cast<int64_t>(Tile::kCols), p.cols - colBegin);
  const auto stageA = [&](int stage) { return shared + stage * Tile::kStageElements; };
  const auto stageB = [&](int stage) { return shared + stage * Tile::kStageElements + Tile::kRows * Tile::kStride; };
  const auto loadStage = [&](int stage, int64_t k0) {
    loadTileSlice<kVectorLoads, Tile::kRows>(stageA(stage), a, validRows, p.depth, k0);
    loadTileSlice<kVectorLoads, Tile::kCols>(stageB(stage), b, validCols, p.depth, k0);
    commitAsyncCopies();
  };

  wmma::fragment<wmma::accumulator, Tile::kFragment, Tile::kFragment, Tile::kFragment, float>
      accumulators[Tile::kFragmentsAlongRows][Tile::kFragmentsAlongCols];
#pragma unroll
  for (auto& row : accumulators) {
#pragma unroll
    for (auto& fragment : row) wmma::fill_fragment(fragment, 0.0f);
  }

  const int64_t slices = (p.depth + Tile::kDepth - 1) / Tile::kDepth;
  if (slices > 0) loadStage(0, 0);
  for (int64_t slice = 0; slice < slices; ++slice) {
    const int stage = static_cast<int>(slice % Tile::kStages);
    // Start the next slice's copy into the other buffer (freed by the __syncthreads() that ended
    // the previous iteration), then wait only for this slice's copy.
    if (slice + 1 < slices) {
      loadStage((stage + 1) % Tile::kStages, (slice + 1) * Tile::kDepth);
      waitAsyncCopies<1>();
    } else {
      waitAsyncCopies<0>();
    }
    __syncthreads();

    const T* sharedA = stageA(stage);
    const T* sharedB = stageB(stage);
#pragma unroll
    for (int k = 0; k < Tile::kDepth; k += Tile::kFragment) {
      wmma::fragment<wmma::matrix_a, Tile::kFragment, Tile::kFragment, Tile::kFragment, T, wmma::row_major>
          aFragments[Tile::kFragmentsAlongRows];
      // B is stored [N][K], i.e. the K × N operand in column-major order.
      wmma::fragment<wmma::matrix_b, Tile::kFragment, Tile::kFragment, Tile::kFragment, T, wmma::col_major>
          bFragments[Tile::kFragmentsAlongCols];
#pragma unroll
      for (int i = 0; i < Tile::kFragmentsAlongRows; ++i) {
        wmma::load_matrix_sync(aFragments[i], sharedA + (warpRow + i * Tile::kFragment) * Tile::kStride + k, Tile::kStride);
      }
#pragma unroll
      for (int j = 0; j < Tile::kFragmentsAlongCols; ++j) {
        wmma::load_matrix_sync(bFragments[j], sharedB + (warpCol + j * Tile::kFragment) * Tile::kStride + k, Tile::kStride);
      }
#pragma unroll
      for (int i = 0; i < Tile::kFragmentsAlongRows; ++i) {
#pragma unroll
        for (int j = 0; j < Tile::kFragmentsAlongCols; ++j) {
          wmma::mma_sync(accumulators[i][j], aFragments[i], bFragments[j], accumulators[i][j]);
        }
      }
    }
    __syncthreads();  // every warp is done with this stage before it is refilled
  }

  // Epilogue: each warp parks one 16×16 accumulator at a time in its own shared-memory patch and
  // writes it out with bounds checks, bias and the output dtype.
  float* patch = reinterpret_cast<float*>(shared) + warp * Tile::kEpilogueFloatsPerWarp;
  constexpr int kColumnsPerLane = Tile::kFragment * Tile::kFragment / kWarpSize;  // 8
  const int patchRow = lane / (Tile::kFragment / kColumnsPerLane);
  const int patchCol = (lane % (Tile::kFragment / kColumnsPerLane)) * kColumnsPerLane;
#pragma unroll
  for (int i = 0; i < Tile::kFragmentsAlongRows; ++i) {
#pragma unroll
    for (int j = 0; j < Tile::kFragmentsAlongCols; ++j) {
      wmma::store_matrix_sync(patch, accumulators[i][j], Tile::kFragment, wmma::mem_row_major);
      __syncwarp();
      const int64_t row = tile.begin + warpRow + i * Tile::kFragment + patchRow;
      const int64_t colStart = colBegin + warpCol + j * Tile::kFragment + patchCol;
      if (row < tile.end) {
        for (int c = 0; c < kColumnsPerLane; ++c) {
          if (colStart + c < p.cols) storeResult(p, tile.group, row, colStart + c, patch[patchRow * Tile::kFragment + patchCol + c]);
        }
      }
      __syncwarp();  // the patch is overwritten by the next fragment
    }
  }
}

}  // namespace

void wmmaGemm(const GemmProblem& p, DType dtype, cudaStream_t stream) {
  const dim3 grid = rowTileGrid(p, WmmaTile::kRows, WmmaTile::kCols);
  const bool vectorLoads = p.depth % WmmaTile::kElementsPerCopy == 0 && aligned16(p.input) && aligned16(p.weights);
  const auto launch = [&](auto format) {
    using Element = decltype(format);
    if (vectorLoads) {
      wmmaGemmKernel<Element, true><<<grid, WmmaTile::kThreads, 0, stream>>>(p);
    } else {
      wmmaGemmKernel<Element, false><<<grid, WmmaTile::kThreads, 0, stream>>>(p);
    }
    MOEKIT_CHECK_LAUNCH("wmmaGemmKernel");
  };
  if (dtype == DType::BFloat16) launch(BF16{});
  else launch(F16{});
}

}  // namespace moekit::cuda::mma
