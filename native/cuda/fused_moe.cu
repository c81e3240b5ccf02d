// The fused MoE op on the GPU (op_args.h, "6. Fused MoE"): a decode step's routed path as one
// cooperative kernel in place of six kernels, none of which fills the GPU (bench/NOTES.md, v8: what
// it saves, and that each step's own latency, not the launches, is most of a decode step). Its
// steps are separated by grid-wide barriers:
//   1. router: one block per (token, expert) logit, its terms summed in the skinny linear's order
//      (skinny_order.cuh), so the logits equal linear()'s and the experts chosen are the same;
//   -- barrier --
//   2. routing: every block routes every token (a warp per token: routing_row.cuh) into its own
//      shared memory, so no barrier is needed before the GEMMs read the choices; block 0 also
//      writes topkIds, topkWeights and expertCounts;
//   3. up: each item (a pair, one or two 16-row column tiles) is one pass of the decode GEMM
//      (small_m's K loop and epilogue, with the activation) over that pair's token row, into
//      `hidden` (pair order: no sort, since every pair is its own row);
//   -- barrier --
//   4. down: the same over `hidden` with w2, into `rows`;
//   -- barrier --
//   5. combine: each token's rows summed by their weights in slot order (combine_chunk.cuh).
// Each intermediate is written in one step and first read after the barrier that follows it, and
// never rewritten within a launch, so the read-only loads of the later steps see what was written.
// Calls the kernel does not take (fusedKernelTakes) run as the separate ops (core/fused_moe_steps.h).
#include <cooperative_groups.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <memory>
#include <vector>

#include "../core/fused_moe_steps.h"
#include "alignment.h"
#include "check.h"
#include "combine_chunk.cuh"
#include "environment.h"
#include "float_access.cuh"
#include "grouped_gemm_small_m.cuh"
#include "kernels.h"
#include "routing_row.cuh"
#include "scratch.h"
#include "skinny_order.cuh"

