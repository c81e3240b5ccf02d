// Grouped GEMM and linear on the GPU: C[rows, N] = A[rows, K] · B[N, K]ᵀ (+ bias), one B per expert.
//
// The dispatcher: groupedGemm() and linear() pick a kernel family per call (grouped_gemm_paths.h:
// sm90, small_m or mma; MOEKIT_GEMM forces one), and weight-only weights are dequantized either
// inside a family's kernel or into scratch first. For dense weights on the mma family, runGemm
// picks the kernel: bfloat16 × bfloat16 or float16 × float16 through WMMA (grouped_gemm_wmma.cu),
// every other dtype combination on the SIMT kernel below.
//
// Both ops are one problem to the mma kernels: linear is a single group holding every row. The
// grid has one block per (row tile, column tile); row tiles never straddle two experts
// (row_tiles.cuh).
//
// simtGemmKernel: float32, or mixed input/weight dtypes, with float32 FMAs: 128×128×8 block tiles,
// 8×8 results per thread, the next K slice prefetched into registers while the current one is
// multiplied. No TF32: float32 results match the CPU. Each output element's K sum runs in a fixed
// order, so results are deterministic run to run.
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "check.h"
#include "float_access.cuh"
#include "grouped_gemm_mma.cuh"
#include "grouped_gemm_paths.h"
#include "kernels.h"
#include "per_device.h"
#include "row_tiles.cuh"
#include "scratch.h"
#include "skinny_linear.h"
#include "weight_only.h"

