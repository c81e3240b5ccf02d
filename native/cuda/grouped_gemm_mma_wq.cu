// The mma family with weight-only weights (Int8, Int4, MXFP4: W8A16 / W4A16, the rule in
// native/core/op_args.h): the A100-class prefill path, and what MOEKIT_GEMM=mma runs. The FP8
// kernel's structure (grouped_gemm_mma.cuh: 128 × 128 tiles, 8 warps of 4 × 4 mma.sync m16n8k16
// tiles, K slices through a cp.async ring, the row-tile scheduler) with the weights dequantized
// inside the main loop instead of into a dense copy first (grouped_gemm.cu, denseFromWeightOnly:
// 2 + 2 more bytes of traffic per weight and scratch of the dense stack's size).
//
// Each stage holds a slice of kDepth = 64 K values: the activations' 16-bit values as they are in
// memory, and the weights' packed bytes (64 for Int8, 32 for Int4 / MXFP4). Dequantization happens
// in registers, right before the mma: every lane decodes its share of the B operand (weight_only.cuh:
// q → float32 by bit tricks, × the group scale, rounded to the input's 16-bit dtype by one cvt per
// pair). Both row warps of a column decode the same weights, two decodes per weight per block;
// against the 128 multiply-adds each weight takes part in per block, that is small.
//
// K positions: lane c of a fragment row takes the slice's 16 consecutive values [16c, 16c + 16),
// and mma q of the slice takes the lane's values 4q .. 4q + 3 as its K positions
// {2c, 2c+1, 2c+8, 2c+9} (any one-to-one mapping shared by both operands will do: mma_sync.cuh). So
// a lane reads 32 contiguous bytes of each activation row and 16 (Int8) or 8 (Int4 / MXFP4)
// contiguous bytes of each weight row, the packed values in K order (low nibble = even K) as the
// decoders expect, and 16-bit pairs 2q and 2q + 1 of both operands feed mma q.
//
// Scales: a lane's 16 values always lie in one scale group (groups are a whole row or a multiple of
// 16 values starting at multiples of it: supports()), so a lane needs one scale per weight row it
// holds and slice: four, read from global memory (L1 / L2: a tile's scales are a few hundred bytes)
// one slice ahead of their use so their latency hides behind the current slice's mmas.
//
// Output: bias and the output dtype straight from the registers without an activation; with one,
// float32 products into scratch and the activation kernel, as the FP8 kernel does.
#include <cstdint>

#include "alignment.h"
#include "grouped_gemm_mma.cuh"
#include "grouped_gemm_paths.h"
#include "mma_sync.cuh"
#include "scratch.h"
#include "weight_only.cuh"
#include "weight_only.h"