namespace moekit::cuda {
namespace {

namespace cg = cooperative_groups;
using small_m::detail::StreamProblem;

// (token, slot) pairs one call takes: every block keeps their experts and weights in shared memory.
constexpr int64_t kMaxPairs = 64;
// Values per 16-byte vector of 16-bit elements: the router's and combine's access width.
constexpr int kVector = skinny::kElementsPerVector;
// The most expert weight bytes one call streams (every pair's w13 and w2 rows) for the fused kernel
// to take it. Measured at one token on an H200 (bench/NOTES.md, v8; graph replays, against the
// separate ops): 75-302 MB 1-8% faster, 705 MB even (384 experts) to 5% slower (Mixtral, whose two
// pairs' down GEMM fills 1.3 waves of the kernel's grid). Past it the separate ops' kernels, each
// with a grid of its own, stream as fast, and the layer keeps the fused op's one host call.
constexpr int64_t kMaxFusedWeightBytes = int64_t{400} << 20;
// Items of two 16-row column tiles (half as many items, each with twice the loads in flight) where
// the down GEMM's K (I) is at most this. Measured at one token on an H200 (bench/NOTES.md, v8): with
// I of 768-1536 6-9% faster than one tile (the GEMM steps' items fill fewer waves of the grid); with
// I 2880 9% slower (long items, and too few of them to occupy the grid).
constexpr int64_t kTwoTilesMaxIntermediate = 2048;
// Shared memory for the routing scratch: with the GEMM's partial sums, within the 48 KB a block may
// use without opting in to the larger carve-out.
constexpr size_t kRoutingBudgetBytes = 24 * 1024;

struct FusedProblem {
  const void* input;         // [T, H]
  const void* routerWeight;  // [E, H]
  const void* routerBias;    // [E] or nullptr
  DType routerBiasDType;
  float* logits;             // scratch [T, E]
  routing_row::RoutingParams routing;  // its logits; ids, weights and counts are set where they go
  int32_t* topkIds;          // [T, K]
  float* topkWeights;        // [T, K]
  int32_t* expertCounts;     // [E]
  StreamProblem up;          // input: token rows; output: `hidden`, a row per pair
  StreamProblem down;        // input: `hidden`; output: `rows`, a row per pair
  void* output;              // [T, H]
  int64_t tokens;
  int64_t hidden;            // H
  int32_t experts;
  int32_t topK;
};

// ---- 1. Router -----------------------------------------------------------------------------------
// Logit (t, e) by one block: warp w takes the parts w, w + kWarps, ... of skinny's kWarps parts
// (each the lane sums and butterfly skinny's warp of that index makes), and thread 0 adds the
// parts in order, then the bias. Each warp loads all its vectors of a part before adding them.
// Contains __syncthreads(): call from every thread.
template <typename Element, class Config>
__device__ void routerLogits(const FusedProblem& p, float* parts) {
  static_assert(skinny::kWarps % Config::kWarps == 0, "the block's warps share skinny's parts evenly");
  using T = typename Element::Storage;
  constexpr int64_t kRound = skinny::kWarps * skinny::kVectorSpan;  // K a part advances per load
  constexpr int kLoadsInFlight = 4;
  const int lane = threadIdx.x % skinny::kWarpSize;
  const int warp = threadIdx.x / skinny::kWarpSize;
  for (int64_t unit = blockIdx.x; unit < p.tokens * p.experts; unit += gridDim.x) {
    const int64_t expert = unit % p.experts;
    const T* weight = static_cast<const T*>(p.routerWeight) + expert * p.hidden;
    const T* input = static_cast<const T*>(p.input) + unit / p.experts * p.hidden;
    for (int part = warp; part < skinny::kWarps; part += Config::kWarps) {
      float sum = 0.0f;
#pragma unroll kLoadsInFlight
      for (int64_t k = (part * int64_t{skinny::kWarpSize} + lane) * kVector; k < p.hidden; k += kRound) {
        sum = skinny::dot8<Element>(*reinterpret_cast<const uint4*>(weight + k), *reinterpret_cast<const uint4*>(input + k), sum);
      }
      sum = skinny::warpSum(sum);
      if (lane == 0) parts[part] = sum;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      float total = 0.0f;
      for (int part = 0; part < skinny::kWarps; ++part) total += parts[part];
      if (p.routerBias != nullptr) total += loadAsFloat(p.routerBias, p.routerBiasDType, expert);
      p.logits[unit] = total;
    }
    __syncthreads();  // `parts` is rewritten for the next logit
  }
}

// ---- 2. Routing ----------------------------------------------------------------------------------
// Every token routed by this block's warps into pairExperts / pairWeights [T * K]. Contains
// __syncthreads(): call from every thread.
__device__ void routeTokens(const FusedProblem& p, int32_t* pairExperts, float* pairWeights, unsigned char* scratch) {
  routing_row::RoutingParams routing = p.routing;
  routing.topkIds = pairExperts;
  routing.topkWeights = pairWeights;
  routing.expertCounts = nullptr;
  const int lane = threadIdx.x % routing_row::kWarpSize;
  const int warp = threadIdx.x / routing_row::kWarpSize;
  const int warps = blockDim.x / routing_row::kWarpSize;
  const auto row = routing_row::WarpScratch::at(scratch, warp, p.experts, routing.numGroups, p.topK);
  for (int64_t token = warp; token < p.tokens; token += warps) {
    routing_row::routeRow<F32>(routing, row, p.logits + token * p.experts, token, lane);
  }
  __syncthreads();
}

// Block 0: the routing results, and each expert's count of pairs (counted, not added atomically).
__device__ void publishRouting(const FusedProblem& p, const int32_t* pairExperts, const float* pairWeights) {
  const int64_t pairs = p.tokens * p.topK;
  for (int64_t i = threadIdx.x; i < pairs; i += blockDim.x) {
    p.topkIds[i] = pairExperts[i];
    p.topkWeights[i] = pairWeights[i];
  }
  for (int32_t expert = threadIdx.x; expert < p.experts; expert += blockDim.x) {
    int32_t count = 0;
    for (int64_t i = 0; i < pairs; ++i) count += pairExperts[i] == expert ? 1 : 0;
    p.expertCounts[expert] = count;
  }
}

// ---- 3, 4. The experts' GEMMs --------------------------------------------------------------------
// Items (pair, column tiles), tiles fastest so the blocks on one pair share its input row in L2.
// Pair i reads input row i / inputDivisor and writes output row i. Contains __syncthreads().
template <typename Element, class Config>
__device__ void runPairs(const StreamProblem& q, const int32_t* pairExperts, int64_t pairs, int64_t inputDivisor,
                         float* partials) {
  using Operands = small_m::detail::DenseOperands<Element>;
  using T = typename Element::Storage;
  const int64_t items = pairs * q.itemsPerExpert;
  for (int64_t item = blockIdx.x; item < items; item += gridDim.x) {
    const int64_t pair = item / q.itemsPerExpert;
    StreamProblem one = q;
    one.input = static_cast<const T*>(q.input) + pair / inputDivisor * q.depth;
    one.output = static_cast<T*>(q.output) + pair * q.outputCols;
    const int64_t firstTile = item % q.itemsPerExpert * Config::kColumnTiles;
    small_m::detail::runPass<Operands, Config, Config::kMaxTokenGroups>(one, partials, pairExperts[pair], firstTile, 0, 1);
  }
}

// ---- 5. Combine ----------------------------------------------------------------------------------
template <typename Element>
__device__ void combinePairs(const FusedProblem& p, const float* pairWeights) {
  using T = typename Element::Storage;
  const T* rows = static_cast<const T*>(p.down.output);
  T* output = static_cast<T*>(p.output);
  const int64_t chunksPerToken = p.hidden / kVector;
  for (int64_t item = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; item < p.tokens * chunksPerToken;
       item += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t token = item / chunksPerToken;
    const int64_t h = item % chunksPerToken * kVector;
    float sum[kVector] = {};
    for (int32_t j = 0; j < p.topK; ++j) {
      const int64_t pair = token * p.topK + j;
      float values[kVector];
      loadChunk<Element, kVector>(rows + pair * p.hidden + h, values);
      addWeighted(sum, pairWeights[pair], values);
    }
    storeChunk<Element, kVector>(sum, output + token * p.hidden + h);
  }
}

template <typename Element, class Config>
__global__ void __launch_bounds__(Config::kThreads) fusedMoeKernel(FusedProblem p) {
  __shared__ int32_t pairExperts[kMaxPairs];
  __shared__ float pairWeights[kMaxPairs];
  __shared__ float routerParts[skinny::kWarps];
  __shared__ float partials[Config::kWarps * Config::kColumnTiles * Config::kMaxTokenGroups *
                            small_m::detail::kAccumulators * small_m::detail::kWarpSize];
  extern __shared__ __align__(16) unsigned char routingScratch[];
  const cg::grid_group grid = cg::this_grid();
  const int64_t pairs = p.tokens * p.topK;

  routerLogits<Element, Config>(p, routerParts);
  grid.sync();
  routeTokens(p, pairExperts, pairWeights, routingScratch);
  if (blockIdx.x == 0) publishRouting(p, pairExperts, pairWeights);
  runPairs<Element, Config>(p.up, pairExperts, pairs, p.topK, partials);
  grid.sync();
  runPairs<Element, Config>(p.down, pairExperts, pairs, 1, partials);
  grid.sync();
  combinePairs<Element>(p, pairWeights);
}

// ---- Host side -----------------------------------------------------------------------------------
// The separate ops on `stream`, their intermediates in stream-ordered scratch.
struct DeviceSteps {
  cudaStream_t stream;
  std::vector<std::unique_ptr<ScratchBuffer>> buffers;

