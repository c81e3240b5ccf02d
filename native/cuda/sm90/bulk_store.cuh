// The 16-bit epilogue by the copy engine (plain outputs, and gated ones of GateLayout::Halves,
// whose outputs a thread holds in the same fragment layout): a consumer warpgroup writes its 64
// rows of outputs into shared memory a box of 64 × kStoreColumns at a time (stmatrix, straight
// from the wgmma fragments) and one of its threads hands each box to TMA, which writes whole
// lines to global memory while the warpgroup fills the next box and, after the last, starts its
// next tile's main loop. Stored from registers instead (storeTile()), each warp instruction
// writes 16 of the 32 bytes of 8 sectors, and the tensor cores wait until the last store has
// issued (bench/NOTES.md v3, item 3: 20-40% of a down GEMM's time at short K).
//
// Each consumer owns kStoreBuffers boxes and fills them in turn; a box is refilled only once the
// store that read it last has finished reading (waitBulkStoresRead() before the warpgroup's
// barrier, by the thread that issued it). Rows past the expert's end must not be written (another
// tile owns them), and TMA stores whole boxes: a consumer whose 64 rows reach past it stores its
// rows in boxes of kStoreRowGroup rows (a second tensor map) and copies the last few itself.
#pragma once

#include <cuda.h>

#include <cstdint>

#include "../float_access.cuh"
#include "arch.h"
#include "epilogue.cuh"
#include "problem.h"
#include "ptx.cuh"
#include "scheduler.cuh"
#include "shapes.h"

namespace moekit::cuda::sm90 {

#if MOEKIT_SM90A_DEVICE

// One consumer warpgroup's staging boxes and the state of its store pipeline. Absent (map nullptr)
// where the outputs are stored from registers.
struct OutputStaging {
  const CUtensorMap* map = nullptr;       // the output [rows, outputCols], boxes of kConsumerRows × kStoreColumns
  const CUtensorMap* groupMap = nullptr;  // the same output, boxes of kStoreRowGroup × kStoreColumns
  uint8_t* boxes = nullptr;               // kStoreBuffers boxes of kStoreBoxBytes, 1024-byte aligned
  uint32_t barrier = 0;                   // the warpgroup's named barrier (kernel.cuh numbers them)
  int next = 0;                           // the box the next store goes through

