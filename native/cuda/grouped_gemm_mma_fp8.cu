// The mma family with FP8 block-scaled weights (WeightFormat::Fp8Block128, computed W8A8: the
// rule in native/core/op_args.h): the A100-class path, for GPUs without FP8 tensor cores, and the
// fallback for every shape the other families refuse.
//
// Both operands arrive as e4m3 bytes: the weights as stored, the activations quantized by whoever
// produced them (permute, an earlier GEMM's epilogue) or, for a float input, by a quantizing step
// right before the kernel (quantize.h). The kernel widens e4m3 to float16 in registers (two bit
// operations per value, exact: fp8.cuh) and multiplies on the 16-bit tensor cores (mma.sync
// m16n8k16, float32 accumulation), so every product q_a · q_w is exact. A 128-wide block of K
// shares one activation scale per row and one weight scale per 128 × 128 weight block; the
// kernel sums each block's products into "partial" accumulators, then adds them into the
// float32 totals times (activation scale × weight scale), DeepGEMM's promotion, and starts the
// next block's partials from zero.
//
// Tiles: 128 rows × 128 columns (one weight-scale block of columns, so a block's weight scale is
// one number per tile), K in slices of 64 bytes through a 4-stage cp.async ring. Rows of a slice
// are 64 bytes in shared memory with no padding: lanes read 16 bytes each, four lanes a row's 64,
// so each quarter-warp reads 128 contiguous bytes (two rows) and no two lanes of it share a bank.
// Each lane's 16 bytes feed four mmas, one 32-bit word (four K values) each: mma.sync's fragment
// wants K positions {2c, 2c+1, 2c+8, 2c+9} of lane c, and any one-to-one mapping shared by both
// operands will do (mma_sync.cuh), so word q of the lane's vector stands for them in mma q.
//
// Output: float, through the shared epilogue (bias, output dtype) when no activation is asked
// for; otherwise float32 products go to scratch and the activation kernel, or the quantizing step
// for an FP8 output (quantize.h), finishes the rows the experts own.
#include <algorithm>
#include <cstdint>

#include "alignment.h"
#include "fp8.cuh"
#include "grouped_gemm_mma.cuh"
#include "grouped_gemm_paths.h"
#include "mma_sync.cuh"
#include "quantize.h"
#include "scratch.h"

