// Grouped GEMM and linear on the GPU: C[rows, N] = A[rows, K] · B[N, K]ᵀ (+ bias), one B per expert.
//
// The dispatcher: groupedGemm() and linear() pick a kernel family per call (grouped_gemm_paths.h:
// sm90, small_m or mma; MOEKIT_GEMM forces one), and weight-only weights are dequantized either
// inside a family's kernel or into scratch first. For dense weights on the mma family, runGemm
// picks the kernel: bfloat16 × bfloat16 or float16 × float16 through WMMA (grouped_gemm_wmma.cu),
// every other dtype combination on SIMT FMAs (grouped_gemm_simt.cu). Both ops are one problem to
// those kernels: linear is a single group holding every row.
#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "check.h"
#include "environment.h"
#include "grouped_gemm_mma.cuh"
#include "grouped_gemm_paths.h"
#include "kernels.h"
#include "per_device.h"
#include "row_gather.cuh"
#include "scratch.h"
#include "skinny_linear.h"
#include "weight_only.h"

namespace moekit::cuda {
namespace {

using mma::GemmProblem;
using mma::GemmShape;

// ---- The mma family on dense weights: which kernel ------------------------------------------------
void runGemm(const GemmProblem& p, DType inputDType, DType weightDType, cudaStream_t stream) {
  if (p.rows == 0 || p.cols == 0) return;
  const bool tensorCores = inputDType == weightDType && (inputDType == DType::BFloat16 || inputDType == DType::Float16);
  if (tensorCores) {
    mma::wmmaGemm(p, inputDType, stream);
  } else {
    mma::simtGemm(p, inputDType, weightDType, stream);
  }
}

void checkFloat(DType dtype, const char* what) {
  if (dtype == DType::Int32) throw NativeError("E_DTYPE", std::string(what) + ": expected a float dtype, got int32");
}

// ---- Which kernel family takes a call ----------------------------------------------------------
enum class GemmFamily { Auto, Sm90, SmallM, Mma };

// MOEKIT_GEMM, read once: forcing a family lets the tests run every path on one GPU.
GemmFamily forcedFamily() {
  static const GemmFamily family = [] {
    const std::string name = environmentSwitch("MOEKIT_GEMM");
    if (name == "sm90") return GemmFamily::Sm90;
    if (name == "small_m") return GemmFamily::SmallM;
    if (name == "mma") return GemmFamily::Mma;
    return GemmFamily::Auto;
  }();
  return family;
}

// How sm90 takes weight-only calls: MOEKIT_WQ_PREFILL=in_loop|dequantize forces one strategy where
// it applies (so a bench can time both; in_loop_short and in_loop_tall also force the in-loop
// kernel's tile height), anything else leaves the choice to sm90InLoopPreferred().
enum class WqPrefill { Auto, InLoop, InLoopShort, InLoopTall, Dequantize };

WqPrefill forcedWqPrefill() {
  static const WqPrefill prefill = [] {
    const std::string name = environmentSwitch("MOEKIT_WQ_PREFILL");
    if (name == "in_loop") return WqPrefill::InLoop;
    if (name == "in_loop_short") return WqPrefill::InLoopShort;
    if (name == "in_loop_tall") return WqPrefill::InLoopTall;
    if (name == "dequantize") return WqPrefill::Dequantize;
    return WqPrefill::Auto;
  }();
  return prefill;
}

sm90::WqTileHeight forcedWqTileHeight() {
  switch (forcedWqPrefill()) {
    case WqPrefill::InLoopShort: return sm90::WqTileHeight::Short;
    case WqPrefill::InLoopTall: return sm90::WqTileHeight::Tall;
    default: return sm90::WqTileHeight::Auto;
  }
}

GemmFamily pickFamily(const GroupedGemmArgs& args) {
  const GemmFamily forced = forcedFamily();
  if (forced == GemmFamily::Mma) return GemmFamily::Mma;
  const int64_t experts = std::max<int64_t>(args.weights.dim(0), 1);
  const bool fewRows = (args.maxRowsPerExpert > 0 && args.maxRowsPerExpert <= small_m::kAutoMaxRowsPerExpert) ||
                       gemmRows(args) <= small_m::kAutoMeanRowsPerExpert * experts;
  const bool preferSmall = forced == GemmFamily::SmallM || (forced == GemmFamily::Auto && fewRows);
  if (preferSmall && small_m::supports(args)) return GemmFamily::SmallM;
  if (sm90::supports(args)) return GemmFamily::Sm90;
  if (small_m::supports(args) && fewRows) return GemmFamily::SmallM;
  return GemmFamily::Mma;
}

// ---- Gathered rows ---------------------------------------------------------------------------------
// MOEKIT_GEMM_GATHER=copy makes every call with gatherRows take the gathered copy (GatheredInput),
// as the kernels that do not gather take it: the tests check both ways on one GPU, and a bench
// times the in-kernel gather against the copy it saves.
bool gatherCopyForced() {
  static const bool forced = environmentSwitch("MOEKIT_GEMM_GATHER") == "copy";
  return forced;
}

// Whether `family` reads the gathered rows itself: small_m's kernel for 16-bit dense weights
// always (its token row pointers; a decode step's copy would be one more launch), sm90's where its
// gathering producer pays (sm90::gatherInKernelPreferred), given an input with rows to gather
// from (with none, every index is bad: the copy reports them). MOEKIT_GEMM=sm90 takes sm90's
// gather on every call it can, so that a forced run checks it on every shape.
bool gathersInKernel(const GroupedGemmArgs& args, GemmFamily family) {
  if (gatherCopyForced() || args.input.dim(0) == 0 || args.weightFormat != WeightFormat::Dense) return false;
  if (family == GemmFamily::SmallM) return true;
  return family == GemmFamily::Sm90 && (forcedFamily() == GemmFamily::Sm90 || sm90::gatherInKernelPreferred(args));
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
//   up to kWeightOnlySmallMRows (kWeightOnlySmallMRowsSm90 where sm90's in-loop kernel takes the
//     call): small_m, which dequantizes in registers and re-reads the packed weights once per
//     16- or 32-row pass: at 0.5 (Int4) or 1 (Int8) byte per weight, two passes still stream
//     fewer bytes than one pass of bfloat16, where the 16-bit rule stops at 16 to 32;
//   above, on Hopper: sm90's in-loop kernel (sm90/kernel_wq.cuh) where it takes the call, else
//     sm90 on the weights dequantized into scratch (denseFromWeightOnly) where the dense call fits;
//   else (sm_80-class GPUs): mma's in-loop kernel where it takes the call, else the same
//     dequantize-then-dense path.
// Measured on an H200 (bench/NOTES.md, wq-v1, int4 g128): small_m at 32 rows per expert beats
// dequantizing DeepSeek-V3's 11 G weights; mma's in-loop kernel took 5.6 ms for Mixtral's GEMM1 at
// 1024 tokens and 78 ms for DeepSeek-V3's at 16384, several times the dequantize + sm90 estimate,
// so on Hopper it is only taken when forced.
constexpr int64_t kWeightOnlySmallMRows = 64;
// With sm90's in-loop kernel beside it, small_m stops at 16 rows per expert: its token loads grow
// with the rows (at 32 rows ncu shows L1 at 85% busy and DRAM at 12%), while the in-loop kernel's
// conversions do not below 128. Measured on an H200 (bench/NOTES.md, wq-v6, int4 g128, ms per
// forward, small_m against in-loop forced; small_m forced too except Mixtral at 32 rows, where the
// earlier rule picked it): 32 rows per expert Mixtral 1.209 / 0.915 (graph replay),
// Qwen3-30B-A3B 1.101 / 1.090, DeepSeek-V3 9.18 / 7.18; 64 rows Mixtral 2.64 / 1.39, Qwen3 1.44 /
// 1.15, DeepSeek-V3 16.35 / 7.48. Nothing was measured between 16 and 32 rows.
constexpr int64_t kWeightOnlySmallMRowsSm90 = 16;

// On sm90, between small_m's rows and kWeightOnlyInLoopMaxRows rows per expert (mean) the in-loop
// kernel, above them dequantize-then-dense: the in-loop kernel's 128 x 128 tile reconverts an
// expert's weights once per 128 rows, while the dense copy costs one write and read of 2 bytes per
// weight, which many rows per weight amortize. Both costs scale with the expert's weights, so rows
// per expert decide. Measured on an H200 (bench/NOTES.md, wq-v3 to v5, int4 g128, in-loop against
// dequantize ms): Mixtral 256 rows per expert 2.68 / 3.80, 1024 rows 7.34 / 6.77, 4096 rows
// 28.6 / 20.4; Qwen3-30B-A3B 256 rows 1.54 / 1.98, 1024 rows 4.28 / 4.08; DeepSeek-V3 128 rows
// 11.8 / 25.1, 512 rows 36.4 / 54.1; gpt-oss-20b 128 rows 1.42 / 1.95, 2048 rows 10.6 / 7.9. Nothing
// was measured between 512 and 1024 rows.
constexpr int64_t kWeightOnlyInLoopMaxRows = 512;

// v1 of weight-only prefill, now the fallback for what the in-loop kernels refuse (float32
// input, K not a multiple of 32, unaligned bases): the weights are
// dequantized into stream-ordered scratch in denseWeightDType and the dense call runs on whichever
// family takes it (MOEKIT_GEMM still applies). This costs a full write and read of E × N × K
// 16-bit weights per call, on top of the packed read: 2 + 2 bytes per weight more than a bf16
// layer, and scratch of the dense weights' size.
void denseFromWeightOnly(const GroupedGemmArgs& args, cudaStream_t stream) {
  const DequantizedWeights weights(PackedWeights::of(args), denseWeightDType(args), stream);
  groupedGemm(denseArgsOf(args, weights.view()), stream);
}  // the scratch is freed in stream order, after the GEMM's kernels

// Where a weight-only call goes, decided once per call by the rules above.
enum class WqRoute { SmallM, Sm90InLoop, MmaInLoop, Dequantize };

// The in-loop kernel or the dense copy when sm90 takes the call (MOEKIT_WQ_PREFILL may force one).
bool sm90InLoopPreferred(const GroupedGemmArgs& args, bool denseFits) {
  switch (forcedWqPrefill()) {
    case WqPrefill::InLoop:
    case WqPrefill::InLoopShort:
    case WqPrefill::InLoopTall: return true;
    case WqPrefill::Dequantize: return false;
    default: break;
  }
  const int64_t experts = std::max<int64_t>(args.weights.dim(0), 1);
  return args.input.dim(0) <= kWeightOnlyInLoopMaxRows * experts || !denseFits;
}

WqRoute pickWeightOnlyRoute(const GroupedGemmArgs& args) {
  const GemmFamily forced = forcedFamily();
  const auto mmaRoute = [&] { return mma::supportsWeightOnly(args) ? WqRoute::MmaInLoop : WqRoute::Dequantize; };
  if (forced == GemmFamily::Mma) return mmaRoute();
  const bool inLoop = sm90::supportsWeightOnly(args);
  if (forced != GemmFamily::Sm90) {
    const int64_t experts = std::max<int64_t>(args.weights.dim(0), 1);
    const int64_t smallMRows = inLoop ? kWeightOnlySmallMRowsSm90 : kWeightOnlySmallMRows;
    const bool fewRows = (args.maxRowsPerExpert > 0 && args.maxRowsPerExpert <= smallMRows) ||
                         args.input.dim(0) <= smallMRows * experts;
    if ((forced == GemmFamily::SmallM || fewRows) && small_m::supports(args)) return WqRoute::SmallM;
  }
  const bool denseFits = sm90TakesDequantized(args);
  if (inLoop && sm90InLoopPreferred(args, denseFits)) return WqRoute::Sm90InLoop;
  if (forced == GemmFamily::Sm90 || inLoop || denseFits) return WqRoute::Dequantize;
  return mmaRoute();  // sm_80-class GPUs
}

void weightOnlyGroupedGemm(const GroupedGemmArgs& args, cudaStream_t stream) {
  switch (pickWeightOnlyRoute(args)) {
    case WqRoute::SmallM: small_m::groupedGemm(args, stream); return;
    case WqRoute::Sm90InLoop: sm90::weightOnlyGroupedGemm(args, stream, forcedWqTileHeight()); return;
    case WqRoute::MmaInLoop: mma::weightOnlyGroupedGemm(args, stream); return;
    case WqRoute::Dequantize: denseFromWeightOnly(args, stream); return;
  }
}

GemmProblem problemOf(const GroupedGemmArgs& args, void* output, DType outputDType) {
  return GemmProblem{GemmShape::of(args, args.weights.dim(2), output, outputDType), args.input.data, args.weights.data};
}

// With an activation, the products go to float32 scratch first (mma::activateProducts).
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
    mma::activateProducts(args, TensorView{scratch, DType::Float32, {rows, cols}}, args.expertOffsets.as<int32_t>(),
                          static_cast<int32_t>(args.weights.dim(0)), stream);
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

// Whether a 16-bit dense linear goes to small_m as one expert: a decode step's large projection
// (a shared expert: tens of MB of weights for a few rows), which small_m streams at copy speed in
// one pass, where the skinny kernel, built for routers whose weights stay in L2, reduced eight rows
// per block whatever the row count (bench/NOTES.md, v2: DeepSeek-V3's shared expert at 1 token
// took 85 µs for 88 MB).
bool streamsAsOneExpert(const LinearArgs& args, const GroupedGemmArgs& grouped) {
  if (forcedFamily() == GemmFamily::Mma || args.input.dim(0) > small_m::kAutoMeanRowsPerExpert) return false;
  if (static_cast<int64_t>(args.weight.nbytes()) <= skinny::kMaxCachedWeightBytes) return false;
  return small_m::supports(grouped);
}

}  // namespace

void groupedGemm(const GroupedGemmArgs& args, cudaStream_t stream) {
  checkFloat(args.output.dtype, "groupedGemm output");
  if (args.bias.present()) checkFloat(args.bias.dtype, "groupedGemm bias");
  const int64_t rows = gemmRows(args);
  if (args.weights.dim(0) == 0 || rows == 0 || args.output.dim(1) == 0) {
    // Nothing to compute, but the offsets are still the op's to check.
    if (args.expertOffsets.present()) checkExpertOffsets(args.expertOffsets.as<int32_t>(), static_cast<int32_t>(args.weights.dim(0)), rows, args, stream);
    return;
  }
  const GemmFamily family = isWeightOnly(args.weightFormat) ? GemmFamily::Auto : pickFamily(args);
  if (args.gatherRows.present() && !gathersInKernel(args, family)) {
    const GatheredInput gathered(args, stream);
    groupedGemm(gathered.args(), stream);
    return;
  }  // the copy is freed in stream order, after the GEMM's kernels
  if (isWeightOnly(args.weightFormat)) {
    weightOnlyGroupedGemm(args, stream);
    return;
  }
  switch (family) {
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
  // row (no offsets), so a decode step's shared expert streams its weights through small_m; so do
  // 16-bit weights too large for the skinny kernel's few rows (streamsAsOneExpert).
  const GroupedGemmArgs grouped = groupedOf(args);
  if (args.weightFormat == WeightFormat::Fp8Block128 || isWeightOnly(args.weightFormat) || streamsAsOneExpert(args, grouped)) {
    groupedGemm(grouped, stream);
    return;
  }
  if (skinny::supports(args)) {
    skinny::linear(args, stream);
    return;
  }
  // A dense projection is a grouped GEMM of one expert owning every row (no offsets): the Hopper
  // kernel takes it where it can (the shared expert and the router of large batches).
  if (forcedFamily() != GemmFamily::Mma) {
    if (sm90::supports(grouped)) {
      sm90::groupedGemm(grouped, stream);
      return;
    }
  }
  const GemmShape shape{args.bias.present() ? args.bias.data : nullptr,
                        args.bias.dtype,
                        args.output.data,
                        args.output.dtype,
                        nullptr,
                        1,
                        args.input.dim(0),
                        args.weight.dim(0),
                        args.input.dim(1),
                        FaultSink::of(args)};
  const GemmProblem problem{shape, args.input.data, args.weight.data};
  runGemm(problem, args.input.dtype, args.weight.dtype, stream);
}

}  // namespace moekit::cuda
