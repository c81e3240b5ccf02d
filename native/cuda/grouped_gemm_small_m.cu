// Decode grouped GEMM: a few rows per expert, so the time is the time to read the active experts'
// weights once. The kernel streams weight rows straight from HBM into tensor-core fragments;
// nothing about it is Hopper-specific (mma.sync, sm_80 and up).
//
// Swap-AB: the weights are the mma's 16-row A operand (16 output features per mma) and the
// tokens its 8-column B operand, so a row count of 1..8 costs one mma per 16×16 weight block.
// Because a dot product may sum its K terms in any order, each lane loads 16 contiguous bytes of
// a weight row and feeds them to the mma as if they were the K positions its fragment layout
// names; the token fragment is loaded with the same permutation (see loadChunk), so each weight
// byte is read once, by one 16-byte load, with no shared-memory staging or shuffles.
//
// Work: an item is one expert × one column tile (kColumnTiles × 16 weight rows × all of K). The
// grid is persistent; every block first lists the experts that own rows (device offsets, so
// empty experts cost one scan of the offsets, not a block), then walks items tile-fastest so the
// blocks working on one expert share its input rows in L2. Within a block the warps split K
// (chunks of 64 dealt round-robin) and add their partial sums through shared memory; that sum
// runs in a fixed order, so results are deterministic. An expert with more rows than one pass
// holds (8 × kMaxTokenGroups) takes several passes, each re-reading the tile's weights.
//
// The epilogue adds the bias, applies the optional activation on the float32 sums and stores in
// the output dtype. For gated activations the column tile pairs each gate row with its up row in
// the same mma (rows g and g + 8), so one lane holds both values of an output.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <string>
#include <type_traits>

#include "activation_math.cuh"
#include "alignment.h"
#include "check.h"
#include "expert_offsets.cuh"
#include "float_access.cuh"
#include "grouped_gemm_paths.h"
#include "mma_sync.cuh"
#include "per_device.h"

