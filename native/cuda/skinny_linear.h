// Linear for a few rows (skinny_linear.cu): the router's projection at decode. linear()
// (grouped_gemm.cu) takes this path for up to kMaxRows rows of bfloat16/float16, or any number
// of rows when there are at most kNarrowCols outputs; weights over kMaxCachedWeightBytes for at
// most 16 rows (a shared expert at decode) go to small_m instead, which streams them faster.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "../core/op_args.h"

namespace moekit::cuda::skinny {

// The skinny kernel reads the weights once per 8 rows. Up to kAlwaysRows rows that is at most
// twice; up to kMaxRows rows it is taken only for weights small enough to stay in L2 between
// those reads (a router's: N = experts), where the tile kernel would leave the GPU idle.
constexpr int64_t kAlwaysRows = 16;
constexpr int64_t kMaxRows = 64;
constexpr int64_t kMaxCachedWeightBytes = int64_t{16} << 20;
// A projection to at most kNarrowCols outputs (Mixtral's router: 8) reads each input row
// kNarrowCols / 4 times whatever the row count, and no tile kernel fills the GPU with so few
// columns: this path takes any number of rows then, up to the grid's reach.
constexpr int64_t kNarrowCols = 16;

bool supports(const LinearArgs& args);
void linear(const LinearArgs& args, cudaStream_t stream);

}  // namespace moekit::cuda::skinny
