// Routing on the GPU: one warp per token row (routing_row.cuh), one fused kernel for every method.
#include <algorithm>
#include <cstdint>
#include <string>

#include "check.h"
#include "kernels.h"
#include "routing_row.cuh"

namespace moekit::cuda {
namespace {

using namespace routing_row;

// Per-block shared memory we allow ourselves without opting in to the larger carve-out.
constexpr size_t kSharedBudgetBytes = 48 * 1024;
constexpr int kMaxWarpsPerBlock = 8;

template <typename Logit>
__global__ void routingKernel(RoutingParams p) {
  extern __shared__ __align__(16) unsigned char sharedBytes[];
  const int lane = threadIdx.x % kWarpSize;
  const int warp = threadIdx.x / kWarpSize;
  const int warpsPerBlock = blockDim.x / kWarpSize;
  const WarpScratch row = WarpScratch::at(sharedBytes, warp, p.experts, p.numGroups, p.topK);
  const auto* logits = static_cast<const typename Logit::Storage*>(p.logits);
  if (p.zeroesCounts) {
    for (int e = threadIdx.x; e < p.experts; e += blockDim.x) p.expertCounts[e] = 0;
    __syncthreads();  // the block's counting atomics come after every zero
  }

  for (int64_t token = static_cast<int64_t>(blockIdx.x) * warpsPerBlock + warp; token < p.tokens;
       token += static_cast<int64_t>(gridDim.x) * warpsPerBlock) {
    routeRow<Logit>(p, row, logits + token * p.experts, token, lane);
  }
}

// ---- Launch configuration: all of it here ----
struct RoutingLaunch {
  int warpsPerBlock;
  size_t sharedBytes;
  unsigned blocks;
};

RoutingLaunch routingLaunch(const RoutingParams& p) {
  constexpr int64_t kMaxBlocks = 1 << 20;  // rows beyond this are walked by the grid-stride loop
  const size_t perWarp = WarpScratch::bytes(p.experts, p.numGroups, p.topK);
  if (perWarp > kSharedBudgetBytes) {
    throw NativeError("E_INVALID_ARGUMENT", "routing: " + std::to_string(p.experts) +
                                                " experts need more shared memory than one warp may use on the GPU");
  }
  RoutingLaunch launch;
  launch.warpsPerBlock = static_cast<int>(std::min<size_t>(kMaxWarpsPerBlock, kSharedBudgetBytes / perWarp));
  launch.sharedBytes = perWarp * launch.warpsPerBlock;
  launch.blocks = static_cast<unsigned>(std::min<int64_t>((p.tokens + launch.warpsPerBlock - 1) / launch.warpsPerBlock, kMaxBlocks));
  return launch;
}

}  // namespace

void routing(const RoutingArgs& args, cudaStream_t stream) {
  const int64_t tokens = args.logits.dim(0);
  const int32_t experts = static_cast<int32_t>(args.logits.dim(1));
  if (tokens == 0) {
    MOEKIT_CUDA_CHECK(cudaMemsetAsync(args.expertCounts.data, 0, sizeof(int32_t) * experts, stream));
    return;
  }

  RoutingParams params = paramsOf(args, args.logits.data, tokens, experts);
  params.topkIds = args.topkIds.as<int32_t>();
  params.topkWeights = args.topkWeights.as<float>();
  params.expertCounts = args.expertCounts.as<int32_t>();
  const RoutingLaunch launch = routingLaunch(params);
  params.zeroesCounts = launch.blocks == 1;
  if (!params.zeroesCounts) {
    MOEKIT_CUDA_CHECK(cudaMemsetAsync(args.expertCounts.data, 0, sizeof(int32_t) * experts, stream));
  }
  dispatchFloat(args.logits.dtype, "routing logits", [&](auto format) {
    using Logit = decltype(format);
    routingKernel<Logit><<<launch.blocks, launch.warpsPerBlock * kWarpSize, launch.sharedBytes, stream>>>(params);
    MOEKIT_CHECK_LAUNCH("routingKernel");
  });
}

}  // namespace moekit::cuda