namespace moekit::cuda::small_m {
namespace {

constexpr int kWarpSize = 32;
constexpr unsigned kFullWarp = 0xffffffffu;

// The mma.sync.m16n8k16 operand shapes, with the weights as A (swap-AB).
constexpr int kMmaRows = 16;    // weight rows (output features) per mma
constexpr int kMmaTokens = 8;   // token rows per mma
constexpr int kMmaDepth = 16;   // K per mma
constexpr int kLanesPerRow = 4;  // lanes that share one weight row in the fragment layout
constexpr int kHalfRows = kMmaRows / 2;  // a lane holds weight rows g and g + kHalfRows

// Each lane reads 16-byte vectors; a warp's chunk of K is kLoadsPerChunk vectors per lane and row.
constexpr int kElementsPerVector = 8;  // 16 bytes of 16-bit values
constexpr int kVectorsPerChunk = 2;
constexpr int kChunkDepth = kLanesPerRow * kElementsPerVector * kVectorsPerChunk;  // 64
constexpr int kMmasPerVector = kElementsPerVector / (kMmaDepth / kLanesPerRow);    // 2
static_assert(kChunkDepth == kMmaDepth * kMmasPerVector * kVectorsPerChunk, "a chunk is whole mmas");

// Experts a block lists in shared memory (supports() refuses more).
constexpr int kMaxExperts = 1024;

// ---- Launch configurations ---------------------------------------------------------------------
// kWarps: warps per block, all on the same column tile, splitting K between them.
// kColumnTiles: 16-row mma tiles per item (more tiles: fewer re-reads of the tokens per weight).
// kUnroll: chunks whose loads a warp issues before its first mma (bytes in flight per warp).
// kMaxTokenGroups: 8-row token groups per pass (rows an expert can have before a second pass).
template <int warps, int columnTiles, int unroll, int maxTokenGroups>
struct StreamConfig {
  static constexpr int kWarps = warps;
  static constexpr int kColumnTiles = columnTiles;
  static constexpr int kUnroll = unroll;
  static constexpr int kMaxTokenGroups = maxTokenGroups;
  static constexpr int kThreads = kWarps * kWarpSize;
  static constexpr int kRowsPerPass = kMmaTokens * kMaxTokenGroups;
  static_assert((maxTokenGroups & (maxTokenGroups - 1)) == 0, "passes halve the token groups");
};

// ---- The problem ---------------------------------------------------------------------------------
// How the two weight rows of an mma row pair (g, g + 8) map to output columns.
enum class Pairing : int32_t {
  Plain,        // rows 16u + g and 16u + g + 8; each is its own output column
  Halves,       // gate row 8u + g, up row N/2 + 8u + g → output column 8u + g
  Interleaved,  // gate row 2(8u + g), up row 2(8u + g) + 1 → output column 8u + g
};

struct StreamProblem {
  const void* input;       // [rows, depth]
  const void* weights;     // [experts, cols, depth]
  const void* bias;        // [experts, cols] or nullptr
  DType biasDType;
  void* output;            // [rows, outputCols]
  DType outputDType;
  const int32_t* offsets;  // [experts + 1], device
  int32_t experts;
  int64_t rows;
  int64_t cols;
  int64_t depth;
  int64_t outputCols;
  int64_t itemsPerExpert;  // column tiles: cols / (16 · kColumnTiles)
  Pairing pairing;
  bool activate;           // apply `kind` in the epilogue
  ActivationKind kind;
  float alpha;
  float limit;
  FaultSink faults;        // where a bad offset is reported
};

// ---- Loads ---------------------------------------------------------------------------------------
// Both loads take a predicate and yield zeros when it is false. The predicate lives inside the
// asm so that a whole batch of loads stays one basic block the compiler can issue back to back.
//
// Weights are read exactly once: keep them out of L1 and ask L2 to fetch 256-byte neighbourhoods,
// since the warp reads the rest of each line right after.
__device__ __forceinline__ uint4 loadStreamed(const void* address, bool valid) {
  uint4 v;
  asm("{\n"
      "  .reg .pred p;\n"
      "  setp.ne.b32 p, %5, 0;\n"
      "  mov.b32 %0, 0;\n  mov.b32 %1, 0;\n  mov.b32 %2, 0;\n  mov.b32 %3, 0;\n"
      "  @p ld.global.nc.L1::no_allocate.L2::256B.v4.u32 {%0, %1, %2, %3}, [%4];\n"
      "}\n"
      : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
      : "l"(address), "r"(static_cast<int>(valid)));
  return v;
}

// Token rows are re-read by every column tile of their expert: the ordinary cached path.
__device__ __forceinline__ uint4 loadCached(const void* address, bool valid) {
  uint4 v;
  asm("{\n"
      "  .reg .pred p;\n"
      "  setp.ne.b32 p, %5, 0;\n"
      "  mov.b32 %0, 0;\n  mov.b32 %1, 0;\n  mov.b32 %2, 0;\n  mov.b32 %3, 0;\n"
      "  @p ld.global.nc.v4.u32 {%0, %1, %2, %3}, [%4];\n"
      "}\n"
      : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
      : "l"(address), "r"(static_cast<int>(valid)));
  return v;
}

// ---- Finding the work ----------------------------------------------------------------------------
__device__ void expertRows(const StreamProblem& p, int32_t expert, int64_t* begin, int64_t* end) {
  expertRowRange(p.offsets, expert, p.rows, p.faults, begin, end);
}

// Lists the experts that own at least one row, in order, into `active`; returns how many. Every
// thread of the block calls it (it synchronizes) and gets the same count.
template <class Config>
__device__ int listActiveExperts(const StreamProblem& p, int32_t* active) {
  __shared__ int warpCounts[Config::kWarps];
  const int warp = threadIdx.x / kWarpSize;
  const int lane = threadIdx.x % kWarpSize;
  int count = 0;
  for (int32_t base = 0; base < p.experts; base += Config::kThreads) {
    const int32_t expert = base + static_cast<int32_t>(threadIdx.x);
    bool owns = false;
    if (expert < p.experts) {
      int64_t begin, end;
      expertRows(p, expert, &begin, &end);
      owns = end > begin;
    }
    const unsigned owners = __ballot_sync(kFullWarp, owns);
    if (lane == 0) warpCounts[warp] = __popc(owners);
    __syncthreads();
    int before = 0, total = 0;
    for (int w = 0; w < Config::kWarps; ++w) {
      if (w < warp) before += warpCounts[w];
      total += warpCounts[w];
    }
    if (owns) active[count + before + __popc(owners & ((1u << lane) - 1u))] = expert;
    count += total;
    __syncthreads();  // warpCounts is rewritten next round; `active` is complete after the last
  }
  return count;
}

// ---- The K loop ------------------------------------------------------------------------------------
// One lane's view of a column tile: for each mma tile, its two weight rows (g and g + 8) already
// offset to the lane's position in a chunk; and for each token group, its token row or nullptr.
template <typename T, class Config, int tokenGroups>
struct LaneOperands {
  const T* weightRows[Config::kColumnTiles][2];
  const T* tokenRows[tokenGroups];
  int depthOffset;  // the lane's first K position within a vector's 32 (the pointers include it)
};

// The registers of one chunk: per mma tile and row, and per token group, kVectorsPerChunk vectors.
template <class Config, int tokenGroups>
struct ChunkRegisters {
  uint4 weights[Config::kColumnTiles][2][kVectorsPerChunk];
  uint4 tokens[tokenGroups][kVectorsPerChunk];
};

// Lane (g, c) reads elements [v·32 + c·8, +8) of its rows in each vector v of a 64-wide chunk.
// A warp thus reads 64 contiguous bytes of each of its 16 weight rows per load instruction.
template <typename T, class Config, int tokenGroups>
__device__ __forceinline__ void loadChunk(const StreamProblem& p, const LaneOperands<T, Config, tokenGroups>& lane,
                                          int64_t chunk, ChunkRegisters<Config, tokenGroups>& r) {
#pragma unroll
  for (int v = 0; v < kVectorsPerChunk; ++v) {
    const int64_t k = chunk * kChunkDepth + v * kLanesPerRow * kElementsPerVector;
    // depth % 8 == 0, so a lane's vector is wholly inside K or wholly past it (past the last
    // chunk too); lanes of one load may differ when K is not a multiple of 32.
    const bool inside = k + lane.depthOffset < p.depth;
#pragma unroll
    for (int t = 0; t < Config::kColumnTiles; ++t) {
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        r.weights[t][half][v] = loadStreamed(lane.weightRows[t][half] + k, inside);
      }
    }
#pragma unroll
    for (int j = 0; j < tokenGroups; ++j) {
      r.tokens[j][v] = loadCached(lane.tokenRows[j] + k, inside && lane.tokenRows[j] != nullptr);
    }
  }
}

// The mma fragment of lane (g, c) holds, for row g (and g + 8), the K positions {2c, 2c+1} in
// its first register and {2c+8, 2c+9} in its second; the token fragment holds the same positions
// of token g. Any one-to-one assignment of those logical positions to physical K works as long as
// both operands use it and it depends only on c: mma (v, q) takes the physical pairs 4q and 4q+2
// of the lane's vector v.
template <typename Element, class Config, int tokenGroups>
__device__ __forceinline__ void multiplyChunk(const ChunkRegisters<Config, tokenGroups>& r,
                                              float (&sums)[Config::kColumnTiles][tokenGroups][4]) {
#pragma unroll
  for (int v = 0; v < kVectorsPerChunk; ++v) {
#pragma unroll
    for (int q = 0; q < kMmasPerVector; ++q) {
      const auto word = [](const uint4& vector, int index) {
        return index == 0 ? vector.x : index == 1 ? vector.y : index == 2 ? vector.z : vector.w;
      };
#pragma unroll
      for (int t = 0; t < Config::kColumnTiles; ++t) {
        const uint32_t a0 = word(r.weights[t][0][v], 2 * q);
        const uint32_t a1 = word(r.weights[t][1][v], 2 * q);
        const uint32_t a2 = word(r.weights[t][0][v], 2 * q + 1);
        const uint32_t a3 = word(r.weights[t][1][v], 2 * q + 1);
#pragma unroll
        for (int j = 0; j < tokenGroups; ++j) {
          mma16816<Element>(sums[t][j], a0, a1, a2, a3, word(r.tokens[j][v], 2 * q), word(r.tokens[j][v], 2 * q + 1));
        }
      }
    }
  }
}

// This warp's share of K for one pass: chunks warp, warp + kWarps, ..., kUnroll at a time so that
// kUnroll chunks of loads are in flight before the first of them is consumed.
template <typename Element, class Config, int tokenGroups>
__device__ void streamDepth(const StreamProblem& p, const LaneOperands<typename Element::Storage, Config, tokenGroups>& lane,
                            float (&sums)[Config::kColumnTiles][tokenGroups][4]) {
  const int warp = threadIdx.x / kWarpSize;
  const int64_t chunks = (p.depth + kChunkDepth - 1) / kChunkDepth;
  for (int64_t first = warp; first < chunks; first += Config::kWarps * Config::kUnroll) {
    ChunkRegisters<Config, tokenGroups> batch[Config::kUnroll];
#pragma unroll
    for (int u = 0; u < Config::kUnroll; ++u) loadChunk(p, lane, first + u * Config::kWarps, batch[u]);
#pragma unroll
    for (int u = 0; u < Config::kUnroll; ++u) multiplyChunk<Element, Config, tokenGroups>(batch[u], sums);
  }
}

// ---- The epilogue ----------------------------------------------------------------------------------
// The weight rows that mma rows g and g + 8 of mma tile `tile` stand for.
__device__ __forceinline__ void tileRows(const StreamProblem& p, int64_t tile, int g, int64_t* rowA, int64_t* rowB) {
  switch (p.pairing) {
    case Pairing::Halves:
      *rowA = tile * kHalfRows + g;
      *rowB = p.cols / 2 + *rowA;
      return;
    case Pairing::Interleaved:
      *rowA = 2 * (tile * kHalfRows + g);
      *rowB = *rowA + 1;
      return;
    default:
      *rowA = tile * kMmaRows + g;
      *rowB = *rowA + kHalfRows;
      return;
  }
}

__device__ __forceinline__ float addBias(const StreamProblem& p, int32_t expert, int64_t row, float sum) {
  return p.bias == nullptr ? sum : sum + loadAsFloat(p.bias, p.biasDType, expert * p.cols + row);
}

// Adds the warps' partial sums and writes the pass's outputs. `partials` holds every warp's
// sums as [warp][tile][group][register][lane]; a thread finishes one (tile, group, lane, column
// half) at a time: the sums of registers h and h + 2, i.e. weight rows g and g + 8 for token
// 2c + h of the group.
template <class Config, int tokenGroups>
__device__ void finishPass(const StreamProblem& p, const float* partials, int32_t expert, int64_t firstTile,
                           int64_t passBegin, int64_t passEnd) {
  constexpr int kRegisters = 4;
  constexpr int kHalvesPerLane = 2;
  constexpr int kWarpStride = Config::kColumnTiles * tokenGroups * kRegisters * kWarpSize;
  constexpr int kUnits = Config::kColumnTiles * tokenGroups * kHalvesPerLane * kWarpSize;
  for (int unit = threadIdx.x; unit < kUnits; unit += Config::kThreads) {
    const int lane = unit % kWarpSize;
    const int h = (unit / kWarpSize) % kHalvesPerLane;
    const int group = (unit / (kWarpSize * kHalvesPerLane)) % tokenGroups;
    const int tile = unit / (kWarpSize * kHalvesPerLane * tokenGroups);
    const int64_t row = passBegin + group * kMmaTokens + 2 * (lane % kLanesPerRow) + h;
    if (row >= passEnd) continue;
    const float* first = partials + ((tile * tokenGroups + group) * kRegisters + h) * kWarpSize + lane;
    float sumA = 0.0f, sumB = 0.0f;
    for (int w = 0; w < Config::kWarps; ++w) {
      sumA += first[w * kWarpStride];
      sumB += first[w * kWarpStride + 2 * kWarpSize];
    }
    int64_t rowA, rowB;
    const int g = lane / kLanesPerRow;
    tileRows(p, firstTile + tile, g, &rowA, &rowB);
    sumA = addBias(p, expert, rowA, sumA);
    sumB = addBias(p, expert, rowB, sumB);
    if (p.pairing == Pairing::Plain) {
      if (p.activate) {
        sumA = activatePlain(p.kind, sumA);
        sumB = activatePlain(p.kind, sumB);
      }
      storeAsFloat(p.output, p.outputDType, row * p.outputCols + rowA, sumA);
      storeAsFloat(p.output, p.outputDType, row * p.outputCols + rowB, sumB);
    } else {
      const int64_t column = (firstTile + tile) * kHalfRows + g;
      storeAsFloat(p.output, p.outputDType, row * p.outputCols + column, activateGated(p.kind, sumA, sumB, p.alpha, p.limit));
    }
  }
}

// One pass: rows [passBegin, passEnd) of `expert` (at most 8 · tokenGroups) against the item's
// column tile. Contains __syncthreads(): call from every thread.
template <typename Element, class Config, int tokenGroups>
__device__ void runPass(const StreamProblem& p, float* partials, int32_t expert, int64_t firstTile, int64_t passBegin,
                        int64_t passEnd) {
  if constexpr (tokenGroups > 1) {
    // Fewer rows than half the groups: the smaller pass loads and multiplies less.
    if (passEnd - passBegin <= kMmaTokens * (tokenGroups / 2)) {
      runPass<Element, Config, tokenGroups / 2>(p, partials, expert, firstTile, passBegin, passEnd);
      return;
    }
  }
  using T = typename Element::Storage;
  const int warp = threadIdx.x / kWarpSize;
  const int lane = threadIdx.x % kWarpSize;
  const int g = lane / kLanesPerRow;
  const int laneDepth = (lane % kLanesPerRow) * kElementsPerVector;

  LaneOperands<T, Config, tokenGroups> operands;
  operands.depthOffset = laneDepth;
  const T* expertWeights = static_cast<const T*>(p.weights) + static_cast<int64_t>(expert) * p.cols * p.depth;
#pragma unroll
  for (int t = 0; t < Config::kColumnTiles; ++t) {
    int64_t rowA, rowB;
    tileRows(p, firstTile + t, g, &rowA, &rowB);
    operands.weightRows[t][0] = expertWeights + rowA * p.depth + laneDepth;
    operands.weightRows[t][1] = expertWeights + rowB * p.depth + laneDepth;
  }
#pragma unroll
  for (int j = 0; j < tokenGroups; ++j) {
    const int64_t row = passBegin + j * kMmaTokens + g;
    operands.tokenRows[j] = row < passEnd ? static_cast<const T*>(p.input) + row * p.depth + laneDepth : nullptr;
  }

  float sums[Config::kColumnTiles][tokenGroups][4] = {};
  streamDepth<Element, Config, tokenGroups>(p, operands, sums);

  constexpr int kWarpStride = Config::kColumnTiles * tokenGroups * 4 * kWarpSize;
#pragma unroll
  for (int t = 0; t < Config::kColumnTiles; ++t) {
#pragma unroll
    for (int j = 0; j < tokenGroups; ++j) {
#pragma unroll
      for (int r = 0; r < 4; ++r) partials[warp * kWarpStride + ((t * tokenGroups + j) * 4 + r) * kWarpSize + lane] = sums[t][j][r];
    }
  }
  __syncthreads();
  finishPass<Config, tokenGroups>(p, partials, expert, firstTile, passBegin, passEnd);
  __syncthreads();  // partials are rewritten by the next pass
}

template <typename Element, class Config>
__global__ void __launch_bounds__(Config::kThreads) streamGemmKernel(StreamProblem p) {
  __shared__ int32_t active[kMaxExperts];
  __shared__ float partials[Config::kWarps * Config::kColumnTiles * Config::kMaxTokenGroups * 4 * kWarpSize];

  const int activeExperts = listActiveExperts<Config>(p, active);
  const int64_t items = activeExperts * p.itemsPerExpert;
  for (int64_t item = blockIdx.x; item < items; item += gridDim.x) {
    const int32_t expert = active[item / p.itemsPerExpert];
    const int64_t firstTile = (item % p.itemsPerExpert) * Config::kColumnTiles;
    int64_t begin, end;
    expertRows(p, expert, &begin, &end);
    for (int64_t passBegin = begin; passBegin < end; passBegin += Config::kRowsPerPass) {
      runPass<Element, Config, Config::kMaxTokenGroups>(p, partials, expert, firstTile, passBegin,
                                                        min(passBegin + Config::kRowsPerPass, end));
    }
  }
}

// ---- Launch: configuration and kernel choice in one place ------------------------------------------
// Resident blocks of one kernel instantiation on the current device, queried once per device.
template <typename Element, class Config>
int64_t residentBlocks() {
  static PerDevice<int64_t> cached;
  return cached.get([](int device) {
    int multiprocessors = 0;
    int perMultiprocessor = 0;
    MOEKIT_CUDA_CHECK(cudaDeviceGetAttribute(&multiprocessors, cudaDevAttrMultiProcessorCount, device));
    MOEKIT_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&perMultiprocessor, streamGemmKernel<Element, Config>,
                                                                    Config::kThreads, 0));
    return static_cast<int64_t>(multiprocessors) * std::max(perMultiprocessor, 1);
  });
}