namespace moekit::cuda::mma {
namespace {

struct WqProblem : GemmShape {  // output: float
  const void* input;       // [rows, depth] bfloat16 or float16
  const uint8_t* weights;  // [groups, cols, rowBytes] packed
  const void* scales;      // [groups, cols, scaleGroups]: float32, or e8m0 bytes (MXFP4)
  int64_t rowBytes;        // bytes per packed weight row: weightRowBytes(format, depth)
  int64_t groupWidth;      // K values per scale
  int64_t scaleGroups;     // scales per weight row
};

// The block's warp grid is WarpGrid's (grouped_gemm_mma.cuh); K arrives in slices of kDepth values.
template <WeightFormat kFormat>
struct WqTile : WarpGrid {
  using Decode = weight_only::Decoder<kFormat>;
  static constexpr int kDepth = 64;  // K values per stage
  // Three stages (two slices in flight): 78 KB (Int8) / 66 KB of shared memory, within the 99 KB a
  // block may take on sm_86 / sm_89 as well as on A100 and H100. Four, as in the FP8 kernel, would
  // need 104 KB for Int8; whether the deeper ring pays on A100 / H100 is for the bench to say.
  static constexpr int kStages = 3;
  static constexpr int kMmasPerSlice = kDepth / kMmaDepth;           // 4
  static constexpr int kLaneValues = kDepth / kLanesPerRow;          // 16 K values per lane, row and slice
  static constexpr int kLanePairs = kLaneValues / 2;                 // 8 16-bit pairs
  // Activations: 16-bit values, a lane's 32 bytes as two 16-byte vectors. Rows padded by one copy
  // granule (144 bytes): the 8 lanes of a quarter-warp (rows g, g + 1; c = 0..3) then read 8
  // different 16-byte bank groups where 128-byte rows would put rows g and g + 1 on the same ones.
  static constexpr int kInputBytes = 2;
  static constexpr int kInputSliceBytes = kDepth * kInputBytes;                  // 128
  static constexpr int kInputStride = kInputSliceBytes + kCopyBytes;             // 144
  static constexpr int kLaneInputVectors = kLaneValues * kInputBytes / kCopyBytes;  // 2
  // Weights: packed bytes, rows unpadded (a quarter- or half-warp reads 128 contiguous bytes).
  static constexpr int kWeightSliceBytes = kDepth / weight_only::kValuesPerByte<kFormat>;  // 64 or 32
  static constexpr int kLaneWeightBytes = kWeightSliceBytes / kLanesPerRow;              // 16 or 8
  static constexpr int kLaneWeightWords = kLaneWeightBytes / 4;                          // 4 or 2
  static constexpr int kStageBytes = kRows * kInputStride + kCols * kWeightSliceBytes;
  static constexpr int kSharedBytes = kStages * kStageBytes;
  static constexpr int kSmallestSharedLimit = 99 * 1024;  // per block, opted in, on sm_86 / sm_89
  static_assert(kSharedBytes <= kSmallestSharedLimit, "every sm_80+ GPU can run the kernel");
  // K must come in whole 16-byte copies of both operands (cp.async: all in or all out of a row).
  static constexpr int kDepthQuantum = 32;
  static_assert(kDepthQuantum % (kCopyBytes * weight_only::kValuesPerByte<kFormat>) == 0 &&
                    kDepthQuantum % (kCopyBytes / kInputBytes) == 0,
                "a K quantum is whole copies of both operands");
  static_assert(kLaneWeightWords * Decode::kValuesPerWord == kLaneValues, "a lane's weight bytes are its values");
  static_assert(kLaneInputVectors * kCopyBytes == kLaneValues * kInputBytes, "a lane's activation vectors are its values");
  static_assert(kWeightGroupQuantum % kLaneValues == 0, "a lane's values lie in one scale group");
};

// The lane's packed weight words of one row: 16 bytes (Int8) or 8 (Int4 / MXFP4) from shared memory.
template <int kWords>
__device__ __forceinline__ void loadWords(const uint8_t* shared, uint32_t (&words)[kWords]) {
  if constexpr (kWords == 4) {
    const uint4 vector = *reinterpret_cast<const uint4*>(shared);
    words[0] = vector.x, words[1] = vector.y, words[2] = vector.z, words[3] = vector.w;
  } else {
    static_assert(kWords == 2, "16 or 8 bytes");
    const uint2 vector = *reinterpret_cast<const uint2*>(shared);
    words[0] = vector.x, words[1] = vector.y;
  }
}

// 16-bit pair p (values 2p, 2p + 1) of a lane's activation row, held as two 16-byte vectors.
__device__ __forceinline__ uint32_t inputPair(const uint4 (&vectors)[2], int p) { return word(vectors[p / 4], p % 4); }

// total += this slice's products. scales[j]: the group scale of the lane's weight row (column g of
// column fragment j) for its 16 values of the slice.
template <WeightFormat kFormat, typename Element>
__device__ __forceinline__ void multiplySlice(const uint8_t* sharedA, const uint8_t* sharedB, const LanePlace& at,
                                              const float (&scales)[WarpGrid::kColFragments], Accumulators& total) {
  using Tile = WqTile<kFormat>;
  constexpr int kPairsPerWord = Tile::Decode::kValuesPerWord / 2;
  // The B operand, dequantized: pairs[j][p] holds the lane's values 2p, 2p + 1 of column fragment j.
  uint32_t pairs[Tile::kColFragments][Tile::kLanePairs];
#pragma unroll
  for (int j = 0; j < Tile::kColFragments; ++j) {
    uint32_t words[Tile::kLaneWeightWords];
    loadWords(sharedB + (at.warpCol + j * Tile::kMmaCols + at.g) * Tile::kWeightSliceBytes + at.c * Tile::kLaneWeightBytes,
              words);
#pragma unroll
    for (int w = 0; w < Tile::kLaneWeightWords; ++w) {
      weight_only::decodePairs<kFormat, Element>(words[w], scales[j], &pairs[j][w * kPairsPerWord]);
    }
  }
#pragma unroll
  for (int i = 0; i < Tile::kRowFragments; ++i) {
    const uint8_t* rowG = sharedA + (at.warpRow + i * Tile::kMmaRows + at.g) * Tile::kInputStride +
                          at.c * Tile::kLaneInputVectors * Tile::kCopyBytes;
    const uint8_t* rowG8 = rowG + Tile::kMmaRows / 2 * Tile::kInputStride;
    uint4 upper[Tile::kLaneInputVectors], lower[Tile::kLaneInputVectors];  // rows g and g + 8
#pragma unroll
    for (int v = 0; v < Tile::kLaneInputVectors; ++v) {
      upper[v] = *reinterpret_cast<const uint4*>(rowG + v * Tile::kCopyBytes);
      lower[v] = *reinterpret_cast<const uint4*>(rowG8 + v * Tile::kCopyBytes);
    }
#pragma unroll
    for (int q = 0; q < Tile::kMmasPerSlice; ++q) {
      // Pair 2q: K positions {2c, 2c+1} of the mma; pair 2q + 1: {2c+8, 2c+9}.
      const uint32_t a0 = inputPair(upper, 2 * q), a1 = inputPair(lower, 2 * q);
      const uint32_t a2 = inputPair(upper, 2 * q + 1), a3 = inputPair(lower, 2 * q + 1);
#pragma unroll
      for (int j = 0; j < Tile::kColFragments; ++j) {
        mma16816<Element>(total[i][j], a0, a1, a2, a3, pairs[j][2 * q], pairs[j][2 * q + 1]);
      }
    }
  }
}

template <WeightFormat kFormat, typename Element>
__global__ void __launch_bounds__(WarpGrid::kThreads) wqGemmKernel(WqProblem p) {
  using Tile = WqTile<kFormat>;
  using Decode = typename Tile::Decode;
  extern __shared__ __align__(16) uint8_t shared[];

  RowTile tile;
  if (!blockRowTile(p, Tile::kRows, &tile)) return;
  const int64_t colBegin = static_cast<int64_t>(blockIdx.y) * Tile::kCols;
  const LanePlace at = LanePlace::ofThread();

  const int64_t inputRowBytes = p.depth * Tile::kInputBytes;
  const uint8_t* a = static_cast<const uint8_t*>(p.input) + tile.begin * inputRowBytes;
  const uint8_t* b = p.weights + (static_cast<int64_t>(tile.group) * p.cols + colBegin) * p.rowBytes;
  const int64_t validRows = tile.end - tile.begin;
  const int64_t validCols = min(static_cast<int64_t>(Tile::kCols), p.cols - colBegin);
  const auto stageA = [&](int stage) { return shared + stage * Tile::kStageBytes; };
  const auto stageB = [&](int stage) { return shared + stage * Tile::kStageBytes + Tile::kRows * Tile::kInputStride; };
  const auto loadStage = [&](int stage, int64_t slice) {
    loadSlice<true, Tile::kRows, Tile::kInputSliceBytes, Tile::kInputStride>(stageA(stage), a, validRows, inputRowBytes,
                                                                             slice * Tile::kInputSliceBytes);
    loadSlice<true, Tile::kCols, Tile::kWeightSliceBytes, Tile::kWeightSliceBytes>(stageB(stage), b, validCols, p.rowBytes,
                                                                                   slice * Tile::kWeightSliceBytes);
  };

  // The lane's scale for each weight row it holds, for its values of `slice`. Past K or past the
  // columns the bytes are zero-filled and the scale is 0 (never read out of bounds).
  const auto loadScales = [&](int64_t slice, float (&scales)[Tile::kColFragments]) {
    const int64_t k = slice * Tile::kDepth + at.c * Tile::kLaneValues;
#pragma unroll
    for (int j = 0; j < Tile::kColFragments; ++j) {
      const int64_t col = colBegin + at.warpCol + j * Tile::kMmaCols + at.g;
      const bool inside = k < p.depth && col < p.cols;
      scales[j] = inside ? Decode::scale(p.scales, (tile.group * p.cols + col) * p.scaleGroups + k / p.groupWidth) : 0.0f;
    }
  };

  Accumulators total = {};
  float scales[Tile::kColFragments];
  float upcoming[Tile::kColFragments];
  loadScales(0, upcoming);
  const int64_t slices = (p.depth + Tile::kDepth - 1) / Tile::kDepth;
  pipelineSlices<Tile::kStages>(slices, loadStage, [&](int stage, int64_t slice) {
#pragma unroll
    for (int j = 0; j < Tile::kColFragments; ++j) scales[j] = upcoming[j];
    if (slice + 1 < slices) loadScales(slice + 1, upcoming);
    multiplySlice<kFormat, Element>(stageA(stage), stageB(stage), at, scales, total);
  });
  storeAccumulators(p, tile, colBegin, at, total);
}

template <WeightFormat kFormat, typename Element>
void runWqGemm(const WqProblem& p, cudaStream_t stream) {
  using Tile = WqTile<kFormat>;
  if (p.rows == 0 || p.cols == 0) return;
  const dim3 grid = rowTileGrid(p, Tile::kRows, Tile::kCols);
  static PerDevice<bool> raised;
  allowSharedMemory(wqGemmKernel<kFormat, Element>, Tile::kSharedBytes, raised);
  wqGemmKernel<kFormat, Element><<<grid, Tile::kThreads, Tile::kSharedBytes, stream>>>(p);
  MOEKIT_CHECK_LAUNCH("wqGemmKernel");
}

// One K quantum for every format: the largest, so supports() needs no format-specific branch.
constexpr int64_t kDepthQuantum = WqTile<WeightFormat::Int4>::kDepthQuantum;
static_assert(kDepthQuantum == WqTile<WeightFormat::Int8>::kDepthQuantum, "one K quantum");
constexpr int64_t kLaneValues = WqTile<WeightFormat::Int4>::kLaneValues;

}  // namespace

bool supportsWeightOnly(const GroupedGemmArgs& args) {
  if (!isWeightOnly(args.weightFormat)) return false;
  const DType dtype = args.input.dtype;
  if (dtype != DType::BFloat16 && dtype != DType::Float16) return false;  // float32: dequantize, then SIMT
  if (args.weights.dtype != DType::UInt8 || !isComputeFloat(args.output.dtype)) return false;
  if (args.bias.present() && !isComputeFloat(args.bias.dtype)) return false;
  const DType scaleDType = args.weightFormat == WeightFormat::Mxfp4 ? DType::UInt8 : DType::Float32;
  if (args.weightScales.dtype != scaleDType) return false;
  const PackedWeights packed = PackedWeights::of(args);
  // Whole 16-byte copies of activation and packed rows (K % 32; 16-byte aligned bases), and each
  // lane's 16 values of a slice in one scale group.
  if (packed.depth % kDepthQuantum != 0) return false;
  if (args.weights.dim(2) != weightRowBytes(args.weightFormat, packed.depth)) return false;
  if (packed.groupWidth() < packed.depth && packed.groupWidth() % kLaneValues != 0) return false;
  if (!aligned16(args.input.data) || !aligned16(args.weights.data)) return false;
  return computeCapability() >= 80;
}

void weightOnlyGroupedGemm(const GroupedGemmArgs& args, cudaStream_t stream) {
  const PackedWeights packed = PackedWeights::of(args);
  const int64_t rows = args.input.dim(0);
  const int64_t cols = args.weights.dim(1);
  WqProblem p{};
  static_cast<GemmShape&>(p) = GemmShape::of(args, packed.depth, nullptr, DType::Float32);  // the output is set below
  p.input = args.input.data;
  p.weights = args.weights.as<uint8_t>();
  p.scales = args.weightScales.data;
  p.rowBytes = weightRowBytes(args.weightFormat, packed.depth);
  p.groupWidth = packed.groupWidth();
  p.scaleGroups = packed.scaleGroups();

  const auto run = [&] {
    weight_only::dispatchFormat(args.weightFormat, [&](auto format) {
      constexpr WeightFormat kFormat = decltype(format)::value;
      if (args.input.dtype == DType::BFloat16) {
        runWqGemm<kFormat, BF16>(p, stream);
      } else {
        runWqGemm<kFormat, F16>(p, stream);
      }
    });
  };
  if (!args.activation.enabled) {
    p.output = args.output.data;
    p.outputDType = args.output.dtype;
    run();
    return;
  }
  // The float32 products, then the activation on the rows experts own.
  ScratchBuffer products(static_cast<size_t>(rows * cols) * sizeof(float), stream);
  p.output = products.data();
  p.outputDType = DType::Float32;
  run();
  activateProducts(args, TensorView{products.data(), DType::Float32, {rows, cols}}, p.offsets, p.groups, stream);
}

}  // namespace moekit::cuda::mma