namespace moekit::cuda {
namespace {

using mma::GemmProblem;
using mma::storeResult;

// ---- SIMT kernel (float32 and mixed dtypes) ------------------------------------------------------
struct SimtTile {
  static constexpr int kRows = 128;
  static constexpr int kCols = 128;
  static constexpr int kDepth = 8;
  static constexpr int kThreads = 256;
  static constexpr int kThreadsAlongCols = 16;  // threads form a 16 × 16 grid
  // Each thread owns a 4×4 patch in each quadrant's half: rows {r, r + 64} × cols {c, c + 64}
  // blocks of 4, read from shared memory as float4.
  static constexpr int kVector = 4;
  static constexpr int kHalf = 64;
  static constexpr int kResultsPerThread = 2 * kVector;  // along rows and along cols
  // Shared slices are stored transposed ([k][row]) so a thread's 4 rows are one float4; +4 floats
  // per row keeps float4 alignment and puts the two halves of a load warp in different banks.
  static constexpr int kStride = kRows + 4;
  // Global → shared: each thread moves kLoadsPerThread consecutive K values of one row.
  static constexpr int kLoadsPerThread = kRows * kDepth / kThreads;  // 4
  static constexpr int kLoadersPerRow = kDepth / kLoadsPerThread;    // 2
};
static_assert(SimtTile::kRows == SimtTile::kCols, "one loader layout serves both operands");

// Registers holding one thread's share of a [kRows, kDepth] slice in float32.
struct SimtSlice {
  float values[SimtTile::kLoadsPerThread];
};

template <typename Format>
__device__ SimtSlice loadSimtSlice(const typename Format::Storage* global, int64_t validRows, int64_t depth, int64_t k0) {
  using Tile = SimtTile;
  const int row = threadIdx.x / Tile::kLoadersPerRow;
  const int64_t k = k0 + (threadIdx.x % Tile::kLoadersPerRow) * Tile::kLoadsPerThread;
  SimtSlice slice;
  for (int i = 0; i < Tile::kLoadsPerThread; ++i) {
    const bool valid = row < validRows && k + i < depth;
    slice.values[i] = valid ? Format::load(global[row * depth + k + i]) : 0.0f;
  }
  return slice;
}

__device__ void storeSimtSlice(float* shared, const SimtSlice& slice) {
  using Tile = SimtTile;
  const int row = threadIdx.x / Tile::kLoadersPerRow;
  const int k = (threadIdx.x % Tile::kLoadersPerRow) * Tile::kLoadsPerThread;
  for (int i = 0; i < Tile::kLoadsPerThread; ++i) shared[(k + i) * Tile::kStride + row] = slice.values[i];
}

// The 8 rows (or columns) a thread owns, as offsets inside the tile.
__device__ int simtOwned(int threadCoordinate, int i) {
  using Tile = SimtTile;
  return (i < Tile::kVector ? 0 : Tile::kHalf) + threadCoordinate * Tile::kVector + i % Tile::kVector;
}

__device__ void loadOwned(const float* sharedRow, int threadCoordinate, float (&values)[SimtTile::kResultsPerThread]) {
  using Tile = SimtTile;
  const float4 low = *reinterpret_cast<const float4*>(sharedRow + threadCoordinate * Tile::kVector);
  const float4 high = *reinterpret_cast<const float4*>(sharedRow + Tile::kHalf + threadCoordinate * Tile::kVector);
  values[0] = low.x, values[1] = low.y, values[2] = low.z, values[3] = low.w;
  values[4] = high.x, values[5] = high.y, values[6] = high.z, values[7] = high.w;
}

template <typename InputFormat, typename WeightFormat>
__global__ void __launch_bounds__(SimtTile::kThreads) simtGemmKernel(GemmProblem p) {
  using Tile = SimtTile;
  __shared__ __align__(16) float sharedA[2][Tile::kDepth * Tile::kStride];
  __shared__ __align__(16) float sharedB[2][Tile::kDepth * Tile::kStride];

  RowTile tile;
  if (!blockRowTile(p, Tile::kRows, &tile)) return;
  const int64_t colBegin = static_cast<int64_t>(blockIdx.y) * Tile::kCols;
  const auto* a = static_cast<const typename InputFormat::Storage*>(p.input) + tile.begin * p.depth;
  const auto* b = static_cast<const typename WeightFormat::Storage*>(p.weights) +
                  (static_cast<int64_t>(tile.group) * p.cols + colBegin) * p.depth;
  const int64_t validRows = tile.end - tile.begin;
  const int64_t validCols = min(static_cast<int64_t>(Tile::kCols), p.cols - colBegin);
  const int threadRow = threadIdx.x / Tile::kThreadsAlongCols;
  const int threadCol = threadIdx.x % Tile::kThreadsAlongCols;

  float sums[Tile::kResultsPerThread][Tile::kResultsPerThread] = {};
  int stage = 0;
  if (p.depth > 0) {
    storeSimtSlice(sharedA[0], loadSimtSlice<InputFormat>(a, validRows, p.depth, 0));
    storeSimtSlice(sharedB[0], loadSimtSlice<WeightFormat>(b, validCols, p.depth, 0));
  }
  __syncthreads();
  for (int64_t k0 = 0; k0 < p.depth; k0 += Tile::kDepth) {
    // Issue the next slice's global loads first; their latency hides behind this slice's FMAs.
    const bool hasNext = k0 + Tile::kDepth < p.depth;
    SimtSlice nextA, nextB;
    if (hasNext) {
      nextA = loadSimtSlice<InputFormat>(a, validRows, p.depth, k0 + Tile::kDepth);
      nextB = loadSimtSlice<WeightFormat>(b, validCols, p.depth, k0 + Tile::kDepth);
    }
#pragma unroll
    for (int k = 0; k < Tile::kDepth; ++k) {
      float aValues[Tile::kResultsPerThread], bValues[Tile::kResultsPerThread];
      loadOwned(sharedA[stage] + k * Tile::kStride, threadRow, aValues);
      loadOwned(sharedB[stage] + k * Tile::kStride, threadCol, bValues);
      for (int i = 0; i < Tile::kResultsPerThread; ++i) {
        for (int j = 0; j < Tile::kResultsPerThread; ++j) sums[i][j] = fmaf(aValues[i], bValues[j], sums[i][j]);
      }
    }
    if (hasNext) {
      // The other buffer was last read before the previous __syncthreads(): safe to overwrite.
      storeSimtSlice(sharedA[stage ^ 1], nextA);
      storeSimtSlice(sharedB[stage ^ 1], nextB);
    }
    __syncthreads();
    stage ^= 1;
  }

#pragma unroll
  for (int i = 0; i < Tile::kResultsPerThread; ++i) {
    const int64_t row = tile.begin + simtOwned(threadRow, i);
    if (row >= tile.end) continue;
#pragma unroll
    for (int j = 0; j < Tile::kResultsPerThread; ++j) {
      const int64_t col = colBegin + simtOwned(threadCol, j);
      if (col < p.cols) storeResult(p, tile.group, row, col, sums[i][j]);
    }
  }
}

// ---- Launch: configuration and kernel choice in one place ------------------------------------------
void runGemm(const GemmProblem& p, DType inputDType, DType weightDType, cudaStream_t stream) {
  if (p.rows == 0 || p.cols == 0) return;
  const bool tensorCores = inputDType == weightDType && (inputDType == DType::BFloat16 || inputDType == DType::Float16);
  if (tensorCores) {
    mma::wmmaGemm(p, inputDType, stream);
    return;
  }
  const dim3 grid = rowTileGrid(p, SimtTile::kRows, SimtTile::kCols);
  dispatchFloat(inputDType, "gemm input", [&](auto inputFormat) {
    dispatchFloat(weightDType, "gemm weights", [&](auto weightFormat) {
      simtGemmKernel<decltype(inputFormat), decltype(weightFormat)><<<grid, SimtTile::kThreads, 0, stream>>>(p);
      MOEKIT_CHECK_LAUNCH("simtGemmKernel");
    });
  });
}

void checkFloat(DType dtype, const char* what) {
  if (dtype == DType::Int32) throw NativeError("E_DTYPE", std::string(what) + ": expected a float dtype, got int32");
}

// ---- Which kernel family takes a call ----------------------------------------------------------
enum class GemmFamily { Auto, Sm90, SmallM, Mma };

// MOEKIT_GEMM, read once: forcing a family lets the tests run every path on one GPU.
GemmFamily forcedFamily() {
  static const GemmFamily family = [] {
    const char* value = std::getenv("MOEKIT_GEMM");
    const std::string name = value == nullptr ? "auto" : value;
    if (name == "sm90") return GemmFamily::Sm90;
    if (name == "small_m") return GemmFamily::SmallM;
    if (name == "mma") return GemmFamily::Mma;
    return GemmFamily::Auto;
  }();
  return family;
}

GemmFamily pickFamily(const GroupedGemmArgs& args) {
  const GemmFamily forced = forcedFamily();
  if (forced == GemmFamily::Mma) return GemmFamily::Mma;
  const int64_t experts = std::max<int64_t>(args.weights.dim(0), 1);
  const bool fewRows = (args.maxRowsPerExpert > 0 && args.maxRowsPerExpert <= small_m::kAutoMaxRowsPerExpert) ||
                       args.input.dim(0) <= small_m::kAutoMeanRowsPerExpert * experts;
  const bool preferSmall = forced == GemmFamily::SmallM || (forced == GemmFamily::Auto && fewRows);
  if (preferSmall && small_m::supports(args)) return GemmFamily::SmallM;
  if (sm90::supports(args)) return GemmFamily::Sm90;
  if (small_m::supports(args) && fewRows) return GemmFamily::SmallM;
  return GemmFamily::Mma;
}

// ---- Weight-only weights ------------------------------------------------------------------------
// The dtype weight-only weights are dequantized to for a dense GEMM: the input's 16-bit dtype
// (float32 for a float32 input).
DType denseWeightDType(const GroupedGemmArgs& args) {
  const DType input = args.input.dtype;
  return input == DType::BFloat16 || input == DType::Float16 ? input : DType::Float32;
}

// The call with `weights` [E, N, K] dense in place of the packed ones.
GroupedGemmArgs denseArgsOf(const GroupedGemmArgs& args, const TensorView& weights) {
  GroupedGemmArgs dense = args;
  dense.weights = weights;
  dense.weightScales = TensorView{};
  dense.weightFormat = WeightFormat::Dense;
  dense.weightGroupSize = 0;
  return dense;
}

// Whether the sm90 kernel would take the call once its weights are dequantized. The dense copy
// lives in pool scratch, aligned far beyond the 16 bytes asked for: a stand-in pointer with that
// alignment answers the same as the real one will.
bool sm90TakesDequantized(const GroupedGemmArgs& args) {
  void* const alignedStandIn = reinterpret_cast<void*>(ScratchBuffer::kPartAlignment);
  const TensorView dense{alignedStandIn, denseWeightDType(args), {args.weights.dim(0), args.weights.dim(1), args.input.dim(1)}};
  return sm90::supports(denseArgsOf(args, dense));
}

// Weight-only weights (Int8, Int4, MXFP4), by rows per expert (the caller's bound
// args.maxRowsPerExpert when it gives one, else the mean rows / E):
//   up to kWeightOnlySmallMRows: small_m, which dequantizes in registers and re-reads the packed
//     weights once per 32-row pass: at 0.5 (Int4) or 1 (Int8) byte per weight, two passes still
//     stream fewer bytes than one pass of bfloat16, where the 16-bit rule stops at 16 to 32;
//   above, where sm90 takes the dense call (Hopper): sm90 on the weights dequantized into scratch
//     (denseFromWeightOnly);
//   else (sm_80-class GPUs): mma's in-loop kernel where it takes the call, else the same
//     dequantize-then-dense path.
// Measured on an H200 (bench/NOTES.md, wq-v1, int4 g128): small_m at 32 rows per expert beats
// dequantizing DeepSeek-V3's 11 G weights; mma's in-loop kernel took 5.6 ms for Mixtral's GEMM1 at
// 1024 tokens and 78 ms for DeepSeek-V3's at 16384, several times the dequantize + sm90 estimate,
// so on Hopper it is only taken when forced.
constexpr int64_t kWeightOnlySmallMRows = 64;

GemmFamily pickWeightOnlyFamily(const GroupedGemmArgs& args) {
  const GemmFamily forced = forcedFamily();
  if (forced == GemmFamily::Mma || forced == GemmFamily::Sm90) return forced;
  const int64_t experts = std::max<int64_t>(args.weights.dim(0), 1);
  const bool fewRows = (args.maxRowsPerExpert > 0 && args.maxRowsPerExpert <= kWeightOnlySmallMRows) ||
                       args.input.dim(0) <= kWeightOnlySmallMRows * experts;
  if ((forced == GemmFamily::SmallM || fewRows) && small_m::supports(args)) return GemmFamily::SmallM;
  return sm90TakesDequantized(args) ? GemmFamily::Sm90 : GemmFamily::Mma;
}

// v1 of weight-only prefill, now sm90's and the fallback for what the register-dequantizing
// kernels refuse (float32 input, K not a multiple of 32, unaligned bases): the weights are
// dequantized into stream-ordered scratch in denseWeightDType and the dense call runs on whichever
// family takes it (MOEKIT_GEMM still applies). This costs a full write and read of E × N × K
// 16-bit weights per call, on top of the packed read: 2 + 2 bytes per weight more than a bf16
// layer, and scratch of the dense weights' size. The sm90 in-loop kernel (issue 13) removes it.
void denseFromWeightOnly(const GroupedGemmArgs& args, cudaStream_t stream) {
  const DequantizedWeights weights(PackedWeights::of(args), denseWeightDType(args), stream);
  groupedGemm(denseArgsOf(args, weights.view()), stream);
}  // the scratch is freed in stream order, after the GEMM's kernels

void weightOnlyGroupedGemm(const GroupedGemmArgs& args, cudaStream_t stream) {
  switch (pickWeightOnlyFamily(args)) {
    case GemmFamily::SmallM: small_m::groupedGemm(args, stream); return;
    case GemmFamily::Mma:
      if (mma::supportsWeightOnly(args)) {
        mma::weightOnlyGroupedGemm(args, stream);
        return;
      }
      denseFromWeightOnly(args, stream);
      return;
    default: denseFromWeightOnly(args, stream); return;
  }
}

GemmProblem problemOf(const GroupedGemmArgs& args, void* output, DType outputDType) {
  return GemmProblem{args.input.data,
                     args.weights.data,
                     args.bias.present() ? args.bias.data : nullptr,
                     args.bias.dtype,
                     output,
                     outputDType,
                     args.expertOffsets.as<int32_t>(),
                     static_cast<int32_t>(args.weights.dim(0)),
                     args.input.dim(0),
                     args.weights.dim(1),
                     args.weights.dim(2),
                     FaultSink::of(args)};
}

// The mma family has no fused epilogue: with an activation, the products go to a float32
// scratch buffer (stream-ordered allocation, so this stays capturable) and the activation kernel
// reads them, which is the contract's "activation on the float32 products".
void mmaGroupedGemm(const GroupedGemmArgs& args, cudaStream_t stream) {
  if (!args.activation.enabled) {
    runGemm(problemOf(args, args.output.data, args.output.dtype), args.input.dtype, args.weights.dtype, stream);
    return;
  }
  const int64_t rows = args.input.dim(0);
  const int64_t cols = args.weights.dim(1);
  void* scratch = nullptr;
  MOEKIT_CUDA_CHECK(cudaMallocAsync(&scratch, static_cast<size_t>(std::max<int64_t>(rows * cols, 1)) * sizeof(float), stream));
  try {
    runGemm(problemOf(args, scratch, DType::Float32), args.input.dtype, args.weights.dtype, stream);
    ActivationArgs act;
    act.input = TensorView{scratch, DType::Float32, {rows, cols}};
    act.output = args.output;
    act.kind = args.activation.kind;
    act.layout = args.activation.layout;
    act.alpha = args.activation.alpha;
    act.limit = args.activation.limit;
    activationInRows(act, args.expertOffsets.as<int32_t>(), static_cast<int32_t>(args.weights.dim(0)), stream);
  } catch (...) {
    (void)cudaFreeAsync(scratch, stream);
    throw;
  }
  MOEKIT_CUDA_CHECK(cudaFreeAsync(scratch, stream));
}

// A linear as a grouped GEMM of one expert without offsets.
GroupedGemmArgs groupedOf(const LinearArgs& args) {
  const int64_t cols = args.weight.dim(0);
  const int64_t depth = args.weight.dim(1);
  GroupedGemmArgs grouped;
  static_cast<OpIdentity&>(grouped) = static_cast<const OpIdentity&>(args);
  grouped.input = args.input;
  grouped.inputScales = args.inputScales;
  grouped.weights = TensorView{args.weight.data, args.weight.dtype, {1, cols, depth}};
  if (args.weightScales.present()) {
    // Fp8Block128: [ceil(N/128), ceil(K/128)]; weight-only: [N, ceil(K/g)]. Either way, one more
    // leading extent of 1.
    std::vector<int64_t> scaleShape = args.weightScales.shape;
    scaleShape.insert(scaleShape.begin(), 1);
    grouped.weightScales = TensorView{args.weightScales.data, args.weightScales.dtype, scaleShape};
  }
  grouped.weightFormat = args.weightFormat;
  grouped.weightGroupSize = args.weightGroupSize;
  if (args.bias.present()) grouped.bias = TensorView{args.bias.data, args.bias.dtype, {1, cols}};
  grouped.expertOffsets = TensorView{nullptr, DType::Int32, {2}};
  grouped.output = args.output;
  grouped.outputScales = args.outputScales;
  return grouped;
}

}  // namespace

int computeCapability() {
  static PerDevice<int> cached;
  return cached.get([](int device) {
    int major = 0;
    int minor = 0;
    MOEKIT_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
    MOEKIT_CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device));
    return major * 10 + minor;
  });
}

