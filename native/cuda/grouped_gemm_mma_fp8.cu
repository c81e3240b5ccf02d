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
#include "async_copy.cuh"
#include "check.h"
#include "float_access.cuh"
#include "fp8.cuh"
#include "grouped_gemm_paths.h"
#include "kernels.h"
#include "mma_sync.cuh"
#include "per_device.h"
#include "quantize.h"
#include "row_tiles.cuh"
#include "scratch.h"

namespace moekit::cuda::mma {
namespace {

constexpr int kWarpSize = 32;

struct Fp8Problem {
  const uint8_t* input;        // [rows, depth] e4m3
  const float* inputScales;    // [rows, depthBlocks]
  const uint8_t* weights;      // [groups, cols, depth] e4m3
  const float* weightScales;   // [groups, colBlocks, depthBlocks]
  const void* bias;            // [groups, cols] or nullptr
  DType biasDType;
  void* output;                // [rows, cols], float
  DType outputDType;
  const int32_t* offsets;      // [groups + 1] on the device; nullptr: one group of every row (linear)
  int32_t groups;
  int64_t rows;
  int64_t cols;
  int64_t depth;
  int64_t depthBlocks;         // ceil(depth / 128)
  int64_t colBlocks;           // ceil(cols / 128)
  FaultSink faults;
};

struct Fp8Tile {
  static constexpr int kRows = 128;
  static constexpr int kCols = static_cast<int>(kFp8BlockSize);  // one weight-scale block of columns
  static constexpr int kDepth = 64;                              // K values (bytes) per stage
  static constexpr int kStages = 4;
  static constexpr int kSlicesPerBlock = static_cast<int>(kFp8BlockSize) / kDepth;
  static constexpr int kWarpsAlongRows = 2;
  static constexpr int kWarpsAlongCols = 4;
  static constexpr int kThreads = kWarpSize * kWarpsAlongRows * kWarpsAlongCols;
  static constexpr int kWarpRows = kRows / kWarpsAlongRows;  // 64
  static constexpr int kWarpCols = kCols / kWarpsAlongCols;  // 32
  static constexpr int kMmaRows = 16;
  static constexpr int kMmaCols = 8;
  static constexpr int kMmaDepth = 16;
  static constexpr int kRowFragments = kWarpRows / kMmaRows;  // 4
  static constexpr int kColFragments = kWarpCols / kMmaCols;  // 4
  static constexpr int kLanesPerRow = 4;                      // lanes that share a fragment row
  static constexpr int kBytesPerLane = kDepth / kLanesPerRow;  // 16: one vector per row and stage
  static constexpr int kMmasPerSlice = kDepth / kMmaDepth;     // 4: one word of the vector each
  static constexpr int kCopyBytes = 16;                        // cp.async granule
  static constexpr int kStageBytes = (kRows + kCols) * kDepth;
  static constexpr int kSharedBytes = kStages * kStageBytes;
  static_assert(kBytesPerLane == kCopyBytes && kMmasPerSlice * 4 == kBytesPerLane, "a lane's vector is one word per mma");
  static_assert(kSlicesPerBlock * kDepth == kFp8BlockSize, "slices tile a scale block");
};

// Loads a [tileRows, kDepth] slice of a K-contiguous e4m3 matrix into shared memory (row stride
// kDepth), zeros at or past `validRows` and `depth` (zero bytes are e4m3 zeros).
template <bool kVectorLoads, int tileRows>
__device__ void loadSlice(uint8_t* shared, const uint8_t* global, int64_t validRows, int64_t depth, int64_t k0) {
  using Tile = Fp8Tile;
  if constexpr (kVectorLoads) {
    constexpr int kCopiesPerRow = Tile::kDepth / Tile::kCopyBytes;
    for (int copy = threadIdx.x; copy < tileRows * kCopiesPerRow; copy += Tile::kThreads) {
      const int row = copy / kCopiesPerRow;
      const int column = (copy % kCopiesPerRow) * Tile::kCopyBytes;
      const bool valid = row < validRows && k0 + column < depth;  // depth % 16 == 0: all or nothing
      copyAsync16(shared + row * Tile::kDepth + column, valid ? global + row * depth + k0 + column : global, valid);
    }
  } else {
    for (int i = threadIdx.x; i < tileRows * Tile::kDepth; i += Tile::kThreads) {
      const int row = i / Tile::kDepth;
      const int column = i % Tile::kDepth;
      const bool valid = row < validRows && k0 + column < depth;
      shared[i] = valid ? global[row * depth + k0 + column] : uint8_t{0};
    }
  }
}

__device__ __forceinline__ uint32_t word(const uint4& vector, int index) {
  return index == 0 ? vector.x : index == 1 ? vector.y : index == 2 ? vector.z : vector.w;
}

// One lane's accumulators: [row fragment][column fragment][register].
using Accumulators = float[Fp8Tile::kRowFragments][Fp8Tile::kColFragments][4];

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
  const int warp = threadIdx.x / kWarpSize;
  const int lane = threadIdx.x % kWarpSize;
  const int g = lane / Tile::kLanesPerRow;
  const int warpRow = (warp / Tile::kWarpsAlongCols) * Tile::kWarpRows;
  const int warpCol = (warp % Tile::kWarpsAlongCols) * Tile::kWarpCols;