  TensorView scratch(DType dtype, std::vector<int64_t> shape) {
    TensorView view{nullptr, dtype, std::move(shape)};
    buffers.push_back(std::make_unique<ScratchBuffer>(view.nbytes(), stream));
    view.data = buffers.back()->data();
    return view;
  }
  void linear(const LinearArgs& args) { cuda::linear(args, stream); }
  void routing(const RoutingArgs& args) { cuda::routing(args, stream); }
  void permute(const PermuteArgs& args) { cuda::permute(args, stream); }
  void groupedGemm(const GroupedGemmArgs& args) { cuda::groupedGemm(args, stream); }
  void combine(const CombineArgs& args) { cuda::combine(args, stream); }
};

bool cooperativeLaunchSupported() {
  static PerDevice<int> cached;
  return cached.get([](int device) {
    int supported = 0;
    MOEKIT_CUDA_CHECK(cudaDeviceGetAttribute(&supported, cudaDevAttrCooperativeLaunch, device));
    return supported != 0 ? 1 : 2;  // PerDevice keeps 0 for "not asked yet"
  }) == 1;
}

// The activated width of the first GEMM: I.
int64_t intermediateOf(const FusedMoeArgs& args) {
  return isGated(args.activation.kind) ? args.w13.dim(1) / 2 : args.w13.dim(1);
}

// Routing scratch for the warps that route a token (warps past the token count have none).
size_t routingScratchBytes(const FusedMoeArgs& args, int warps) {
  const auto params = routing_row::paramsOf(args, nullptr, args.input.dim(0), static_cast<int32_t>(args.w13.dim(0)));
  const int64_t routingWarps = std::min<int64_t>(warps, params.tokens);
  return routing_row::WarpScratch::bytes(params.experts, params.numGroups, params.topK) * routingWarps;
}

// MOEKIT_FUSED_MOE=off runs every call as the separate ops (for timing one against the other).
bool fusedKernelEnabled() {
  static const bool enabled = environmentSwitch("MOEKIT_FUSED_MOE") != "off";
  return enabled;
}

// Whether the fused kernel takes the call: few pairs of not too many weight bytes, 16-byte vectors
// along every K and row, whole items of `columnTiles` 16-row tiles (small_m's) along N and H, routing
// scratch within budget, cooperative launches.
bool fusedKernelTakes(const FusedMoeArgs& args, int warps, int columnTiles) {
  const int64_t hidden = args.input.dim(1);
  const int64_t intermediate = intermediateOf(args);
  const int64_t tile = small_m::detail::kMmaRows * columnTiles;
  const int64_t pairs = args.input.dim(0) * args.topK;
  if (pairs > kMaxPairs) return false;
  const int64_t weightBytes = pairs * (args.w13.dim(1) + intermediate) * hidden * static_cast<int64_t>(dtypeSize(args.input.dtype));
  if (weightBytes > kMaxFusedWeightBytes) return false;
  if (hidden % kVector != 0 || intermediate % kVector != 0) return false;
  if (args.w13.dim(1) % tile != 0 || hidden % tile != 0) return false;
  if (!aligned16(args.input.data) || !aligned16(args.routerWeight.data) || !aligned16(args.w13.data) ||
      !aligned16(args.w2.data) || !aligned16(args.output.data)) {
    return false;
  }
  if (routingScratchBytes(args, warps) > kRoutingBudgetBytes) return false;
  return fusedKernelEnabled() && computeCapability() >= 80 && cooperativeLaunchSupported();
}

// The kernel's configuration: small_m's warps and unroll for K = H (dispatchConfig), one row per
// pass (every pair is its own row), and `columnTiles` 16-row tiles per item.
template <class Base, int columnTiles>
using FusedConfig = small_m::detail::StreamConfig<Base::kWarps, columnTiles, Base::kUnroll, 1>;

// small_m's problem for one of the two GEMMs (pair rows; input and output set per item).
template <class Config>
StreamProblem pairProblem(const TensorView& weights, const TensorView& bias, const void* input, void* output, DType dtype,
                          const GemmActivation* activation) {
  GroupedGemmArgs gemm;
  gemm.weights = weights;
  gemm.bias = bias;
  if (activation != nullptr) gemm.activation = *activation;
  gemm.input = TensorView{const_cast<void*>(input), dtype, {1, weights.dim(2)}};
  StreamProblem p = small_m::detail::problemOf<Config>(gemm, output, dtype);
  p.input = input;
  p.offsets = nullptr;
  p.rows = 1;
  return p;
}

template <typename Element, class Config>
void launchFused(const FusedMoeArgs& args, cudaStream_t stream) {
  const int64_t tokens = args.input.dim(0);
  const int64_t hidden = args.input.dim(1);
  const int32_t experts = static_cast<int32_t>(args.w13.dim(0));
  const int64_t pairs = tokens * args.topK;
  const int64_t intermediate = intermediateOf(args);
  const DType dtype = args.input.dtype;
  const size_t elementBytes = dtypeSize(dtype);

  const size_t logitsBytes = ScratchBuffer::roundUp(sizeof(float) * tokens * experts);
  const size_t hiddenBytes = ScratchBuffer::roundUp(elementBytes * pairs * intermediate);
  ScratchBuffer scratch(logitsBytes + hiddenBytes + elementBytes * pairs * hidden, stream);

  FusedProblem p{};
  p.input = args.input.data;
  p.routerWeight = args.routerWeight.data;
  p.routerBias = args.routerBias.present() ? args.routerBias.data : nullptr;
  p.routerBiasDType = args.routerBias.dtype;
  p.logits = static_cast<float*>(scratch.data());
  p.routing = routing_row::paramsOf(args, p.logits, tokens, experts);
  p.topkIds = args.topkIds.as<int32_t>();
  p.topkWeights = args.topkWeights.as<float>();
  p.expertCounts = args.expertCounts.as<int32_t>();
  void* hiddenRows = scratch.at(logitsBytes);
  void* expertRows = scratch.at(logitsBytes + hiddenBytes);
  p.up = pairProblem<Config>(args.w13, args.w13Bias, args.input.data, hiddenRows, dtype, &args.activation);
  p.down = pairProblem<Config>(args.w2, args.w2Bias, hiddenRows, expertRows, dtype, nullptr);
  p.output = args.output.data;
  p.tokens = tokens;
  p.hidden = hidden;
  p.experts = experts;
  p.topK = args.topK;

  // A persistent grid no larger than the device holds at once (a cooperative launch's rule), and
  // no larger than the largest step's items.
  const auto kernel = fusedMoeKernel<Element, Config>;
  const size_t dynamicShared = routingScratchBytes(args, Config::kWarps);
  int perMultiprocessor = 0;
  MOEKIT_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&perMultiprocessor, kernel, Config::kThreads, dynamicShared));
  const int64_t resident = static_cast<int64_t>(deviceMultiprocessors()) * std::max(perMultiprocessor, 1);
  const int64_t items = std::max(pairs * p.up.itemsPerExpert, pairs * p.down.itemsPerExpert);
  const unsigned blocks = static_cast<unsigned>(std::max<int64_t>(std::min(resident, items), 1));