template <class Config>
StreamProblem problemOf(const GroupedGemmArgs& args) {
  const GemmActivation& act = args.activation;
  const bool gated = act.enabled && isGated(act.kind);
  StreamProblem p{};
  p.input = args.input.data;
  p.weights = args.weights.data;
  p.bias = args.bias.present() ? args.bias.data : nullptr;
  p.biasDType = args.bias.dtype;
  p.output = args.output.data;
  p.outputDType = args.output.dtype;
  p.offsets = args.expertOffsets.as<int32_t>();
  p.faults = FaultSink::of(args);
  p.experts = static_cast<int32_t>(args.weights.dim(0));
  p.rows = args.input.dim(0);
  p.cols = args.weights.dim(1);
  p.depth = args.weights.dim(2);
  p.outputCols = gated ? p.cols / 2 : p.cols;
  p.itemsPerExpert = p.cols / (kMmaRows * Config::kColumnTiles);
  p.pairing = !gated ? Pairing::Plain : act.layout == GateLayout::Interleaved ? Pairing::Interleaved : Pairing::Halves;
  p.activate = act.enabled;
  p.kind = act.kind;
  p.alpha = act.alpha;
  p.limit = act.limit;
  return p;
}

template <class Config>
void launchStream(const GroupedGemmArgs& args, cudaStream_t stream) {
  const StreamProblem p = problemOf<Config>(args);
  if (p.rows == 0 || p.cols == 0 || p.experts == 0) return;
  if (p.cols % (kMmaRows * Config::kColumnTiles) != 0) {
    throw NativeError("E_INVALID_ARGUMENT", "small_m grouped GEMM: " + std::to_string(p.cols) +
                                                " columns do not fill whole column tiles");
  }
  // At most min(experts, rows) experts own rows; a persistent grid no larger than the device holds.
  const int64_t maxItems = std::min<int64_t>(p.experts, p.rows) * p.itemsPerExpert;
  const auto launch = [&](auto format) {
    using Element = decltype(format);
    const int64_t blocks = std::max<int64_t>(std::min(maxItems, residentBlocks<Element, Config>()), 1);
    streamGemmKernel<Element, Config><<<static_cast<unsigned>(blocks), Config::kThreads, 0, stream>>>(p);
    MOEKIT_CHECK_LAUNCH("streamGemmKernel");
  };
  if (args.input.dtype == DType::BFloat16) {
    launch(BF16{});
  } else {
    launch(F16{});
  }
}