namespace moekit::cuda::mma {
namespace {

struct Fp8Problem : GemmShape {  // output: float
  const uint8_t* input;        // [rows, depth] e4m3
  const float* inputScales;    // [rows, depthBlocks]
  const uint8_t* weights;      // [groups, cols, depth] e4m3
  const float* weightScales;   // [groups, colBlocks, depthBlocks]
  int64_t depthBlocks;         // ceil(depth / 128)
  int64_t colBlocks;           // ceil(cols / 128)
};

// The block's warp grid is WarpGrid's (grouped_gemm_mma.cuh); K arrives in slices of kDepth bytes.
struct Fp8Tile : WarpGrid {
  static_assert(kCols == kFp8BlockSize, "one weight-scale block of columns per tile");
  static constexpr int kDepth = 64;                              // K values (bytes) per stage
  static constexpr int kStages = 4;
  static constexpr int kSlicesPerBlock = static_cast<int>(kFp8BlockSize) / kDepth;
  static constexpr int kBytesPerLane = kDepth / kLanesPerRow;  // 16: one vector per row and stage
  static constexpr int kMmasPerSlice = kDepth / kMmaDepth;     // 4: one word of the vector each
  static constexpr int kStageBytes = (kRows + kCols) * kDepth;
  static constexpr int kSharedBytes = kStages * kStageBytes;
  static_assert(kBytesPerLane == kCopyBytes && kMmasPerSlice * 4 == kBytesPerLane, "a lane's vector is one word per mma");
  static_assert(kSlicesPerBlock * kDepth == kFp8BlockSize, "slices tile a scale block");
};

// partial += this slice's products (scaled by 2^-16: both operands are widened, fp8.cuh).
__device__ __forceinline__ void multiplySlice(const uint8_t* sharedA, const uint8_t* sharedB, int warpRow, int warpCol,
                                              int lane, Accumulators& partial) {
  using Tile = Fp8Tile;
  const int g = lane / Tile::kLanesPerRow;
  const int laneBytes = (lane % Tile::kLanesPerRow) * Tile::kBytesPerLane;
  uint32_t b[Tile::kColFragments][Tile::kMmasPerSlice][2];
#pragma unroll
  for (int j = 0; j < Tile::kColFragments; ++j) {
    const uint4 raw = *reinterpret_cast<const uint4*>(sharedB + (warpCol + j * Tile::kMmaCols + g) * Tile::kDepth + laneBytes);
#pragma unroll
    for (int q = 0; q < Tile::kMmasPerSlice; ++q) widenFp8x4(word(raw, q), &b[j][q][0], &b[j][q][1]);
  }
#pragma unroll
  for (int i = 0; i < Tile::kRowFragments; ++i) {
    const uint8_t* rowG = sharedA + (warpRow + i * Tile::kMmaRows + g) * Tile::kDepth + laneBytes;
    const uint4 upper = *reinterpret_cast<const uint4*>(rowG);                                    // row g
    const uint4 lower = *reinterpret_cast<const uint4*>(rowG + Tile::kMmaRows / 2 * Tile::kDepth);  // row g + 8
#pragma unroll
    for (int q = 0; q < Tile::kMmasPerSlice; ++q) {
      uint32_t a0, a1, a2, a3;
      widenFp8x4(word(upper, q), &a0, &a2);
      widenFp8x4(word(lower, q), &a1, &a3);
#pragma unroll
      for (int j = 0; j < Tile::kColFragments; ++j) mma16816<F16>(partial[i][j], a0, a1, a2, a3, b[j][q][0], b[j][q][1]);
    }
  }
}

template <bool kVectorLoads>
__global__ void __launch_bounds__(Fp8Tile::kThreads) fp8GemmKernel(Fp8Problem p) {
  using Tile = Fp8Tile;
  extern __shared__ __align__(16) uint8_t shared[];

  RowTile tile;
  if (!blockRowTile(p, Tile::kRows, &tile)) return;
  const int64_t colBlock = blockIdx.y;
  const int64_t colBegin = colBlock * Tile::kCols;
  const LanePlace at = LanePlace::ofThread();

  const uint8_t* a = p.input + tile.begin * p.depth;
  const uint8_t* b = p.weights + (static_cast<int64_t>(tile.group) * p.cols + colBegin) * p.depth;
  const int64_t validRows = tile.end - tile.begin;
  const int64_t validCols = min(static_cast<int64_t>(Tile::kCols), p.cols - colBegin);
  const auto stageA = [&](int stage) { return shared + stage * Tile::kStageBytes; };
  const auto stageB = [&](int stage) { return shared + stage * Tile::kStageBytes + Tile::kRows * Tile::kDepth; };
  const auto loadStage = [&](int stage, int64_t slice) {
    loadSlice<kVectorLoads, Tile::kRows, Tile::kDepth, Tile::kDepth>(stageA(stage), a, validRows, p.depth, slice * Tile::kDepth);
    loadSlice<kVectorLoads, Tile::kCols, Tile::kDepth, Tile::kDepth>(stageB(stage), b, validCols, p.depth, slice * Tile::kDepth);
  };

  Accumulators total = {};
  Accumulators partial = {};
  // (activation scale × weight scale × 2^16) of the lane's rows g and g + 8 of each row fragment,
  // for the current K block.
  float rowFactors[Tile::kRowFragments][2];
  const auto loadFactors = [&](int64_t block) {
    const float weightScale = p.weightScales[(tile.group * p.colBlocks + colBlock) * p.depthBlocks + block];
#pragma unroll
    for (int i = 0; i < Tile::kRowFragments; ++i) {
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int64_t row = tile.begin + at.warpRow + i * Tile::kMmaRows + h * (Tile::kMmaRows / 2) + at.g;
        const float inputScale = row < tile.end ? p.inputScales[row * p.depthBlocks + block] : 0.0f;
        rowFactors[i][h] = inputScale * weightScale * kFp8WidenedProductScale;
      }
    }
  };
  const auto promote = [&] {
#pragma unroll
    for (int i = 0; i < Tile::kRowFragments; ++i) {
#pragma unroll
      for (int j = 0; j < Tile::kColFragments; ++j) {
#pragma unroll
        for (int r = 0; r < 4; ++r) {
          total[i][j][r] = fmaf(partial[i][j][r], rowFactors[i][r / 2], total[i][j][r]);
          partial[i][j][r] = 0.0f;
        }
      }
    }
  };