  cudaLaunchAttribute cooperative{};
  cooperative.id = cudaLaunchAttributeCooperative;
  cooperative.val.cooperative = 1;
  cudaLaunchConfig_t config{};
  config.gridDim = dim3(blocks);
  config.blockDim = dim3(Config::kThreads);
  config.dynamicSmemBytes = dynamicShared;
  config.stream = stream;
  config.attrs = &cooperative;
  config.numAttrs = 1;
  MOEKIT_CUDA_CHECK(cudaLaunchKernelEx(&config, kernel, p));
  MOEKIT_CHECK_LAUNCH("fusedMoeKernel");
}

}  // namespace

void fusedMoe(const FusedMoeArgs& args, cudaStream_t stream) {
  if (args.input.dim(0) == 0) {
    MOEKIT_CUDA_CHECK(cudaMemsetAsync(args.expertCounts.data, 0, args.expertCounts.nbytes(), stream));
    return;
  }
  bool launched = false;
  const bool twoTiles = intermediateOf(args) <= kTwoTilesMaxIntermediate;
  small_m::detail::dispatchConfig(args.input.dim(1), [&](auto base) {
    using Base = decltype(base);
    const auto launch = [&](auto config) {
      using Config = decltype(config);
      if (launched || !fusedKernelTakes(args, Config::kWarps, Config::kColumnTiles)) return;
      if (args.input.dtype == DType::BFloat16) {
        launchFused<BF16, Config>(args, stream);
      } else {
        launchFused<F16, Config>(args, stream);
      }
      launched = true;
    };
    if (twoTiles) launch(FusedConfig<Base, 2>{});
    launch(FusedConfig<Base, 1>{});  // when two tiles are not wanted or do not divide N and H
  });
  if (!launched) {
    DeviceSteps steps{stream, {}};
    fusedMoeInSteps(args, steps);
  }
}

}  // namespace moekit::cuda
