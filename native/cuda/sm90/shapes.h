// The sm90 grouped GEMM's tile shapes and the host-side arithmetic on them, shared by the
// dispatcher (grouped_gemm_sm90.cu) and the kernel's instantiations (sm90/instances_*.cu).
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "../../core/op_args.h"
#include "problem.h"
#include "scheduler.cuh"

namespace moekit::cuda::sm90 {

constexpr int kWarpgroupThreads = 128;
constexpr int kDefaultConsumers = 2;
// Shared memory a block may use on sm_90 (227 KB), and the alignment 128-byte swizzling needs.
constexpr int kMaxSharedBytes = 227 * 1024;
constexpr int kSwizzleAlignment = 1024;

// The 16-bit epilogue's staging (sm90/bulk_store.cuh): per consumer warpgroup, kStoreBuffers
// boxes of kConsumerRows × kStoreColumns outputs, their 64-byte rows in TMA's 64-byte swizzle.
constexpr int kStoreColumns = 32;
constexpr int kStoreRowBytes = kStoreColumns * 2;
constexpr int kStoreBuffers = 2;  // one filled while the copy engine reads the other
constexpr int kStoreBoxBytes = kConsumerRows * kStoreRowBytes;
constexpr int kStoreRowGroup = 8;  // rows per box where a consumer's rows end inside its 64

// ---- Tile shapes ---------------------------------------------------------------------------------------
// How a CTA's consumer warpgroups share its tiles (sm90/kernel.cuh):
//   Cooperative: every tile is split between the consumers, 64 rows each, so they run their main
//                loops together and then their epilogues together, the tensor cores idle meanwhile;
//   PingPong:    each consumer takes every other tile whole, and the consumers take turns at the
//                main loop, so one stores its tile while the other multiplies (measured to pay on
//                plain products of K 2048-4096 with several row tiles per expert, and on gated ones
//                of K up to 2048 with one row tile per expert or less; the rule is in
//                grouped_gemm_sm90.cu).
enum class Schedule { Cooperative, PingPong };

// blockN: columns of the accumulator tile (wgmma's N; 256 at most); stages: depth of the ring;
// consumers: consumer warpgroups, each holding 64 rows of the tile (Cooperative) or all of them.
template <int blockN, int stages, int consumers = kDefaultConsumers, Schedule schedule = Schedule::Cooperative>
struct TileShape {
  static constexpr Schedule kSchedule = schedule;
  static constexpr int kConsumers = consumers;
  // Consumer warpgroups that read each stage (its "empty" barrier counts their warps).
  static constexpr int kStageReaders = schedule == Schedule::PingPong ? 1 : consumers;
  static constexpr int kBlockM = kConsumers * kConsumerRows;
  static constexpr int kBlockN = blockN;
  static constexpr int kBlockK = 64;  // 16-bit elements in one 128-byte swizzled row
  static constexpr int kStepK = 16;   // K per wgmma
  static constexpr int kStages = stages;
  static constexpr int kThreads = (1 + kConsumers) * kWarpgroupThreads;
  static constexpr int kElementBytes = 2;
  static constexpr int kRowBytes = kBlockK * kElementBytes;
  static constexpr int kABytes = kBlockM * kRowBytes;
  static constexpr int kBBytes = kBlockN * kRowBytes;
  static constexpr int kStageBytes = kABytes + kBBytes;
  static constexpr int kConsumerABytes = kABytes / kConsumers;  // 64 rows of A (one consumer's, Cooperative)
  static constexpr int kAccumulators = kBlockN / 2;              // per thread per 64 rows (wgmma.cuh)
  static constexpr int kStagingBytes = kConsumers * kStoreBuffers * kStoreBoxBytes;  // after the ring
  static constexpr int kDynamicSharedBytes = kStages * kStageBytes + kStagingBytes + kSwizzleAlignment;
  // What the producer copies per stage (sm90/kernel.cuh, produce()).
  static constexpr int kWeightBoxBytes = kBBytes;
  static constexpr int kWeightSliceWidth = kBlockK;
  static constexpr int kLoadedBytes = kABytes + kWeightBoxBytes;
  static_assert(kRowBytes == 128, "one K slice is one 128-byte swizzle row");
  static_assert(kBlockK % kStepK == 0, "whole wgmma steps per K slice");
  static_assert(kConsumerABytes % kSwizzleAlignment == 0, "each consumer's rows start on a swizzle atom");
  static_assert(kAccumulators * kWarpgroupThreads == 64 * kBlockN, "a warpgroup holds its 64 × blockN products");
  static_assert(schedule == Schedule::Cooperative || (consumers == 2 && blockN <= 128),
                "ping-pong: two consumers take turns, each with a whole tile's accumulators in registers");
  static_assert(kStageBytes % kSwizzleAlignment == 0 && kBBytes / 2 % kSwizzleAlignment == 0,
                "every operand box starts on a swizzle atom");
  static_assert(kDynamicSharedBytes + static_cast<int>(sizeof(ExpertTiles)) + 2 * kStages * 8 <= kMaxSharedBytes,
                "the ring, the output staging, the expert table and the barriers fit in shared memory");
};

// The shapes groupedGemm() picks from. The ping-pong tile has the narrow tile's ring; each
// consumer holds its 128 × 128 tile in 128 registers per thread (two m64 wgmmas per K step).
using WideTile = TileShape<256, 4>;
using NarrowTile = TileShape<128, 6>;
using PingPongTile = TileShape<128, 6, kDefaultConsumers, Schedule::PingPong>;

// ---- FP8 tile shapes -------------------------------------------------------------------------------------
// e4m3 operands (WeightFormat::Fp8Block128; the kernel: sm90/kernel_fp8.cuh). A 128-byte swizzled
// row holds 128 values, one K block of the scales, so each stage of the ring is one scale block.
// The consumers multiply in halves of 128 columns (m64n128k32): each half's products of a stage
// land in kHalfAccumulators registers summed from zero, then go into the float32 accumulators
// times their scales. Registers per consumer thread: kAccumulators + kHalfAccumulators (192 for
// the wide tile), which the 232 of setmaxnreg hold, where two full-width sets would not.
template <int halves, int stages>
struct Fp8TileShape {
  static constexpr int kConsumers = kDefaultConsumers;
  static constexpr int kBlockM = kConsumers * kConsumerRows;
  static constexpr int kHalfN = 128;               // wgmma's N
  static constexpr int kHalves = halves;
  static constexpr int kBlockN = halves * kHalfN;
  static constexpr int kBlockK = static_cast<int>(kFp8BlockSize);  // e4m3 values in one 128-byte row
  static constexpr int kStepK = 32;                                // K per wgmma
  static constexpr int kStages = stages;
  static constexpr int kStageReaders = kConsumers;  // cooperative: both consumers read every stage
  static constexpr int kThreads = (1 + kConsumers) * kWarpgroupThreads;
  static constexpr int kElementBytes = 1;
  static constexpr int kRowBytes = kBlockK * kElementBytes;
  static constexpr int kABytes = kBlockM * kRowBytes;
  static constexpr int kBBytes = kBlockN * kRowBytes;
  static constexpr int kHalfBBytes = kHalfN * kRowBytes;
  static constexpr int kStageBytes = kABytes + kBBytes;
  static constexpr int kConsumerABytes = kABytes / kConsumers;
  static constexpr int kAccumulators = kBlockN / 2;      // per thread: the tile's float32 sums
  static constexpr int kHalfAccumulators = kHalfN / 2;   // per thread: one half's block products
  static constexpr int kDynamicSharedBytes = kStages * kStageBytes + kSwizzleAlignment;
  static constexpr int kWeightBoxBytes = kBBytes;  // what the producer copies per stage (produce())
  static constexpr int kWeightSliceWidth = kBlockK;
  static constexpr int kLoadedBytes = kABytes + kWeightBoxBytes;
  static_assert(kRowBytes == 128, "one K slice is one 128-byte swizzle row");
  static_assert(kBlockK % kStepK == 0, "whole wgmma steps per K slice");
  static_assert(kConsumerABytes % kSwizzleAlignment == 0 && kHalfBBytes % kSwizzleAlignment == 0,
                "every operand box and half starts on a swizzle atom");
  static_assert(kStageBytes % kSwizzleAlignment == 0 && kBBytes / 2 % kSwizzleAlignment == 0,
                "every operand box starts on a swizzle atom");
  static_assert(kDynamicSharedBytes + static_cast<int>(sizeof(ExpertTiles)) + 2 * kStages * 8 <= kMaxSharedBytes,
                "the ring, the expert table and the barriers fit in shared memory");
};

// The FP8 shapes: the wide tile for gated activations (its 128 outputs per row are one group of
// the output's FP8 scales) and most calls; the narrow one for plain products of few rows per expert.
using Fp8WideTile = Fp8TileShape<2, 4>;
using Fp8NarrowTile = Fp8TileShape<1, 6>;

// ---- Weight-only tile shapes ----------------------------------------------------------------------------
// Int8 / Int4 / MXFP4 weights (sm90/kernel_wq.cuh): TMA brings each K slice's packed weight bytes
// into a plain (unswizzled) "raw" box beside the stage, a converter warpgroup writes them out as
// the 16-bit B box the consumers' wgmmas read, so a stage holds A, B and the raw bytes. The tiles
// are 128 columns wide: the converter warpgroups leave too few registers for 64 × 256 accumulator
// tiles. Two heights:
//   tall  (two consumers, 128 rows): the most products per converted weight;
//   short (one consumer, 64 rows), for few rows per expert (grouped_gemm_sm90.cu): the tall
//         tile's second consumer would multiply mostly rows past the expert's (another expert's,
//         not stored), and its reads of A and B add to each stage's shared-memory traffic
//         (bench/NOTES.md, wq-v7). Its stages are smaller, so the ring is deeper.
template <int bitsPerWeight, int stages, int consumers = kDefaultConsumers>
struct WqTileShape : TileShape<128, stages, consumers> {
  using Base = TileShape<128, stages, consumers>;
  static constexpr int kConverters = 2;  // converter warpgroups (two warps per scheduler: wq-v5)
  static constexpr int kWarpgroups = 1 + kConverters + consumers;  // producer, converters, consumers
  static constexpr int kThreads = kWarpgroups * kWarpgroupThreads;
  static constexpr int kRawRowBytes = Base::kBlockK * bitsPerWeight / 8;  // one row's packed K slice
  static constexpr int kRawBytes = Base::kBlockN * kRawRowBytes;
  static constexpr int kStageBytes = Base::kABytes + Base::kBBytes + kRawBytes;
  static constexpr int kDynamicSharedBytes = stages * kStageBytes + kSwizzleAlignment;
  // The producer copies A and the raw box; K slices of the packed map are counted in bytes.
  static constexpr int kWeightBoxBytes = kRawBytes;
  static constexpr int kWeightSliceWidth = kRawRowBytes;
  static constexpr int kLoadedBytes = Base::kABytes + kRawBytes;
  static_assert(kRawRowBytes % 16 == 0, "TMA box rows are multiples of 16 bytes");
  static_assert(kStageBytes % kSwizzleAlignment == 0, "every stage's A and B boxes start on a swizzle atom");
  static_assert(stages % kConverters == 0, "a stage is always converted by the same converter warpgroup");
  static_assert(kDynamicSharedBytes + static_cast<int>(sizeof(ExpertTiles)) + 3 * stages * 8 <= kMaxSharedBytes,
                "the ring, the expert table and the barriers fit in shared memory");
};

// An even number of stages (the two converters take alternate stages, sm90/kernel_wq.cuh), as
// many as fit shared memory with each size of raw box.
using WqNibbleTile = WqTileShape<4, 4>;          // Int4, MXFP4
using WqByteTile = WqTileShape<8, 4>;            // Int8
using WqNibbleShortTile = WqTileShape<4, 6, 1>;
using WqByteShortTile = WqTileShape<8, 6, 1>;

// ---- Host-side tile arithmetic ------------------------------------------------------------------------
inline bool gatedPairs(const GroupedGemmArgs& args) { return args.activation.enabled && isGated(args.activation.kind); }

inline Pairing pairingOf(const GroupedGemmArgs& args) {
  if (!gatedPairs(args)) return Pairing::Plain;
  return args.activation.layout == GateLayout::Interleaved ? Pairing::Interleaved : Pairing::Halves;
}

// Column tiles per row tile: a gated tile of blockN products yields blockN / 2 outputs.
inline int64_t columnTilesOf(int64_t cols, int blockN, Pairing pairing) {
  return pairing == Pairing::Plain ? (cols + blockN - 1) / blockN : (cols / 2 + blockN / 2 - 1) / (blockN / 2);
}

// Rows per expert on average (the product's rows over the experts): what the tile and schedule
// rules of grouped_gemm_sm90.cu go by, known on the host without reading the offsets.
inline int64_t meanRowsPerExpert(const GroupedGemmArgs& args) { return gemmRows(args) / std::max<int64_t>(args.weights.dim(0), 1); }

// More tiles than this could exist (whatever the offsets say): every row tile of every expert.
inline int64_t tileBound(const GroupedGemmArgs& args, int blockM, int blockN) {
  const int64_t rows = gemmRows(args);
  const int64_t experts = args.weights.dim(0);
  return ((rows + blockM - 1) / blockM + experts) * columnTilesOf(args.weights.dim(1), blockN, pairingOf(args));
}

// Whether 16-bit outputs of `pairing` go through the copy engine (sm90/bulk_store.cuh):
// MOEKIT_SM90_STORES=registers stores them from registers instead, so a bench can time both and
// the tests can run both. Defined in grouped_gemm_sm90.cu.
bool bulkStoresEnabled(Pairing pairing);

// Launches the kernel of one operand type (BF16 or F16, float_access.cuh) and tile shape on
// `args`. Instantiated once per pair in sm90/instances_*.cu, so the four compile in parallel (each
// holds every pairing and epilogue of its kernel, which takes the compiler a while).
template <typename Element, class Shape>
void launchShape(const GroupedGemmArgs& args, cudaStream_t stream, int32_t bandRowTiles = kBandRowTiles);

// Launches the FP8 kernel of one tile shape (Fp8WideTile or Fp8NarrowTile) on `args`, whose input
// arrives as `input` [rows, depth] e4m3 with `inputScales` [rows, ceil(depth / 128)] (the args' own
// or a quantized copy). Instantiated per shape in sm90/instances_fp8_*.cu.
template <class Shape>
void launchFp8Shape(const GroupedGemmArgs& args, const uint8_t* input, const float* inputScales, cudaStream_t stream,
                    int32_t bandRowTiles = kBandRowTiles);

// Launches the weight-only kernel (Int8, Int4 or MXFP4 weights dequantized in shared memory) for
// one 16-bit operand type (BF16 or F16), on the short tile or the tall one. Instantiated per type
// in sm90/instances_wq_*.cu.
template <typename Element>
void launchWqShape(const GroupedGemmArgs& args, cudaStream_t stream, bool shortTile, int32_t bandRowTiles = kBandRowTiles);

}  // namespace moekit::cuda::sm90