  __device__ bool present() const { return map != nullptr; }
  // The warpgroup's thread 0 issues the stores and waits on them (bulk groups are per thread).
  __device__ static bool issuer() { return threadIdx.x % kWarpgroupThreads == 0; }
  // Before the CTA exits: its last stores finished (they read shared memory the CTA owns).
  __device__ void drain() const {
    if (present() && issuer()) waitBulkStores();
  }
};

namespace detail {
constexpr int kMatrixRows = 8;                                         // of stmatrix's 8 × 8 matrices
constexpr int kStoreChunkBytes = 16;                                   // a matrix row; one vector copy
constexpr int kStoreChunksPerRow = kStoreRowBytes / kStoreChunkBytes;  // 4

// Where chunk `chunk` of box row `row` lies: TMA's 64-byte swizzle moves it by bits 1-2 of the row.
__device__ __forceinline__ uint32_t stagedChunkOffset(int row, int chunk) {
  return row * kStoreRowBytes + ((chunk ^ ((row >> 1) % kStoreChunksPerRow)) * kStoreChunkBytes);
}

// The thread's two outputs of output chunk `j` (8 columns), row half `h`, as one 16-bit pair:
// Plain, accumulator chunk j (+ bias, activated); Halves, gate chunk j and up chunk j + blockN / 16.
template <Pairing pairing, int blockN, typename Element, bool activate, ActivationKind kind>
__device__ __forceinline__ uint32_t finishedPair(const Problem& p, const float (&acc)[blockN / 2], int j, int h,
                                                 const GatedBias& bias) {
  if constexpr (pairing == Pairing::Halves) {
    const float2 outputs = activateHalves<blockN>(p, kind, acc, j, h, bias);
    return packPair<Element>(outputs.x, outputs.y);
  } else {
    const float* pair = &acc[j * kChunkRegisters + 2 * h];
    return packPair<Element>(finishPlain<activate, kind>(pair[0] + bias.gate0), finishPlain<activate, kind>(pair[1] + bias.gate1));
  }
}

// The biases of output columns `column` and column + 1 (for Plain in gate0 and gate1), zero past
// the output's width (the bias has no entry there).
template <Pairing pairing>
__device__ __forceinline__ GatedBias outputBias(const Problem& p, int32_t expert, int32_t column) {
  if (column >= p.outputCols) return GatedBias{};
  if constexpr (pairing == Pairing::Halves) {
    return gatedBiasAt(p, expert, column, p.cols / 2);
  } else {
    return GatedBias{biasAt(p, expert, column), biasAt(p, expert, column + 1), 0.0f, 0.0f};
  }
}

// A consumer whose rows reach past the expert's end: its whole groups of kStoreRowGroup rows by
// TMA (a group starts on a 512-byte boundary, where the swizzle pattern repeats), the rows of the
// last, partial group copied out by the warpgroup's threads, 16 bytes at a time, columns past
// the output's width left out.
__device__ __forceinline__ void storeBoxRows(const Problem& p, const OutputStaging& staging, const uint8_t* box, int32_t firstRow,
                                             int rows, int32_t firstColumn) {
  constexpr int kGroupBytes = kStoreRowGroup * kStoreRowBytes;
  constexpr int kOutputBytes = 2;
  static_assert((kStoreRowGroup - 1) * kStoreChunksPerRow <= kWarpgroupThreads, "a thread per chunk of the last rows");
  const int groups = rows / kStoreRowGroup;
  if (OutputStaging::issuer()) {
    for (int group = 0; group < groups; ++group) {
      storeTile2d(staging.groupMap, box + group * kGroupBytes, firstColumn, firstRow + group * kStoreRowGroup);
    }
    commitBulkStores();
  }
  const int index = threadIdx.x % kWarpgroupThreads;  // one chunk each: fewer than 8 rows of 4
  const int row = groups * kStoreRowGroup + index / kStoreChunksPerRow, chunk = index % kStoreChunksPerRow;
  const int32_t column = firstColumn + chunk * (kStoreChunkBytes / kOutputBytes);
  if (row >= rows || column >= p.outputCols) return;
  const uint4 values = loadShared128(sharedAddress(box) + stagedChunkOffset(row, chunk));
  *reinterpret_cast<uint4*>(static_cast<uint8_t*>(p.output) + (static_cast<int64_t>(firstRow + row) * p.outputCols + column) * kOutputBytes) =
      values;
}
}  // namespace detail

// Stores a consumer's 64 rows of a tile, rows firstRow.. (the tile's rows from `firstRow` on that
// belong to its expert), through `staging`.
template <Pairing pairing, int blockN, typename Element, bool activate, ActivationKind kind>
__device__ void bulkStoreRows(const Problem& p, const Tile& tile, int32_t firstRow, const float (&acc)[blockN / 2],
                              OutputStaging& staging) {
  using namespace detail;
  static_assert(pairing != Pairing::Interleaved, "an interleaved tile's outputs are not in fragment layout");
  constexpr int kTileColumns = pairing == Pairing::Halves ? blockN / 2 : blockN;  // outputs per row
  constexpr int kBoxChunks = kStoreColumns / kChunkColumns;  // output chunks per box: 4
  constexpr int kMatrixChunks = 2;                            // output chunks per stmatrix.x4
  const int rows = min(kConsumerRows, tile.rowEnd - firstRow);
  if (rows <= 0) return;
  const int lane = threadIdx.x % kWarpSize;
  const int warp = (threadIdx.x / kWarpSize) % (kConsumerRows / kWarpRows);
  const int quad = lane % kLaneGroup;
  // stmatrix: lane l addresses row l % 8 of matrix l / 8; matrices 0 and 1 are rows r and r + 8 of
  // the first chunk (as the fragment's halves h), 2 and 3 the same rows of the second.
  const int matrix = lane / kMatrixRows;
  const int boxRow = warp * kWarpRows + (matrix % kRowHalves) * kSecondRowOffset + lane % kMatrixRows;
  const int32_t tileColumn = tile.columnTile * kTileColumns;
#pragma unroll
  for (int boxColumns = 0; boxColumns < kTileColumns / kStoreColumns; ++boxColumns) {
    const int32_t firstColumn = tileColumn + boxColumns * kStoreColumns;
    if (firstColumn >= p.outputCols) break;  // the same for the whole warpgroup
    const uint8_t* box = staging.boxes + staging.next * kStoreBoxBytes;
    const uint32_t boxAddress = sharedAddress(box);
#pragma unroll
    for (int part = 0; part < kBoxChunks / kMatrixChunks; ++part) {
      const int j = boxColumns * kBoxChunks + part * kMatrixChunks;
      GatedBias bias[kMatrixChunks];
#pragma unroll
      for (int c = 0; c < kMatrixChunks; ++c) bias[c] = outputBias<pairing>(p, tile.expert, tileColumn + (j + c) * kChunkColumns + 2 * quad);
      const int chunk = part * kMatrixChunks + matrix / kRowHalves;
      storeMatrices(boxAddress + stagedChunkOffset(boxRow, chunk),
                    finishedPair<pairing, blockN, Element, activate, kind>(p, acc, j, 0, bias[0]),
                    finishedPair<pairing, blockN, Element, activate, kind>(p, acc, j, 1, bias[0]),
                    finishedPair<pairing, blockN, Element, activate, kind>(p, acc, j + 1, 0, bias[1]),
                    finishedPair<pairing, blockN, Element, activate, kind>(p, acc, j + 1, 1, bias[1]));
    }
    fenceAsyncShared();                              // the box's writes, before TMA reads them
    if (OutputStaging::issuer()) waitBulkStoresRead();  // the other box is free for the next round
    syncNamedBarrier(staging.barrier, kWarpgroupThreads);
    if (rows == kConsumerRows) {
      if (OutputStaging::issuer()) {
        storeTile2d(staging.map, box, firstColumn, firstRow);
        commitBulkStores();
      }
    } else {
      storeBoxRows(p, staging, box, firstRow, rows, firstColumn);
    }
    staging.next = (staging.next + 1) % kStoreBuffers;
  }
}

template <Pairing pairing, int blockN, typename Element>
__device__ void bulkStoreRowsActivated(const Problem& p, const Tile& tile, int32_t firstRow, const float (&acc)[blockN / 2],
                                       OutputStaging& staging) {
  withActivation<pairing>(p, [&](auto activate, auto kind) {
    bulkStoreRows<pairing, blockN, Element, decltype(activate)::value, decltype(kind)::value>(p, tile, firstRow, acc, staging);
  });
}

#endif  // MOEKIT_SM90A_DEVICE

}  // namespace moekit::cuda::sm90
