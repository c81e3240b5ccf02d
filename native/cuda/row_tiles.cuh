// The mma family's tile scheduler (all its kernels: grouped_gemm_mma.cuh): one block per
// (row tile, column tile), row tiles never straddling two experts. The expert offsets live on the
// device (and the op must be capturable in a CUDA graph, so no host read-back): the host sizes the
// grid for the worst case, ceil(rows / tileRows) + experts row tiles, and each block's first warp
// finds its expert by scanning the offsets; blocks past the last real tile exit at once.
//
// `Problem` is any struct with `offsets` (device int32 [groups + 1], or nullptr: one group of every
// row), `groups`, `rows` and `faults` (where a bad offset is reported).
#pragma once

#include <cuda_runtime.h>

#include <climits>
#include <cstdint>
#include <string>

#include "../core/errors.h"
#include "expert_offsets.cuh"

namespace moekit::cuda {

namespace row_tiles_detail {
constexpr int kWarpSize = 32;
constexpr unsigned kFullWarp = 0xffffffffu;
// gridDim.y (column tiles) is limited to 65535 blocks.
constexpr int64_t kMaxColumnTiles = 65535;

__device__ inline int64_t warpInclusiveSum(int64_t value, int lane) {
  for (int offset = 1; offset < kWarpSize; offset *= 2) {
    const int64_t neighbour = __shfl_up_sync(kFullWarp, value, offset);
    if (lane >= offset) value += neighbour;
  }
  return value;
}
}  // namespace row_tiles_detail

// A block's rows: [begin, end) of `group`, at most one tile high.
struct RowTile {
  int32_t group;
  int64_t begin;
  int64_t end;
};

// Called by one whole warp: finds row tile `tileIndex` (experts in order, each cut into tiles of
// tileRows). Returns false when there are fewer tiles. Thirty-two experts are examined per step:
// each lane counts one expert's tiles and a warp prefix sum places them.
template <class Problem>
__device__ bool findRowTile(const Problem& p, int tileRows, int64_t tileIndex, int lane, RowTile* tile) {
  using namespace row_tiles_detail;
  if (p.offsets == nullptr) {
    const int64_t begin = tileIndex * tileRows;
    *tile = RowTile{0, begin, min(begin + tileRows, p.rows)};
    return begin < p.rows;
  }
  int64_t tilesBefore = 0;
  for (int32_t base = 0; base < p.groups; base += kWarpSize) {
    const int32_t group = base + lane;
    int64_t begin = 0, end = 0;
    if (group < p.groups) expertRowRange(p.offsets, group, p.rows, p.faults, &begin, &end);
    const int64_t tiles = (end - begin + tileRows - 1) / tileRows;
    const int64_t inclusive = warpInclusiveSum(tiles, lane);
    const int64_t first = tilesBefore + inclusive - tiles;
    const unsigned owners = __ballot_sync(kFullWarp, tileIndex >= first && tileIndex < first + tiles);
    if (owners != 0) {
      const int owner = __ffs(owners) - 1;
      const int64_t ownerBegin = __shfl_sync(kFullWarp, begin, owner);
      const int64_t ownerEnd = __shfl_sync(kFullWarp, end, owner);
      const int64_t ownerFirst = __shfl_sync(kFullWarp, first, owner);
      const int64_t rowBegin = ownerBegin + (tileIndex - ownerFirst) * tileRows;
      *tile = RowTile{base + owner, rowBegin, min(rowBegin + tileRows, ownerEnd)};
      return true;
    }
    tilesBefore += __shfl_sync(kFullWarp, inclusive, kWarpSize - 1);
  }
  return false;
}

// The block's row tile (blockIdx.x), found by warp 0 and shared through shared memory. Contains
// __syncthreads(): call from every thread.
template <class Problem>
__device__ bool blockRowTile(const Problem& p, int tileRows, RowTile* tile) {
  __shared__ RowTile sharedTile;
  __shared__ bool sharedFound;
  if (threadIdx.x < row_tiles_detail::kWarpSize) {
    RowTile found;
    const bool any = findRowTile(p, tileRows, blockIdx.x, threadIdx.x, &found);
    if (threadIdx.x == 0) {
      sharedTile = found;
      sharedFound = any;
    }
  }
  __syncthreads();
  *tile = sharedTile;
  return sharedFound;
}

// The grid: every possible row tile (whatever the offsets say) × the column tiles.
template <class Problem>
dim3 rowTileGrid(const Problem& p, int tileRows, int tileCols) {
  // Worst case over any split of rows among groups: each group wastes at most one partial tile.
  const int64_t rowTiles = (p.rows + tileRows - 1) / tileRows + (p.offsets != nullptr ? p.groups : 0);
  const int64_t colTiles = (p.cols + tileCols - 1) / tileCols;
  if (rowTiles > INT_MAX || colTiles > row_tiles_detail::kMaxColumnTiles) {
    throw NativeError("E_INVALID_ARGUMENT", "gemm: " + std::to_string(p.rows) + " x " + std::to_string(p.cols) +
                                                " outputs exceed the CUDA grid limits");
  }
  return dim3(static_cast<unsigned>(rowTiles), static_cast<unsigned>(colTiles));
}

}  // namespace moekit::cuda
