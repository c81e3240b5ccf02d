// A grouped GEMM's gathered rows copied out into scratch (row_gather.cuh, GatheredInput), for the
// kernel families that read their rows in place. One warp per row of the [M, K] copy: rows inside
// [offsets[0], offsets[E]) get their gathered row, every other row (and a row whose index is bad)
// zeros, so the copy holds nothing the pool left there.
#include <algorithm>

#include "check.h"
#include "flat_launch.h"
#include "row_copy.cuh"
#include "row_gather.cuh"

namespace moekit::cuda {
namespace {

constexpr unsigned kFullWarp = 0xffffffffu;
constexpr int kWarpsPerBlock = FlatLaunch::kThreads / kRowCopyWarpSize;

// The rows the experts own, [offsets[0], offsets[E]) clamped into [0, rows] (the GEMM itself
// checks and reports the offsets); every row without offsets.
struct UsedRows {
  const int32_t* offsets;
  int32_t experts;
  int64_t rows;

  __device__ bool contains(int64_t row) const {
    if (offsets == nullptr) return row < rows;
    const int64_t first = min(max(static_cast<int64_t>(offsets[0]), int64_t{0}), rows);
    const int64_t last = min(max(static_cast<int64_t>(offsets[experts]), first), rows);
    return row >= first && row < last;
  }
};

template <typename Unit>
__global__ void gatherInputKernel(const Unit* input, int64_t unitsPerRow, RowGather gather, UsedRows used, Unit* copy) {
  const int lane = threadIdx.x % kRowCopyWarpSize;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * kWarpsPerBlock;
  for (int64_t row = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kRowCopyWarpSize; row < used.rows;
       row += warps) {
    // One lane reads (and checks) the index; the warp copies.
    int64_t source = -1;
    if (lane == 0 && used.contains(row)) source = gather.source(row);
    source = __shfl_sync(kFullWarp, source, 0);
    Unit* destination = copy + row * unitsPerRow;
    if (source >= 0) {
      copyRowByWarp(input + source * unitsPerRow, destination, unitsPerRow, lane);
    } else {
      zeroRowByWarp(destination, unitsPerRow, lane);
    }
  }
}

// The copy's bytes: M rows of the input's width.
size_t gatheredBytes(const GroupedGemmArgs& args) {
  return static_cast<size_t>(gemmRows(args)) * static_cast<size_t>(args.input.dim(1)) * dtypeSize(args.input.dtype);
}

}  // namespace

GatheredInput::GatheredInput(const GroupedGemmArgs& args, cudaStream_t stream)
    : scratch_(gatheredBytes(args), stream), args_(args) {
  const int64_t rows = gemmRows(args);
  const int64_t depth = args.input.dim(1);
  const size_t rowBytes = static_cast<size_t>(depth) * dtypeSize(args.input.dtype);
  const RowGather gather = RowGather::of(args);
  const UsedRows used{args.expertOffsets.as<int32_t>(), static_cast<int32_t>(args.weights.dim(0)), rows};
  dispatchCopyUnit(rowBytes, args.input.data, scratch_.data(), [&](auto unit) {
    using Unit = decltype(unit);
    gatherInputKernel<Unit><<<FlatLaunch::blocks(rows, kWarpsPerBlock), FlatLaunch::kThreads, 0, stream>>>(
        static_cast<const Unit*>(args.input.data), static_cast<int64_t>(rowBytes / sizeof(Unit)), gather, used,
        static_cast<Unit*>(scratch_.data()));
    MOEKIT_CHECK_LAUNCH("gatherInputKernel");
  });
  args_.input = TensorView{scratch_.data(), args.input.dtype, {rows, depth}};
  args_.gatherRows = TensorView{};
  args_.gatherDivisor = 1;
}

}  // namespace moekit::cuda
