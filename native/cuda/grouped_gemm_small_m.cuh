// Decode grouped GEMM: a few rows per expert, so the time is the time to read the active experts'
// weights once. The kernel streams weight rows straight from HBM into tensor-core fragments;
// nothing about it is Hopper-specific (mma.sync, sm_80 and up). Instantiated for 16-bit operands
// in grouped_gemm_small_m.cu and for FP8 ones in grouped_gemm_small_m_fp8.cu.
//
// Swap-AB: the weights are the mma's 16-row A operand (16 output features per mma) and the
// tokens its 8-column B operand, so a row count of 1..8 costs one mma per 16×16 weight block.
// Because a dot product may sum its K terms in any order, each lane loads 16 contiguous bytes of
// a weight row and feeds them to the mma as if they were the K positions its fragment layout
// names; the token fragment is loaded with the same permutation (see loadChunk), so each weight
// byte is read once, by one 16-byte load, with no shared-memory staging or shuffles.
//
// Operands (the `Operands` template argument): DenseOperands<BF16 or F16>, 8 values per 16-byte
// vector, two mmas per vector; or Fp8Operands (WeightFormat::Fp8Block128 with FP8 tokens, W8A8),
// 16 e4m3 values per vector: multiplied as they are by FP8 mmas (m16n8k32, two per vector) from
// sm_89 on, or widened to float16 in registers (fp8.cuh) for four m16n8k16 mmas on sm_80. Widening
// costs about a dozen integer operations per four values, which on Hopper made the FP8 kernel
// ALU-bound at a third of bfloat16's bytes per second (bench/NOTES.md, fp8-v1); the FP8 mma costs
// none. A chunk (two vectors per lane and row) is then 128 K values: exactly one block of the FP8
// scales, so each chunk's products are summed from zero and added to the running sums times
// (token scale × weight block scale), DeepGEMM's promotion, and the weight bytes a chunk streams
// are the same as in the 16-bit kernel.
//
// Work: an item is one expert × one column tile (kColumnTiles × 16 weight rows × all of K). The
// grid is persistent; every block first lists the experts that own rows (device offsets, so
// empty experts cost one scan of the offsets, not a block), then walks items tile-fastest so the
// blocks working on one expert share its input rows in L2. Within a block the warps split K
// (chunks dealt round-robin) and add their partial sums through shared memory; that sum runs in a
// fixed order, so results are deterministic. An expert with more rows than one pass holds
// (8 × kMaxTokenGroups) takes several passes, each re-reading the tile's weights.
//
// The epilogue adds the bias, applies the optional activation on the float32 sums and stores in
// the output dtype. For gated activations the column tile pairs each gate row with its up row in
// the same mma (rows g and g + 8), so one lane holds both values of an output.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cstdint>
#include <string>

#include "activation_math.cuh"
#include "check.h"
#include "expert_offsets.cuh"
#include "float_access.cuh"
#include "fp8.cuh"
#include "row_gather.cuh"
#include "grouped_gemm_paths.h"
#include "mma_sync.cuh"
#include "per_device.h"

namespace moekit::cuda::small_m {
namespace detail {

constexpr int kWarpSize = 32;
constexpr unsigned kFullWarp = 0xffffffffu;

// The mma.sync.m16n8k16 operand shapes, with the weights as A (swap-AB).
constexpr int kMmaRows = 16;    // weight rows (output features) per mma
constexpr int kMmaTokens = 8;   // token rows per mma
constexpr int kMmaDepth = 16;   // K per mma
constexpr int kLanesPerRow = 4;  // lanes that share one weight row in the fragment layout
constexpr int kHalfRows = kMmaRows / 2;  // a lane holds weight rows g and g + kHalfRows
constexpr int kAccumulators = 4;         // c0..c3 of one mma: rows g, g + 8 × tokens 2c, 2c + 1

// Each lane reads 16-byte vectors; a warp's chunk of K is kVectorsPerChunk vectors per lane and row.
constexpr int kVectorBytes = 16;
constexpr int kVectorsPerChunk = 2;

// Experts a block lists in shared memory (supports() refuses more).
constexpr int kMaxExperts = 1024;

__device__ __forceinline__ uint32_t word(const uint4& vector, int index) {
  return index == 0 ? vector.x : index == 1 ? vector.y : index == 2 ? vector.z : vector.w;
}

// ---- Operand formats ---------------------------------------------------------------------------------
// What a 16-byte vector holds and how its words become mma fragments. Fragment (v, q) of a chunk
// is mma q of vector v; see mma_sync.cuh for the fragment layout this fills.

// bfloat16 or float16 values: mma q takes words 2q and 2q + 1 (K pairs {2c, 2c+1}, {2c+8, 2c+9}).
template <typename Element>
struct DenseOperands {
  using Storage = typename Element::Storage;
  static constexpr bool kBlockScaled = false;
  static constexpr int kElementsPerVector = kVectorBytes / static_cast<int>(sizeof(Storage));  // 8
  static constexpr int kMmasPerVector = kElementsPerVector / (kMmaDepth / kLanesPerRow);       // 2