  const int64_t slices = (p.depth + Tile::kDepth - 1) / Tile::kDepth;
  pipelineSlices<Tile::kStages>(slices, loadStage, [&](int stage, int64_t slice) {
    // The block's scales are read now and used two slices later: their latency hides behind the mmas.
    if (slice % Tile::kSlicesPerBlock == 0) loadFactors(slice / Tile::kSlicesPerBlock);
    multiplySlice(stageA(stage), stageB(stage), at.warpRow, at.warpCol, at.lane, partial);
    if ((slice + 1) % Tile::kSlicesPerBlock == 0 || slice + 1 == slices) promote();
  });
  storeAccumulators(p, tile, colBegin, at, total);
}

void runFp8Gemm(const Fp8Problem& p, cudaStream_t stream) {
  if (p.rows == 0 || p.cols == 0) return;
  const dim3 grid = rowTileGrid(p, Fp8Tile::kRows, Fp8Tile::kCols);
  const bool vectorLoads = p.depth % Fp8Tile::kCopyBytes == 0 && aligned16(p.input) && aligned16(p.weights);
  const auto launch = [&](auto kernel, PerDevice<bool>& raised) {
    allowSharedMemory(kernel, Fp8Tile::kSharedBytes, raised);
    kernel<<<grid, Fp8Tile::kThreads, Fp8Tile::kSharedBytes, stream>>>(p);
    MOEKIT_CHECK_LAUNCH("fp8GemmKernel");
  };
  if (vectorLoads) {
    static PerDevice<bool> raised;
    launch(fp8GemmKernel<true>, raised);
  } else {
    static PerDevice<bool> raised;
    launch(fp8GemmKernel<false>, raised);
  }
}

}  // namespace

void fp8GroupedGemm(const GroupedGemmArgs& args, cudaStream_t stream) {
  const QuantizedRows input(args.input, args.inputScales, stream);
  const int64_t rows = args.input.dim(0);
  const int64_t cols = args.weights.dim(1);
  const int64_t depth = args.weights.dim(2);
  Fp8Problem p{};
  static_cast<GemmShape&>(p) = GemmShape::of(args, depth, nullptr, DType::Float32);  // the output is set below
  p.input = input.values();
  p.inputScales = input.scales();
  p.weights = args.weights.as<uint8_t>();
  p.weightScales = args.weightScales.as<float>();
  p.depthBlocks = fp8Blocks(depth);
  p.colBlocks = fp8Blocks(cols);

  const bool fp8Output = args.output.dtype == DType::Float8E4M3;
  if (!fp8Output && !args.activation.enabled) {
    p.output = args.output.data;
    p.outputDType = args.output.dtype;
    runFp8Gemm(p, stream);
    return;
  }
  // The float32 products, then the activation and/or the quantization of the rows experts own.
  ScratchBuffer products(static_cast<size_t>(rows * cols) * sizeof(float), stream);
  p.output = products.data();
  p.outputDType = DType::Float32;
  runFp8Gemm(p, stream);
  const TensorView productsView{products.data(), DType::Float32, {rows, cols}};
  if (fp8Output) {
    QuantizeRowsArgs quantize;
    quantize.input = productsView;
    quantize.output = args.output.as<uint8_t>();
    quantize.scales = args.outputScales.as<float>();
    quantize.width = args.output.dim(1);
    quantize.activation = args.activation;
    quantize.rowOffsets = p.offsets;
    quantize.groups = p.groups;
    quantizeRows(quantize, stream);
    return;
  }
  activateProducts(args, productsView, p.offsets, p.groups, stream);
}

}  // namespace moekit::cuda::mma
