// The mma family's kernel for float32 weights or inputs and mixed input/weight dtypes: float32 FMAs
// on the SIMT cores, no TF32, so float32 results match the CPU.
//
// 128×128×8 block tiles, 8×8 results per thread, the next K slice prefetched into registers while
// the current one is multiplied. The grid is the family's tile scheduler (row_tiles.cuh); each
// output element's K sum runs in a fixed order, so results are deterministic run to run.
#include <cstdint>

#include "grouped_gemm_mma.cuh"

namespace moekit::cuda::mma {
namespace {

struct SimtTile {
  static constexpr int kRows = 128;
  static constexpr int kCols = 128;
  static constexpr int kDepth = 8;
  static constexpr int kThreads = 256;
  static constexpr int kThreadsAlongCols = 16;  // threads form a 16 × 16 grid
  // Each thread owns a 4×4 patch in each quadrant's half: rows {r, r + 64} × cols {c, c + 64}
  // blocks of 4, read from shared memory as float4.
  static constexpr int kVector = 4;
  static constexpr int kHalf = 64;
  static constexpr int kResultsPerThread = 2 * kVector;  // along rows and along cols
  // Shared slices are stored transposed ([k][row]) so a thread's 4 rows are one float4; +4 floats
  // per row keeps float4 alignment and puts the two halves of a load warp in different banks.
  static constexpr int kStride = kRows + 4;
  // Global → shared: each thread moves kLoadsPerThread consecutive K values of one row.
  static constexpr int kLoadsPerThread = kRows * kDepth / kThreads;  // 4
  static constexpr int kLoadersPerRow = kDepth / kLoadsPerThread;    // 2
};
static_assert(SimtTile::kRows == SimtTile::kCols, "one loader layout serves both operands");

// Registers holding one thread's share of a [kRows, kDepth] slice in float32.
struct SimtSlice {
  float values[SimtTile::kLoadsPerThread];
};

template <typename Format>
__device__ SimtSlice loadSimtSlice(const typename Format::Storage* global, int64_t validRows, int64_t depth, int64_t k0) {
  using Tile = SimtTile;
  const int row = threadIdx.x / Tile::kLoadersPerRow;
  const int64_t k = k0 + (threadIdx.x % Tile::kLoadersPerRow) * Tile::kLoadsPerThread;
  SimtSlice slice;
  for (int i = 0; i < Tile::kLoadsPerThread; ++i) {
    const bool valid = row < validRows && k + i < depth;
    slice.values[i] = valid ? Format::load(global[row * depth + k + i]) : 0.0f;
  }
  return slice;
}

__device__ void storeSimtSlice(float* shared, const SimtSlice& slice) {
  using Tile = SimtTile;
  const int row = threadIdx.x / Tile::kLoadersPerRow;
  const int k = (threadIdx.x % Tile::kLoadersPerRow) * Tile::kLoadsPerThread;
  for (int i = 0; i < Tile::kLoadsPerThread; ++i) shared[(k + i) * Tile::kStride + row] = slice.values[i];
}

// The 8 rows (or columns) a thread owns, as offsets inside the tile.
__device__ int simtOwned(int threadCoordinate, int i) {
  using Tile = SimtTile;
  return (i < Tile::kVector ? 0 : Tile::kHalf) + threadCoordinate * Tile::kVector + i % Tile::kVector;
}

__device__ void loadOwned(const float* sharedRow, int threadCoordinate, float (&values)[SimtTile::kResultsPerThread]) {
  using Tile = SimtTile;
  const float4 low = *reinterpret_cast<const float4*>(sharedRow + threadCoordinate * Tile::kVector);
  const float4 high = *reinterpret_cast<const float4*>(sharedRow + Tile::kHalf + threadCoordinate * Tile::kVector);
  values[0] = low.x, values[1] = low.y, values[2] = low.z, values[3] = low.w;
  values[4] = high.x, values[5] = high.y, values[6] = high.z, values[7] = high.w;
}

template <typename InputFormat, typename WeightFormat>
__global__ void __launch_bounds__(SimtTile::kThreads) simtGemmKernel(GemmProblem p) {
  using Tile = SimtTile;
  __shared__ __align__(16) float sharedA[2][Tile::kDepth * Tile::kStride];
  __shared__ __align__(16) float sharedB[2][Tile::kDepth * Tile::kStride];

  RowTile tile;
  if (!blockRowTile(p, Tile::kRows, &tile)) return;
  const int64_t colBegin = static_cast<int64_t>(blockIdx.y) * Tile::kCols;
  const auto* a = static_cast<const typename InputFormat::Storage*>(p.input) + tile.begin * p.depth;
  const auto* b = static_cast<const typename WeightFormat::Storage*>(p.weights) +
                  (static_cast<int64_t>(tile.group) * p.cols + colBegin) * p.depth;
  const int64_t validRows = tile.end - tile.begin;
  const int64_t validCols = min(static_cast<int64_t>(Tile::kCols), p.cols - colBegin);
  const int threadRow = threadIdx.x / Tile::kThreadsAlongCols;
  const int threadCol = threadIdx.x % Tile::kThreadsAlongCols;

  float sums[Tile::kResultsPerThread][Tile::kResultsPerThread] = {};
  int stage = 0;
  if (p.depth > 0) {
    storeSimtSlice(sharedA[0], loadSimtSlice<InputFormat>(a, validRows, p.depth, 0));
    storeSimtSlice(sharedB[0], loadSimtSlice<WeightFormat>(b, validCols, p.depth, 0));
  }
  __syncthreads();
  for (int64_t k0 = 0; k0 < p.depth; k0 += Tile::kDepth) {
    // Issue the next slice's global loads first; their latency hides behind this slice's FMAs.
    const bool hasNext = k0 + Tile::kDepth < p.depth;
    SimtSlice nextA, nextB;
    if (hasNext) {
      nextA = loadSimtSlice<InputFormat>(a, validRows, p.depth, k0 + Tile::kDepth);
      nextB = loadSimtSlice<WeightFormat>(b, validCols, p.depth, k0 + Tile::kDepth);
    }
#pragma unroll
    for (int k = 0; k < Tile::kDepth; ++k) {
      float aValues[Tile::kResultsPerThread], bValues[Tile::kResultsPerThread];
      loadOwned(sharedA[stage] + k * Tile::kStride, threadRow, aValues);
      loadOwned(sharedB[stage] + k * Tile::kStride, threadCol, bValues);
      for (int i = 0; i < Tile::kResultsPerThread; ++i) {
        for (int j = 0; j < Tile::kResultsPerThread; ++j) sums[i][j] = fmaf(aValues[i], bValues[j], sums[i][j]);
      }
    }
    if (hasNext) {
      // The other buffer was last read before the previous __syncthreads(): safe to overwrite.
      storeSimtSlice(sharedA[stage ^ 1], nextA);
      storeSimtSlice(sharedB[stage ^ 1], nextB);
    }
    __syncthreads();
    stage ^= 1;
  }

#pragma unroll
  for (int i = 0; i < Tile::kResultsPerThread; ++i) {
    const int64_t row = tile.begin + simtOwned(threadRow, i);
    if (row >= tile.end) continue;
#pragma unroll
    for (int j = 0; j < Tile::kResultsPerThread; ++j) {
      const int64_t col = colBegin + simtOwned(threadCol, j);
      if (col < p.cols) storeResult(p, tile.group, row, col, sums[i][j]);
    }
  }
}

}  // namespace

void simtGemm(const GemmProblem& p, DType inputDType, DType weightDType, cudaStream_t stream) {
  const dim3 grid = rowTileGrid(p, SimtTile::kRows, SimtTile::kCols);
  dispatchFloat(inputDType, "gemm input", [&](auto inputFormat) {
    dispatchFloat(weightDType, "gemm weights", [&](auto weightFormat) {
      simtGemmKernel<decltype(inputFormat), decltype(weightFormat)><<<grid, SimtTile::kThreads, 0, stream>>>(p);
      MOEKIT_CHECK_LAUNCH("simtGemmKernel");
    });
  });
}

}  // namespace moekit::cuda::mma
