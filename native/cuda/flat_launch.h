// The launch shape of every flat kernel: a 1-D grid of kThreads-thread blocks whose threads (or
// warps, or whole blocks) walk the items with a grid-stride loop, `i += gridDim.x * ...`. Because
// the loop covers whatever the grid does not, the grid can stop at kMaxBlocks: enough blocks to
// fill any GPU several times over, far below gridDim.x's limit (2^31 - 1), so that a huge int64
// count neither overflows the grid nor launches blocks that would each do almost nothing.
//
//   kernel<<<FlatLaunch::blocks(count), FlatLaunch::kThreads, 0, stream>>>(...);
//   MOEKIT_CHECK_LAUNCH("kernel");
//
// Kernels that index without a grid-stride loop (one block per row, 2-D grids) need an exact grid
// and size it themselves.
#pragma once

#include <algorithm>
#include <cstdint>

#include "../core/host_device.h"

namespace moekit::cuda {

struct FlatLaunch {
  static constexpr int kThreads = 256;
  static constexpr int64_t kMaxBlocks = int64_t{1} << 16;

  // Blocks for `items` when a block takes `itemsPerBlock` of them per pass of its loop: kThreads
  // (the default) for one item per thread, kThreads / 32 for one per warp, 1 for one per block.
  // At least one block, so that a count of 0 still launches (and the kernel does nothing).
  static unsigned blocks(int64_t items, int64_t itemsPerBlock = kThreads) {
    return static_cast<unsigned>(std::clamp<int64_t>(ceilDiv(items, itemsPerBlock), 1, kMaxBlocks));
  }
};

}  // namespace moekit::cuda
