// The persistent kernel's tile scheduler. Work is a list of output tiles (expert, row tile,
// column tile) that only the device can enumerate, because the expert offsets live there. Each
// CTA therefore starts by turning the offsets into a per-expert prefix sum of tile counts in
// shared memory (one warp, 32 experts per step); a linear tile index then maps to its tile by a
// binary search over that prefix. CTAs take indices blockIdx.x, blockIdx.x + gridDim.x, ...; the
// producer and the consumers walk the same sequence independently.
//
// Order within an expert (what runs together shares operands in L2): row tiles are cut into
// bands of `bandRowTiles` (kBandRowTiles by default); a band is swept column tile by column
// tile, row tiles fastest. The
// ~132 tiles in flight then read a band's rows of A (which stay hot for the whole sweep) and a
// few weight tiles, each weight tile fetched once per band rather than once per row tile.
#pragma once

#include <cstdint>

#include "../expert_offsets.cuh"
#include "arch.h"

namespace moekit::cuda::sm90 {

constexpr int kMaxExperts = 1024;  // supports() refuses more
constexpr int kBandRowTiles = 16;  // not yet tuned: gemm_sm90_bench --band N times other heights

// Per expert: its clamped row range and the index of its first tile; firstTile[experts] is the
// total. Built once per CTA.
struct ExpertTiles {
  int32_t rowBegin[kMaxExperts];
  int32_t rowEnd[kMaxExperts];
  int32_t firstTile[kMaxExperts + 1];
};

// One output tile: rows [rowStart, min(rowStart + blockM, rowEnd)) of `expert`, column tile
// `columnTile`. Rows from rowEnd on belong to the next expert (or to nobody) and are not stored.
struct Tile {
  int32_t expert;
  int32_t rowStart;
  int32_t rowEnd;
  int32_t columnTile;
};

#if MOEKIT_SM90A_DEVICE

namespace detail {
constexpr int kWarpSize = 32;
constexpr unsigned kFullWarp = 0xffffffffu;

__device__ __forceinline__ int32_t warpInclusiveSum(int32_t value, int lane) {
#pragma unroll
  for (int offset = 1; offset < kWarpSize; offset *= 2) {
    const int32_t neighbour = __shfl_up_sync(kFullWarp, value, offset);
    if (lane >= offset) value += neighbour;
  }
  return value;
}
}  // namespace detail

// Called by one whole warp. Offsets are clamped and reported like the other families do
// (expert_offsets.cuh), so a bad offsets tensor cannot reach outside the input or output. Without
// offsets (nullptr: a dense linear) the one expert owns every row.
template <int blockM>
__device__ void buildExpertTiles(ExpertTiles& tiles, const int32_t* offsets, int32_t experts, int32_t rows,
                                 int32_t columnTiles, const FaultSink& faults, int lane) {
  int32_t before = 0;
  for (int32_t base = 0; base < experts; base += detail::kWarpSize) {
    const int32_t expert = base + lane;
    int32_t count = 0;
    if (expert < experts) {
      int32_t begin = 0, end = rows;
      if (offsets != nullptr) expertRowRange(offsets, expert, rows, faults, &begin, &end);
      tiles.rowBegin[expert] = begin;
      tiles.rowEnd[expert] = end;
      count = (end - begin + blockM - 1) / blockM * columnTiles;
    }
    const int32_t inclusive = detail::warpInclusiveSum(count, lane);
    if (expert < experts) tiles.firstTile[expert] = before + inclusive - count;
    before += __shfl_sync(detail::kFullWarp, inclusive, detail::kWarpSize - 1);
  }
  if (lane == 0) tiles.firstTile[experts] = before;
}

template <int blockM>
class TileScheduler {
 public:
  __device__ TileScheduler(const ExpertTiles& tiles, int32_t experts, int32_t columnTiles, int32_t bandRowTiles)
      : tiles_(tiles), experts_(experts), columnTiles_(columnTiles), bandRowTiles_(bandRowTiles) {}

  __device__ int32_t tileCount() const { return tiles_.firstTile[experts_]; }

  __device__ Tile locate(int32_t index) const {
    // The expert with firstTile[e] <= index < firstTile[e + 1] (an empty expert has
    // firstTile[e] == firstTile[e + 1], so it is never the answer).
    int32_t low = 0, high = experts_;
    while (high - low > 1) {
      const int32_t middle = (low + high) / 2;
      if (tiles_.firstTile[middle] <= index) {
        low = middle;
      } else {
        high = middle;
      }
    }
    const int32_t expert = low;
    const int32_t local = index - tiles_.firstTile[expert];
    const int32_t begin = tiles_.rowBegin[expert];
    const int32_t end = tiles_.rowEnd[expert];
    const int32_t rowTiles = (end - begin + blockM - 1) / blockM;
    const int32_t bandStart = local / (bandRowTiles_ * columnTiles_) * bandRowTiles_;
    const int32_t bandHeight = min(bandRowTiles_, rowTiles - bandStart);
    const int32_t inBand = local - bandStart * columnTiles_;
    const int32_t rowTile = bandStart + inBand % bandHeight;
    return Tile{expert, begin + rowTile * blockM, end, inBand / bandHeight};
  }

 private:
  const ExpertTiles& tiles_;
  int32_t experts_;
  int32_t columnTiles_;
  int32_t bandRowTiles_;
};

#endif  // MOEKIT_SM90A_DEVICE

}  // namespace moekit::cuda::sm90