  const uint8_t* a = p.input + tile.begin * p.depth;
  const uint8_t* b = p.weights + (static_cast<int64_t>(tile.group) * p.cols + colBegin) * p.depth;
  const int64_t validRows = tile.end - tile.begin;
  const int64_t validCols = min(static_cast<int64_t>(Tile::kCols), p.cols - colBegin);
  const auto stageA = [&](int stage) { return shared + stage * Tile::kStageBytes; };
  const auto stageB = [&](int stage) { return shared + stage * Tile::kStageBytes + Tile::kRows * Tile::kDepth; };
  const auto loadStage = [&](int stage, int64_t slice) {
    loadSlice<kVectorLoads, Tile::kRows>(stageA(stage), a, validRows, p.depth, slice * Tile::kDepth);
    loadSlice<kVectorLoads, Tile::kCols>(stageB(stage), b, validCols, p.depth, slice * Tile::kDepth);
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
        const int64_t row = tile.begin + warpRow + i * Tile::kMmaRows + h * (Tile::kMmaRows / 2) + g;
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

  // A ring of kStages slices: kStages - 1 in flight while one is multiplied. Every iteration
  // commits one group (empty past the end) so that "all but the newest kStages - 2" is always
  // the slice about to be used.
  const int64_t slices = (p.depth + Tile::kDepth - 1) / Tile::kDepth;
  for (int stage = 0; stage < Tile::kStages - 1; ++stage) {
    if (stage < slices) loadStage(stage, stage);
    commitAsyncCopies();
  }
  for (int64_t slice = 0; slice < slices; ++slice) {
    waitAsyncCopies<Tile::kStages - 2>();
    __syncthreads();  // the slice is visible to all; every warp is done with the stage refilled next
    const int64_t next = slice + Tile::kStages - 1;
    if (next < slices) loadStage(static_cast<int>(next % Tile::kStages), next);
    commitAsyncCopies();

    // The block's scales are read now and used two slices later: their latency hides behind the mmas.
    if (slice % Tile::kSlicesPerBlock == 0) loadFactors(slice / Tile::kSlicesPerBlock);
    const int stage = static_cast<int>(slice % Tile::kStages);
    multiplySlice(stageA(stage), stageB(stage), warpRow, warpCol, lane, partial);
    if ((slice + 1) % Tile::kSlicesPerBlock == 0 || slice + 1 == slices) promote();
  }

  // Epilogue: bias and the output dtype, straight from the registers.
#pragma unroll
  for (int i = 0; i < Tile::kRowFragments; ++i) {
#pragma unroll
    for (int r = 0; r < 4; ++r) {
      const int64_t row = tile.begin + warpRow + i * Tile::kMmaRows + (r / 2) * (Tile::kMmaRows / 2) + g;
      if (row >= tile.end) continue;
#pragma unroll
      for (int j = 0; j < Tile::kColFragments; ++j) {
        const int64_t col = colBegin + warpCol + j * Tile::kMmaCols + 2 * (lane % Tile::kLanesPerRow) + r % 2;
        if (col >= p.cols) continue;
        float value = total[i][j][r];
        if (p.bias != nullptr) value += loadAsFloat(p.bias, p.biasDType, tile.group * p.cols + col);
        storeAsFloat(p.output, p.outputDType, row * p.cols + col, value);
      }
    }
  }
}

// Raises a kernel's dynamic shared-memory limit past the default 48 KB, once per device.
template <typename Kernel>
void allowSharedMemory(Kernel kernel, PerDevice<bool>& raised) {
  raised.get([&](int) {
    MOEKIT_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, Fp8Tile::kSharedBytes));
    return true;
  });
}

void runFp8Gemm(const Fp8Problem& p, cudaStream_t stream) {
  if (p.rows == 0 || p.cols == 0) return;
  const dim3 grid = rowTileGrid(p, Fp8Tile::kRows, Fp8Tile::kCols);
  const bool vectorLoads = p.depth % Fp8Tile::kCopyBytes == 0 && aligned16(p.input) && aligned16(p.weights);
  const auto launch = [&](auto kernel, PerDevice<bool>& raised) {
    allowSharedMemory(kernel, raised);
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
  p.input = input.values();
  p.inputScales = input.scales();
  p.weights = args.weights.as<uint8_t>();
  p.weightScales = args.weightScales.as<float>();
  p.bias = args.bias.present() ? args.bias.data : nullptr;
  p.biasDType = args.bias.dtype;
  p.offsets = args.expertOffsets.as<int32_t>();
  p.groups = static_cast<int32_t>(args.weights.dim(0));
  p.rows = rows;
  p.cols = cols;
  p.depth = depth;
  p.depthBlocks = fp8Blocks(depth);
  p.colBlocks = fp8Blocks(cols);
  p.faults = FaultSink::of(args);

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
  ActivationArgs act;
  act.input = productsView;
  act.output = args.output;
  act.kind = args.activation.kind;
  act.layout = args.activation.layout;
  act.alpha = args.activation.alpha;
  act.limit = args.activation.limit;
  activationInRows(act, p.offsets, p.groups, stream);
}

}  // namespace moekit::cuda::mma