  // Weight rows g (rowG) and g + 8 (rowG8) → a0..a3.
  __device__ static void weightFragment(const uint4& rowG, const uint4& rowG8, int q, uint32_t (&a)[4]) {
    a[0] = word(rowG, 2 * q);
    a[1] = word(rowG8, 2 * q);
    a[2] = word(rowG, 2 * q + 1);
    a[3] = word(rowG8, 2 * q + 1);
  }
  __device__ static void tokenFragment(const uint4& token, int q, uint32_t (&b)[2]) {
    b[0] = word(token, 2 * q);
    b[1] = word(token, 2 * q + 1);
  }
  __device__ static void mma(float (&c)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
    mma16816<Element>(c, a[0], a[1], a[2], a[3], b[0], b[1]);
  }
};

// e4m3 values. With FP8 mmas (kHasFp8Mma), mma q takes words 2q and 2q + 1 as the 16-bit operands
// do (four K values per word: {4c..4c+3}, {4c+16..4c+19}) and the products are exact. Without,
// they are widened to float16 × 2^-8: mma q takes word q (bytes 0-1 → the first K pair, bytes 2-3
// → the second), the same way in both operands, and the sums carry a factor 2^-16
// (kProductScale undoes it).
struct Fp8Operands {
  using Storage = uint8_t;
  static constexpr bool kBlockScaled = true;
  static constexpr int kElementsPerVector = kVectorBytes;  // 16
  static constexpr int kMmasPerVector = kHasFp8Mma ? 2 : kElementsPerVector / (kMmaDepth / kLanesPerRow);  // 2 or 4
  static constexpr float kProductScale = kHasFp8Mma ? 1.0f : kFp8WidenedProductScale;

