// What the sm90 grouped GEMM kernel is told about one call (everything but the two tensor maps),
// and how the weight rows of an N tile pair up with output columns.
#pragma once

#include <cstdint>

#include "../../core/dtype.h"
#include "../../core/op_args.h"
#include "../divider.h"
#include "../faults.cuh"
#include "../row_gather.cuh"

namespace moekit::cuda::sm90 {

// Rows of a tile one consumer warpgroup owns (wgmma's M); a tile's rows are 64 per consumer.
constexpr int kConsumerRows = 64;

// How the columns of an accumulator tile become output columns.
enum class Pairing : int32_t {
  Plain,        // column c is output column c (no activation, or a non-gated one)
  Halves,       // the tile's two halves are gate and up columns of the same outputs
  Interleaved,  // adjacent columns (2i, 2i + 1) are the gate and up of one output
};

struct Problem {
  const void* bias;         // [experts, cols] or nullptr
  DType biasDType;
  void* output;             // [rows, outputCols]: float32 or the operands' dtype; FP8 operands: any
                            // float dtype or Float8E4M3 (with outputScales)
  DType outputDType;
  const int32_t* offsets;   // [experts + 1], device; nullptr: one expert owning every row (linear)
  int32_t experts;
  int32_t rows;             // M: rows of the output (and of the input, unless gathered)
  int32_t cols;             // N: weight rows per expert
  int32_t depth;            // K
  int32_t outputCols;       // N, or N / 2 for gated activations
  int32_t columnTiles;      // N tiles per row tile
  int32_t bandRowTiles;     // row tiles swept together (sm90/scheduler.cuh)
  // FP8 block scales (WeightFormat::Fp8Block128, sm90/kernel_fp8.cuh); unused by 16-bit operands.
  const float* inputScales;   // [rows, depthBlocks]
  const float* weightScales;  // [experts, colBlocks, depthBlocks]
  float* outputScales;        // [rows, outputBlocks] when the output is Float8E4M3
  int32_t depthBlocks;        // ceil(depth / 128)
  int32_t colBlocks;          // ceil(cols / 128)
  int32_t outputBlocks;       // ceil(outputCols / 128)
  // Weight-only group scales (Int8, Int4: float32; MXFP4: e8m0 bytes; sm90/kernel_wq.cuh).
  const void* groupScales;    // [experts * cols, scaleGroups]
  int32_t scaleGroups;        // scales per weight row
  int32_t groupWidth;         // K values per scale (K itself for one scale per row)
  Divider groupOf;            // k → its scale column: k / groupWidth
  bool bulkStores;          // 16-bit outputs go by TMA stores (sm90/bulk_store.cuh)
  bool activate;            // apply `kind` in the epilogue
  ActivationKind kind;
  float alpha;
  float limit;
  FaultSink faults;         // where a bad offset is reported
  // Gathered rows (16-bit dense kernel only): its producer copies rows of `input` [T, depth] by
  // index (sm90/kernel.cuh, produceGathered()) where TMA would load row tiles.
  RowGather gather;
  const void* input;
};

}  // namespace moekit::cuda::sm90