// The configurations groupedGemm() picks from (measured on an H100 against wider column tiles,
// deeper unrolling and 16-row passes: bench/NOTES.md). All take up to 32 rows per expert in one
// pass; they differ in how many warps split K. Short K wants small blocks, so that more of them
// are resident and every item starts in the first round; long K wants more warps per item.
using ShortDepthConfig = StreamConfig<2, 1, 2, 4>;
using DecodeConfig = StreamConfig<4, 1, 2, 4>;
using LongDepthConfig = StreamConfig<8, 1, 2, 4>;
constexpr int64_t kShortDepth = 1024;  // K up to this: 2 warps per item
constexpr int64_t kLongDepth = 4096;   // K from this: 8 warps per item

}  // namespace

bool supports(const GroupedGemmArgs& args) {
  const DType dtype = args.input.dtype;
  if (dtype != DType::BFloat16 && dtype != DType::Float16) return false;
  if (args.weights.dtype != dtype) return false;
  if (args.output.dtype == DType::Int32) return false;
  if (args.bias.present() && args.bias.dtype == DType::Int32) return false;
  if (args.weights.dim(0) > kMaxExperts) return false;
  // 16-byte vectors along K; whole 16-row mma tiles (and so whole gate/up pairs) along N.
  if (args.weights.dim(2) % kElementsPerVector != 0) return false;
  if (!aligned16(args.input.data) || !aligned16(args.weights.data)) return false;
  if (args.weights.dim(1) % kMmaRows != 0) return false;
  return computeCapability() >= 80;
}

void groupedGemm(const GroupedGemmArgs& args, cudaStream_t stream) {
  const int64_t depth = args.weights.dim(2);
  if (depth <= kShortDepth) {
    launchStream<ShortDepthConfig>(args, stream);
  } else if (depth >= kLongDepth) {
    launchStream<LongDepthConfig>(args, stream);
  } else {
    launchStream<DecodeConfig>(args, stream);
  }
}

}  // namespace moekit::cuda::small_m