void groupedGemm(const GroupedGemmArgs& args, cudaStream_t stream) {
  checkFloat(args.output.dtype, "groupedGemm output");
  if (args.bias.present()) checkFloat(args.bias.dtype, "groupedGemm bias");
  if (args.weights.dim(0) == 0 || args.input.dim(0) == 0 || args.output.dim(1) == 0) {
    // Nothing to compute, but the offsets are still the op's to check.
    if (args.expertOffsets.present()) checkExpertOffsets(args.expertOffsets.as<int32_t>(), static_cast<int32_t>(args.weights.dim(0)), args.input.dim(0), args, stream);
    return;
  }
  if (isWeightOnly(args.weightFormat)) {
    weightOnlyGroupedGemm(args, stream);
    return;
  }
  switch (pickFamily(args)) {
    case GemmFamily::Sm90: sm90::groupedGemm(args, stream); return;
    case GemmFamily::SmallM: small_m::groupedGemm(args, stream); return;
    default:
      if (args.weightFormat == WeightFormat::Fp8Block128) {
        mma::fp8GroupedGemm(args, stream);
      } else {
        mmaGroupedGemm(args, stream);
      }
      return;
  }
}

void linear(const LinearArgs& args, cudaStream_t stream) {
  checkFloat(args.output.dtype, "linear output");
  if (args.bias.present()) checkFloat(args.bias.dtype, "linear bias");
  // FP8 and weight-only weights: every family takes a dense projection as one expert owning every
  // row (no offsets), so a decode step's shared expert streams its weights through small_m.
  if (args.weightFormat == WeightFormat::Fp8Block128 || isWeightOnly(args.weightFormat)) {
    groupedGemm(groupedOf(args), stream);
    return;
  }
  if (skinny::supports(args)) {
    skinny::linear(args, stream);
    return;
  }
  // A dense projection is a grouped GEMM of one expert owning every row (no offsets): the Hopper
  // kernel takes it where it can (the shared expert and the router of large batches).
  if (forcedFamily() != GemmFamily::Mma) {
    const GroupedGemmArgs grouped = groupedOf(args);
    if (sm90::supports(grouped)) {
      sm90::groupedGemm(grouped, stream);
      return;
    }
  }
  const GemmProblem problem{args.input.data,
                            args.weight.data,
                            args.bias.present() ? args.bias.data : nullptr,
                            args.bias.dtype,
                            args.output.data,
                            args.output.dtype,
                            nullptr,
                            1,
                            args.input.dim(0),
                            args.weight.dim(0),
                            args.input.dim(1),
                            FaultSink::of(args)};
  runGemm(problem, args.input.dtype, args.weight.dtype, stream);
}

}  // namespace moekit::cuda