  __device__ static void weightFragment(const uint4& rowG, const uint4& rowG8, int q, uint32_t (&a)[4]) {
    if constexpr (kHasFp8Mma) {
      DenseOperands<F16>::weightFragment(rowG, rowG8, q, a);  // the same words, four values each
    } else {
      widenFp8x4(word(rowG, q), &a[0], &a[2]);
      widenFp8x4(word(rowG8, q), &a[1], &a[3]);
    }
  }
  __device__ static void tokenFragment(const uint4& token, int q, uint32_t (&b)[2]) {
    if constexpr (kHasFp8Mma) {
      DenseOperands<F16>::tokenFragment(token, q, b);
    } else {
      widenFp8x4(word(token, q), &b[0], &b[1]);
    }
  }
  __device__ static void mma(float (&c)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
    if constexpr (kHasFp8Mma) {
      mma16832Fp8(c, a[0], a[1], a[2], a[3], b[0], b[1]);
    } else {
      mma16816<F16>(c, a[0], a[1], a[2], a[3], b[0], b[1]);
    }
  }
};

template <class Operands>
constexpr int kChunkDepth = kLanesPerRow * Operands::kElementsPerVector * kVectorsPerChunk;  // 64 or 128
static_assert(kChunkDepth<Fp8Operands> == kFp8BlockSize, "an FP8 chunk is one block of scales");

// ---- Launch configurations ---------------------------------------------------------------------
// kWarps: warps per block, all on the same column tile, splitting K between them.
// kColumnTiles: 16-row mma tiles per item (more tiles: fewer re-reads of the tokens per weight).
// kUnroll: chunks whose loads a warp issues before its first mma (bytes in flight per warp).
// kMaxTokenGroups: 8-row token groups per pass (rows an expert can have before a second pass).
// kMinBlocks: blocks per multiprocessor the register allocation must allow (__launch_bounds__;
// 1: no limit beyond the block's own).
template <int warps, int columnTiles, int unroll, int maxTokenGroups, int minBlocks = 1>
struct StreamConfig {
  static constexpr int kWarps = warps;
  static constexpr int kMinBlocks = minBlocks;
  static constexpr int kColumnTiles = columnTiles;
  static constexpr int kUnroll = unroll;
  static constexpr int kMaxTokenGroups = maxTokenGroups;
  static constexpr int kThreads = kWarps * kWarpSize;
  static constexpr int kRowsPerPass = kMmaTokens * kMaxTokenGroups;
  static_assert((maxTokenGroups & (maxTokenGroups - 1)) == 0, "passes halve the token groups");
};

// The configurations groupedGemm() picks from (measured on an H100 against wider column tiles,
// deeper unrolling and 16-row passes: bench/NOTES.md). All take up to 32 rows per expert in one
// pass; they differ in how many warps split K. Short K wants small blocks, so that more of them
// are resident and every item starts in the first round; long K wants more warps per item.
using ShortDepthConfig = StreamConfig<2, 1, 2, 4>;
using DecodeConfig = StreamConfig<4, 1, 2, 4>;
using LongDepthConfig = StreamConfig<8, 1, 2, 4>;
constexpr int64_t kShortDepth = 1024;  // K up to this: 2 warps per item
constexpr int64_t kLongDepth = 4096;   // K from this: 8 warps per item

// ---- The problem ---------------------------------------------------------------------------------
// How the two weight rows of an mma row pair (g, g + 8) map to output columns.
enum class Pairing : int32_t {
  Plain,        // rows 16u + g and 16u + g + 8; each is its own output column
  Halves,       // gate row 8u + g, up row N/2 + 8u + g → output column 8u + g
  Interleaved,  // gate row 2(8u + g), up row 2(8u + g) + 1 → output column 8u + g
};

struct StreamProblem {
  const void* input;          // [rows, depth], or [T, depth] read through `gather`
  const void* weights;        // [experts, cols, depth]
  const float* inputScales;   // Fp8Operands: [rows, depthBlocks]
  const float* weightScales;  // Fp8Operands: [experts, colBlocks, depthBlocks]
  const void* bias;           // [experts, cols] or nullptr
  DType biasDType;
  void* output;               // [rows, outputCols]
  DType outputDType;
  const int32_t* offsets;     // [experts + 1], device; nullptr: one expert owning every row (linear)
  int32_t experts;
  int64_t rows;
  int64_t cols;
  int64_t depth;
  int64_t depthBlocks;        // Fp8Operands: ceil(depth / 128)
  int64_t colBlocks;          // Fp8Operands: ceil(cols / 128)
  int64_t outputCols;
  int64_t itemsPerExpert;     // column tiles: cols / (16 · kColumnTiles)
  Pairing pairing;
  bool activate;              // apply `kind` in the epilogue
  ActivationKind kind;
  float alpha;
  float limit;
  FaultSink faults;           // where a bad offset is reported
  RowGather gather;           // gathered rows (16-bit dense operands only: grouped_gemm.cu)
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

// A scale of the FP8 block `block` from a row of scales (nullptr: a row past the pass, scale 0).
__device__ __forceinline__ float loadScale(const float* scales, int64_t block, int64_t blocks) {
  return scales != nullptr && block < blocks ? __ldg(scales + block) : 0.0f;
}

// ---- Finding the work ----------------------------------------------------------------------------
__device__ inline void expertRows(const StreamProblem& p, int32_t expert, int64_t* begin, int64_t* end) {
  if (p.offsets == nullptr) {
    *begin = 0;
    *end = p.rows;
    return;
  }
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
// With block scales, also the rows of scales its accumulators need: the weight blocks of rows g
// and g + 8, and the tokens 2c and 2c + 1 of each group (nullptr past the pass).
template <class Operands, class Config, int tokenGroups>
struct LaneOperands {
  using T = typename Operands::Storage;
  const T* weightRows[Config::kColumnTiles][2];
  const T* tokenRows[tokenGroups];
  const float* weightScaleRows[Config::kColumnTiles][2];
  const float* tokenScaleRows[tokenGroups][2];
  int depthOffset;  // the lane's first K position within a vector's span (the pointers include it)
};

// The registers of one chunk: per mma tile and row, and per token group, kVectorsPerChunk vectors;
// with block scales, the chunk's scales for this lane's accumulators.
template <class Config, int tokenGroups>
struct ChunkRegisters {
  uint4 weights[Config::kColumnTiles][2][kVectorsPerChunk];
  uint4 tokens[tokenGroups][kVectorsPerChunk];
  float weightScales[Config::kColumnTiles][2];
  float tokenScales[tokenGroups][2];
};

// Lane (g, c) reads elements [v·span + c·e, +e) of its rows in each vector v of a chunk (e values
// per vector, span = 4e). A warp thus reads 64 contiguous bytes of each of its 16 weight rows per
// load instruction.
template <class Operands, class Config, int tokenGroups>
__device__ __forceinline__ void loadChunk(const StreamProblem& p, const LaneOperands<Operands, Config, tokenGroups>& lane,
                                          int64_t chunk, ChunkRegisters<Config, tokenGroups>& r) {
#pragma unroll
  for (int v = 0; v < kVectorsPerChunk; ++v) {
    const int64_t k = chunk * kChunkDepth<Operands> + v * kLanesPerRow * Operands::kElementsPerVector;
    // depth % (values per vector) == 0, so a lane's vector is wholly inside K or wholly past it
    // (past the last chunk too); lanes of one load may differ when K is not a multiple of the span.
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
  if constexpr (Operands::kBlockScaled) {
#pragma unroll
    for (int t = 0; t < Config::kColumnTiles; ++t) {
#pragma unroll
      for (int half = 0; half < 2; ++half) r.weightScales[t][half] = loadScale(lane.weightScaleRows[t][half], chunk, p.depthBlocks);
    }
#pragma unroll
    for (int j = 0; j < tokenGroups; ++j) {
#pragma unroll
      for (int e = 0; e < 2; ++e) r.tokenScales[j][e] = loadScale(lane.tokenScaleRows[j][e], chunk, p.depthBlocks);
    }
  }
}

// acc += one chunk's products (times 2^-16 for widened FP8 operands: fp8.cuh).
template <class Operands, class Config, int tokenGroups>
__device__ __forceinline__ void mmaChunk(const ChunkRegisters<Config, tokenGroups>& r,
                                         float (&acc)[Config::kColumnTiles][tokenGroups][kAccumulators]) {
#pragma unroll
  for (int v = 0; v < kVectorsPerChunk; ++v) {
#pragma unroll
    for (int q = 0; q < Operands::kMmasPerVector; ++q) {
#pragma unroll
      for (int t = 0; t < Config::kColumnTiles; ++t) {
        uint32_t a[4];
        Operands::weightFragment(r.weights[t][0][v], r.weights[t][1][v], q, a);
#pragma unroll
        for (int j = 0; j < tokenGroups; ++j) {
          uint32_t b[2];
          Operands::tokenFragment(r.tokens[j][v], q, b);
          Operands::mma(acc[t][j], a, b);
        }
      }
    }
  }
}

// sums += one chunk's products. With block scales the chunk is one scale block: its products are
// summed from zero and promoted into `sums` times (weight scale × token scale × kProductScale, the
// last undoing any widening of the operands).
template <class Operands, class Config, int tokenGroups>
__device__ __forceinline__ void multiplyChunk(const ChunkRegisters<Config, tokenGroups>& r,
                                              float (&sums)[Config::kColumnTiles][tokenGroups][kAccumulators]) {
  if constexpr (!Operands::kBlockScaled) {
    mmaChunk<Operands, Config, tokenGroups>(r, sums);
  } else {
    float blockSums[Config::kColumnTiles][tokenGroups][kAccumulators] = {};
    mmaChunk<Operands, Config, tokenGroups>(r, blockSums);
#pragma unroll
    for (int t = 0; t < Config::kColumnTiles; ++t) {
#pragma unroll
      for (int j = 0; j < tokenGroups; ++j) {
#pragma unroll
        for (int i = 0; i < kAccumulators; ++i) {
          // c0, c1: weight row g; c2, c3: row g + 8. c0, c2: token 2c; c1, c3: token 2c + 1.
          const float factor = r.weightScales[t][i / 2] * r.tokenScales[j][i % 2] * Operands::kProductScale;
          sums[t][j][i] = fmaf(blockSums[t][j][i], factor, sums[t][j][i]);
        }
      }
    }
  }
}

// This warp's share of K for one pass: chunks warp, warp + kWarps, ..., kUnroll at a time so that
// kUnroll chunks of loads are in flight before the first of them is consumed.
template <class Operands, class Config, int tokenGroups>
__device__ void streamDepth(const StreamProblem& p, const LaneOperands<Operands, Config, tokenGroups>& lane,
                            float (&sums)[Config::kColumnTiles][tokenGroups][kAccumulators]) {
  const int warp = threadIdx.x / kWarpSize;
  const int64_t chunks = (p.depth + kChunkDepth<Operands> - 1) / kChunkDepth<Operands>;
  for (int64_t first = warp; first < chunks; first += Config::kWarps * Config::kUnroll) {
    ChunkRegisters<Config, tokenGroups> batch[Config::kUnroll];
#pragma unroll
    for (int u = 0; u < Config::kUnroll; ++u) loadChunk(p, lane, first + u * Config::kWarps, batch[u]);
#pragma unroll
    for (int u = 0; u < Config::kUnroll; ++u) multiplyChunk<Operands, Config, tokenGroups>(batch[u], sums);
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
  constexpr int kHalvesPerLane = 2;
  constexpr int kWarpStride = Config::kColumnTiles * tokenGroups * kAccumulators * kWarpSize;
  constexpr int kUnits = Config::kColumnTiles * tokenGroups * kHalvesPerLane * kWarpSize;
  for (int unit = threadIdx.x; unit < kUnits; unit += Config::kThreads) {
    const int lane = unit % kWarpSize;
    const int h = (unit / kWarpSize) % kHalvesPerLane;
    const int group = (unit / (kWarpSize * kHalvesPerLane)) % tokenGroups;
    const int tile = unit / (kWarpSize * kHalvesPerLane * tokenGroups);
    const int64_t row = passBegin + group * kMmaTokens + 2 * (lane % kLanesPerRow) + h;
    if (row >= passEnd) continue;
    const float* first = partials + ((tile * tokenGroups + group) * kAccumulators + h) * kWarpSize + lane;
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

// Parks this warp's sums in `partials`, then adds the warps' sums and writes the pass's outputs
// (finishPass). Contains __syncthreads(): call from every thread.
template <class Config, int tokenGroups>
__device__ void reduceAndFinishPass(const StreamProblem& p, float* partials,
                                    const float (&sums)[Config::kColumnTiles][tokenGroups][kAccumulators], int32_t expert,
                                    int64_t firstTile, int64_t passBegin, int64_t passEnd) {
  const int warp = threadIdx.x / kWarpSize;
  const int lane = threadIdx.x % kWarpSize;
  constexpr int kWarpStride = Config::kColumnTiles * tokenGroups * kAccumulators * kWarpSize;
#pragma unroll
  for (int t = 0; t < Config::kColumnTiles; ++t) {
#pragma unroll
    for (int j = 0; j < tokenGroups; ++j) {
#pragma unroll
      for (int r = 0; r < kAccumulators; ++r) {
        partials[warp * kWarpStride + ((t * tokenGroups + j) * kAccumulators + r) * kWarpSize + lane] = sums[t][j][r];
      }
    }
  }
  __syncthreads();
  finishPass<Config, tokenGroups>(p, partials, expert, firstTile, passBegin, passEnd);
  __syncthreads();  // partials are rewritten by the next pass
}

// One pass: rows [passBegin, passEnd) of `expert` (at most 8 · tokenGroups) against the item's
// column tile. Contains __syncthreads(): call from every thread.
template <class Operands, class Config, int tokenGroups>
__device__ void runPass(const StreamProblem& p, float* partials, int32_t expert, int64_t firstTile, int64_t passBegin,
                        int64_t passEnd) {
  if constexpr (tokenGroups > 1) {
    // Fewer rows than half the groups: the smaller pass loads and multiplies less.
    if (passEnd - passBegin <= kMmaTokens * (tokenGroups / 2)) {
      runPass<Operands, Config, tokenGroups / 2>(p, partials, expert, firstTile, passBegin, passEnd);
      return;
    }
  }
  using T = typename Operands::Storage;
  const int lane = threadIdx.x % kWarpSize;
  const int g = lane / kLanesPerRow;
  const int c = lane % kLanesPerRow;
  const int laneDepth = c * Operands::kElementsPerVector;

  LaneOperands<Operands, Config, tokenGroups> operands;
  operands.depthOffset = laneDepth;
  const T* expertWeights = static_cast<const T*>(p.weights) + static_cast<int64_t>(expert) * p.cols * p.depth;
#pragma unroll
  for (int t = 0; t < Config::kColumnTiles; ++t) {
    int64_t rows[2];
    tileRows(p, firstTile + t, g, &rows[0], &rows[1]);
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      operands.weightRows[t][half] = expertWeights + rows[half] * p.depth + laneDepth;
      if constexpr (Operands::kBlockScaled) {
        const int64_t block = rows[half] / kFp8BlockSize;
        operands.weightScaleRows[t][half] = p.weightScales + (static_cast<int64_t>(expert) * p.colBlocks + block) * p.depthBlocks;
      }
    }
  }
#pragma unroll
  for (int j = 0; j < tokenGroups; ++j) {
    const int64_t row = passBegin + j * kMmaTokens + g;
    // A row whose gathered index is bad reads zeros, as a row past the pass does.
    const int64_t source = row < passEnd ? p.gather.source(row) : -1;
    operands.tokenRows[j] = source >= 0 ? static_cast<const T*>(p.input) + source * p.depth + laneDepth : nullptr;
    if constexpr (Operands::kBlockScaled) {
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const int64_t token = passBegin + j * kMmaTokens + 2 * c + e;
        operands.tokenScaleRows[j][e] = token < passEnd ? p.inputScales + token * p.depthBlocks : nullptr;
      }
    }
  }

  float sums[Config::kColumnTiles][tokenGroups][kAccumulators] = {};
  streamDepth<Operands, Config, tokenGroups>(p, operands, sums);
  reduceAndFinishPass<Config, tokenGroups>(p, partials, sums, expert, firstTile, passBegin, passEnd);
}

template <class Operands, class Config>
__global__ void __launch_bounds__(Config::kThreads) streamGemmKernel(StreamProblem p) {
  __shared__ int32_t active[kMaxExperts];
  __shared__ float partials[Config::kWarps * Config::kColumnTiles * Config::kMaxTokenGroups * kAccumulators * kWarpSize];

  const int activeExperts = listActiveExperts<Config>(p, active);
  const int64_t items = activeExperts * p.itemsPerExpert;
  for (int64_t item = blockIdx.x; item < items; item += gridDim.x) {
    const int32_t expert = active[item / p.itemsPerExpert];
    const int64_t firstTile = (item % p.itemsPerExpert) * Config::kColumnTiles;
    int64_t begin, end;
    expertRows(p, expert, &begin, &end);
    for (int64_t passBegin = begin; passBegin < end; passBegin += Config::kRowsPerPass) {
      runPass<Operands, Config, Config::kMaxTokenGroups>(p, partials, expert, firstTile, passBegin,
                                                         min(passBegin + Config::kRowsPerPass, end));
    }
  }
}

// ---- Launch ------------------------------------------------------------------------------------------
// Resident blocks of one kernel instantiation on the current device, queried once per device.
template <class Operands, class Config>
int64_t residentBlocks() {
  static PerDevice<int64_t> cached;
  return cached.get([](int device) {
    int multiprocessors = 0;
    int perMultiprocessor = 0;
    MOEKIT_CUDA_CHECK(cudaDeviceGetAttribute(&multiprocessors, cudaDevAttrMultiProcessorCount, device));
    MOEKIT_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&perMultiprocessor, streamGemmKernel<Operands, Config>,
                                                                    Config::kThreads, 0));
    return static_cast<int64_t>(multiprocessors) * std::max(perMultiprocessor, 1);
  });
}

// The problem of `args` without its operand pointers (input, inputScales: the caller's to set,
// since an FP8 call may multiply a quantized copy of its input) and with its output.
template <class Config>
StreamProblem problemOf(const GroupedGemmArgs& args, void* output, DType outputDType) {
  const GemmActivation& act = args.activation;
  const bool gated = act.enabled && isGated(act.kind);
  StreamProblem p{};
  p.weights = args.weights.data;
  p.weightScales = args.weightScales.present() ? args.weightScales.as<float>() : nullptr;
  p.bias = args.bias.present() ? args.bias.data : nullptr;
  p.biasDType = args.bias.dtype;
  p.output = output;
  p.outputDType = outputDType;
  p.offsets = args.expertOffsets.as<int32_t>();
  p.faults = FaultSink::of(args);
  p.experts = static_cast<int32_t>(args.weights.dim(0));
  p.rows = gemmRows(args);
  p.gather = RowGather::of(args);
  p.cols = args.weights.dim(1);
  p.depth = args.weights.dim(2);
  p.depthBlocks = fp8Blocks(p.depth);
  p.colBlocks = fp8Blocks(p.cols);
  p.outputCols = gated ? p.cols / 2 : p.cols;
  p.itemsPerExpert = p.cols / (kMmaRows * Config::kColumnTiles);
  p.pairing = !gated ? Pairing::Plain : act.layout == GateLayout::Interleaved ? Pairing::Interleaved : Pairing::Halves;
  p.activate = act.enabled;
  p.kind = act.kind;
  p.alpha = act.alpha;
  p.limit = act.limit;
  return p;
}

template <class Operands, class Config>
void launchStream(const StreamProblem& p, cudaStream_t stream) {
  if (p.rows == 0 || p.cols == 0 || p.experts == 0) return;
  if (p.cols % (kMmaRows * Config::kColumnTiles) != 0) {
    throw NativeError("E_INVALID_ARGUMENT", "small_m grouped GEMM: " + std::to_string(p.cols) +
                                                " columns do not fill whole column tiles");
  }
  // At most min(experts, rows) experts own rows; a persistent grid no larger than the device holds.
  const int64_t maxItems = std::min<int64_t>(p.experts, p.rows) * p.itemsPerExpert;
  const int64_t blocks = std::max<int64_t>(std::min(maxItems, residentBlocks<Operands, Config>()), 1);
  streamGemmKernel<Operands, Config><<<static_cast<unsigned>(blocks), Config::kThreads, 0, stream>>>(p);
  MOEKIT_CHECK_LAUNCH("streamGemmKernel");
}

// Calls body(Config{}) with the configuration for 16-bit operands and K = depth.
template <typename Body>
void dispatchConfig(int64_t depth, Body&& body) {
  if (depth <= kShortDepth) {
    body(ShortDepthConfig{});
  } else if (depth >= kLongDepth) {
    body(LongDepthConfig{});
  } else {
    body(DecodeConfig{});
  }
}

// The configurations for FP8 operands (measured on an H200 against one column tile and 4 or 8
// warps: bench/NOTES.md, fp8-v2). An FP8 weight row is half the bytes of a 16-bit one, so an item
// of one column tile streams too little to hide its start and its reduction: two column tiles
// (which also share each token load) and two warps splitting K, four on the longest rows.
using Fp8Config = StreamConfig<2, 2, 2, 4>;
using Fp8LongDepthConfig = StreamConfig<4, 2, 2, 4>;
constexpr int64_t kFp8LongDepth = 8192;  // K above this: 4 warps per item

// The first compute capability with FP8 mma.sync (mma_sync.cuh: kHasFp8Mma).
constexpr int kFp8MmaCapability = 89;

// Calls body(Config{}) with the configuration for FP8 operands, K = depth and N = cols. The
// two-tile configurations need FP8 mmas (widening the operands takes registers they don't have)
// and N that fills whole two-tile items; other calls take the 16-bit configurations.
template <typename Body>
void dispatchFp8Config(int64_t depth, int64_t cols, Body&& body) {
  static_assert(Fp8Config::kColumnTiles == Fp8LongDepthConfig::kColumnTiles, "one column-tile rule");
  if (computeCapability() < kFp8MmaCapability || cols % (kMmaRows * Fp8Config::kColumnTiles) != 0) {
    dispatchConfig(depth, body);
  } else if (depth > kFp8LongDepth) {
    body(Fp8LongDepthConfig{});
  } else {
    body(Fp8Config{});
  }
}

}  // namespace detail

// The FP8 half of groupedGemm() (grouped_gemm_small_m_fp8.cu), and whether it takes a call.
bool supportsFp8(const GroupedGemmArgs& args);
void fp8GroupedGemm(const GroupedGemmArgs& args, cudaStream_t stream);

}  // namespace moekit::cuda::small_m
