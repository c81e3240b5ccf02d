// Hopper grouped GEMM (TMA + wgmma, warp-specialized, persistent over the device-side expert
// offsets, activation fused): which calls it takes, and which tile shape each gets. The kernels and
// their design are in sm90/kernel.cuh (16-bit operands) and sm90/kernel_fp8.cuh (FP8 block-scaled
// weights, W8A8); their instantiations in sm90/instances_*.cu.
#include <algorithm>
#include <climits>
#include <cstdint>
#include <string>

#include "alignment.h"
#include "environment.h"
#include "float_access.cuh"
#include "grouped_gemm_paths.h"
#include "quantize.h"
#include "sm90/shapes.h"

namespace moekit::cuda::sm90 {
namespace {

// The wide tile reads less per product (384 operand rows per 128 × 256 outputs rather than 256
// per 128 × 128) and wins wherever the tensor cores are the limit. With few rows per expert the
// call is bound by reading the weights instead, and with short K a tile's epilogue is a large
// share of its time: there the narrow tile (twice the tiles, half the epilogue each) was up to
// 11% faster on an H100 (Qwen3-30B-A3B's down projection at 1024 tokens; bench/native/gemm_sm90_bench.cu).
constexpr int64_t kNarrowMaxMeanRows = 64;  // rows per expert, on average
constexpr int64_t kNarrowMaxDepth = 1024;

template <class Shape>
void launchElement(const GroupedGemmArgs& args, cudaStream_t stream) {
  if (args.input.dtype == DType::BFloat16) {
    launchShape<BF16, Shape>(args, stream);
  } else {
    launchShape<F16, Shape>(args, stream);
  }
}

// MOEKIT_SM90_SCHEDULE=pingpong|cooperative forces the schedule of 16-bit calls (sm90/shapes.h),
// so a bench can time both and the tests can run both; anything else leaves it to the rule.
enum class ForcedSchedule { Auto, Cooperative, PingPong };

ForcedSchedule forcedSchedule() {
  static const ForcedSchedule schedule = [] {
    const std::string name = environmentSwitch("MOEKIT_SM90_SCHEDULE");
    if (name == "pingpong") return ForcedSchedule::PingPong;
    if (name == "cooperative") return ForcedSchedule::Cooperative;
    return ForcedSchedule::Auto;
  }();
  return schedule;
}

// Ping-pong takes two kinds of call, measured on an H200 (bench/NOTES.md, v5; gemm_sm90_bench
// --shapes, two runs, ms, ping-pong / the shape the rule below would pick):
//  - plain products (the down projection) with at least two row tiles per expert on average and K
//    of 2048-4096, where each 128 × 128 tile's epilogue, hidden behind the other consumer's main
//    loop, outweighs the narrower tile's extra operand reads: DeepSeek-V3's down GEMM at 16384
//    tokens (512 rows per expert) 7.43 / 8.26 and 7.77 / 8.10, a 384-expert H 7168 layer's (341
//    rows) 7.89 / 9.38. Slower or even: 85-128 rows per expert (DeepSeek-V3 at 4096 tokens 3.33 /
//    3.02, the 384-expert layer 4.23 / 3.24), K 768 (Qwen3-30B-A3B 1.04 / 0.85-0.98), K 14336
//    (Mixtral 6.69-7.02 / 5.91-6.10);
//  - gated products with at most one row tile per expert on average and K up to 2048: Qwen3's up
//    GEMM at 1024 tokens (64 rows) 0.221 / 0.239 and 0.220 / 0.244, at 128 tokens 0.208 / 0.232, a
//    DeepSeek-V2-Lite-sized layer's at 1024 tokens (96 rows) 0.205 / 0.237. Gated GEMMs of more
//    rows or a longer K were slower or even (DeepSeek-V3's at 16384 tokens 16.07 / 13.89).
constexpr int64_t kPingPongMinMeanRows = 2 * PingPongTile::kBlockM;
constexpr int64_t kPingPongMinDepth = 2048;
constexpr int64_t kPingPongMaxDepth = 4096;
constexpr int64_t kGatedPingPongMaxMeanRows = PingPongTile::kBlockM;
constexpr int64_t kGatedPingPongMaxDepth = 2048;

bool pingPongPreferred(const GroupedGemmArgs& args, int64_t meanRows) {
  const int64_t depth = args.weights.dim(2);
  if (pairingOf(args) != Pairing::Plain) return meanRows <= kGatedPingPongMaxMeanRows && depth <= kGatedPingPongMaxDepth;
  return meanRows >= kPingPongMinMeanRows && depth >= kPingPongMinDepth && depth <= kPingPongMaxDepth;
}

void launch(const GroupedGemmArgs& args, cudaStream_t stream) {
  const int64_t meanRows = meanRowsPerExpert(args);
  const ForcedSchedule schedule = forcedSchedule();
  if (schedule == ForcedSchedule::PingPong || (schedule == ForcedSchedule::Auto && pingPongPreferred(args, meanRows))) {
    launchElement<PingPongTile>(args, stream);
    return;
  }
  if (meanRows <= kNarrowMaxMeanRows && args.weights.dim(2) <= kNarrowMaxDepth) {
    launchElement<NarrowTile>(args, stream);
  } else {
    launchElement<WideTile>(args, stream);
  }
}

// FP8: the narrow tile (plain products only) where the wide one would leave SMs idle, by the
// same rule as the 16-bit tiles with K counted in bytes (not yet measured for FP8).
constexpr int64_t kFp8NarrowMaxDepth = kNarrowMaxDepth * 2;

void launchFp8(const GroupedGemmArgs& args, cudaStream_t stream) {
  const QuantizedRows input(args.input, args.inputScales, stream);
  const int64_t meanRows = meanRowsPerExpert(args);
  // Gated outputs need the wide tile: gate and up are its two wgmma halves, and its 128 outputs
  // per row are one group of an FP8 output's scales.
  const bool narrow = pairingOf(args) == Pairing::Plain && meanRows <= kNarrowMaxMeanRows && args.weights.dim(2) <= kFp8NarrowMaxDepth;
  if (narrow) {
    launchFp8Shape<Fp8NarrowTile>(args, input.values(), input.scales(), stream);
  } else {
    launchFp8Shape<Fp8WideTile>(args, input.values(), input.scales(), stream);
  }
}

// Shape limits the kernel relies on (see supports()).
constexpr int64_t kMinDepth = 64;        // one whole K slice: a TMA box no wider than the tensor
constexpr int64_t kFp8MinDepth = 128;    // the same for e4m3's 128-value slices
constexpr int64_t kDepthMultiple = 8;    // TMA: row strides are multiples of 16 bytes
constexpr int64_t kFp8DepthMultiple = 16;
constexpr int64_t kColumnMultiple = 16;  // pairs of columns in the epilogue, gated halves of 8
constexpr int64_t kMaxCoordinate = INT_MAX;  // TMA coordinates and tile indices are int32

bool supportsFp8(const GroupedGemmArgs& args) {
  const DType input = args.input.dtype;
  if (input != DType::Float8E4M3 && input != DType::Float32 && input != DType::Float16 && input != DType::BFloat16) return false;
  if (args.weights.dtype != DType::Float8E4M3 || args.output.dtype == DType::Int32) return false;
  if (args.bias.present() && args.bias.dtype == DType::Int32) return false;
  const int64_t rows = args.input.dim(0), experts = args.weights.dim(0);
  const int64_t cols = args.weights.dim(1), depth = args.weights.dim(2);
  if (experts < 1 || experts > kMaxExperts) return false;
  if (depth < kFp8MinDepth || depth % kFp8DepthMultiple != 0 || cols < kColumnMultiple || cols % kColumnMultiple != 0) return false;
  if (rows > kMaxCoordinate || experts * cols > kMaxCoordinate || depth > kMaxCoordinate) return false;
  if (tileBound(args, Fp8WideTile::kBlockM, Fp8NarrowTile::kBlockN) > kMaxCoordinate) return false;
  // A quantized copy of a float input is aligned; an FP8 input must be.
  if (input == DType::Float8E4M3 && !aligned16(args.input.data)) return false;
  if (!aligned16(args.weights.data) || !aligned16(args.output.data)) return false;
  return computeCapability() == 90;
}

// Weight-only weights (sm90/kernel_wq.cuh): K whole 16-byte rows of packed bytes for TMA (Int8: 16
// values; Int4 and MXFP4: 32) and at least one K slice; group scales that never split a converter
// chunk of 8 values (groups are a whole row or a multiple of 32 values, by the contract).
constexpr int64_t kWqChunkValues = 8;

bool supportsWeightOnlyShape(const GroupedGemmArgs& args) {
  const DType dtype = args.input.dtype;
  if (dtype != DType::BFloat16 && dtype != DType::Float16) return false;
  if (args.output.dtype != DType::Float32 && args.output.dtype != dtype) return false;
  if (args.bias.present() && args.bias.dtype == DType::Int32) return false;
  const int64_t rows = args.input.dim(0), depth = args.input.dim(1);
  const int64_t experts = args.weights.dim(0), cols = args.weights.dim(1);
  if (experts < 1 || experts > kMaxExperts) return false;
  const int64_t rowBytes = weightRowBytes(args.weightFormat, depth);
  if (depth < kMinDepth || depth % kDepthMultiple != 0 || rowBytes % 16 != 0) return false;
  if (args.weights.dim(2) != rowBytes) return false;
  const int64_t groupWidth = weightGroupWidth(args.weightFormat, args.weightGroupSize, depth);
  if (groupWidth < depth && groupWidth % kWqChunkValues != 0) return false;
  if (cols < kColumnMultiple || cols % kColumnMultiple != 0) return false;
  if (rows > kMaxCoordinate || experts * cols > kMaxCoordinate || depth > kMaxCoordinate) return false;
  if (tileBound(args, WqNibbleShortTile::kBlockM, WqNibbleShortTile::kBlockN) > kMaxCoordinate) return false;
  return aligned16(args.input.data) && aligned16(args.weights.data) && aligned16(args.output.data);
}

// The weight-only tile heights (sm90/shapes.h): the short one (64 rows) up to a mean of 48 rows
// per expert. Measured both ways on an H200 (bench/NOTES.md, wq-v7; int4, ms per layer, short /
// tall): 16-32 rows DeepSeek-V3 5.6-5.8 / 6.8-7.2, Mixtral 0.70 / 0.87 (graph); 48 rows Mixtral
// 1.21 / 1.20, Qwen3-30B-A3B 0.81 / 0.87, DeepSeek-V3 5.9 / 7.5; 64 rows Mixtral 1.60 / 1.20,
// Qwen3 0.97 / 0.84, DeepSeek-V3 8.4 / 7.6: there many experts' rows take two short tiles, which
// convert their weights twice. The caller's bound on rows per expert is not used: it is the
// worst case (every token on one expert), far above the typical count.
constexpr int64_t kShortWqTileMaxMeanRows = 48;

bool shortWqTileFits(const GroupedGemmArgs& args) {
  return args.input.dim(0) <= kShortWqTileMaxMeanRows * std::max<int64_t>(args.weights.dim(0), 1);
}

}  // namespace

// Measured on an H200 (bench/NOTES.md, v11; gemm_sm90_bench, ms per GEMM, TMA stores / register
// stores, 16384 tokens, three runs): down GEMMs Qwen3-30B-A3B 0.93-1.06 / 1.07-1.11, DeepSeek-V3
// 7.09-7.81 / 7.62-8.22, Mixtral 5.71-5.89 / 5.90-5.99; up GEMMs (against stores deferred into the
// next main loop, v3) Mixtral 12.37-12.67 / 13.36-13.65, DeepSeek-V3 14.13-14.21 / 14.90-15.20.
// Of the 30 GEMM points of one run, slower at two: DeepSeek-V3's up GEMM at 1024 tokens, 4.20 /
// 3.92-3.98, and Qwen3's up GEMM at 16384, 1.78 / 1.69 (7-15% faster in the other run).
// Interleaved gated outputs are one per thread and pair: not in the stmatrix fragment layout.
bool bulkStoresEnabled(Pairing pairing) {
  static const bool registers = environmentSwitch("MOEKIT_SM90_STORES") == "registers";
  return pairing != Pairing::Interleaved && !registers;
}

bool supportsWeightOnly(const GroupedGemmArgs& args) {
  if (args.weightFormat != WeightFormat::Int8 && args.weightFormat != WeightFormat::Int4 && args.weightFormat != WeightFormat::Mxfp4) {
    return false;
  }
  return supportsWeightOnlyShape(args) && computeCapability() == 90;
}

void weightOnlyGroupedGemm(const GroupedGemmArgs& args, cudaStream_t stream, WqTileHeight height) {
  if (args.input.dim(0) == 0) return;
  const bool shortTile = height == WqTileHeight::Auto ? shortWqTileFits(args) : height == WqTileHeight::Short;
  if (args.input.dtype == DType::BFloat16) {
    launchWqShape<BF16>(args, stream, shortTile);
  } else {
    launchWqShape<F16>(args, stream, shortTile);
  }
}

// Rows gathered by the producer (sm90/kernel.cuh, produceGathered()) make the GEMM itself slower
// than on a contiguous copy: its row tiles come from anywhere in the input, a 16-byte cp.async per
// lane, where TMA reads one box. It pays only where the copy it saves weighs more: gated products
// of at most kGatherMaxCols weight rows (the copy's share of the work grows as N shrinks) with at
// least kGatherMinMeanRows rows per expert. Measured on an H200 (bench/NOTES.md, v6; first GEMM
// with its copy, ms, copy against in-kernel, two runs each): Qwen3-30B-A3B (N 1536) at 16384
// tokens 1.83, 1.72 against 1.68, 1.61; Mixtral (N 28672) at 4096 tokens 3.09, 3.19 against 3.37,
// 3.42; DeepSeek-V3 (N 4096) at 16384 tokens 15.8, 16.0 against 20.1, 20.1. Fewer rows per expert
// (v13, whole layer in graph replay, ms, copy against in-kernel, two runs each): Qwen3 at 1024
// tokens (64 rows per expert) 0.465, 0.466 against 0.458, 0.457; at 4096 (256 rows) 0.865, 0.872
// against 0.850, 0.857. (v6 had the in-kernel gather slower at 64 rows, 0.39 and 0.34 against the
// copy's 0.32, before the epilogue's TMA stores.) Below 64 rows per expert: not measured.
constexpr int64_t kGatherMaxCols = 2048;
constexpr int64_t kGatherMinMeanRows = 64;

bool gatherInKernelPreferred(const GroupedGemmArgs& args) {
  const int64_t meanRows = meanRowsPerExpert(args);
  return pairingOf(args) != Pairing::Plain && args.weights.dim(1) <= kGatherMaxCols && meanRows >= kGatherMinMeanRows;
}

bool supports(const GroupedGemmArgs& args) {
  if (args.weightFormat == WeightFormat::Fp8Block128) return supportsFp8(args);
  // Weight-only weights: supportsWeightOnly() (or dequantized first: grouped_gemm.cu).
  if (args.weightFormat != WeightFormat::Dense) return false;
  const DType dtype = args.input.dtype;
  if (dtype != DType::BFloat16 && dtype != DType::Float16) return false;
  if (args.weights.dtype != dtype) return false;
  if (args.output.dtype != DType::Float32 && args.output.dtype != dtype) return false;
  if (args.bias.present() && args.bias.dtype == DType::Int32) return false;
  const int64_t rows = std::max(gemmRows(args), args.input.dim(0)), experts = args.weights.dim(0);
  const int64_t cols = args.weights.dim(1), depth = args.weights.dim(2);
  if (experts < 1 || experts > kMaxExperts) return false;
  if (depth < kMinDepth || depth % kDepthMultiple != 0 || cols < kColumnMultiple || cols % kColumnMultiple != 0) return false;
  if (rows > kMaxCoordinate || experts * cols > kMaxCoordinate || depth > kMaxCoordinate) return false;
  if (tileBound(args, WideTile::kBlockM, NarrowTile::kBlockN) > kMaxCoordinate) return false;
  if (!aligned16(args.input.data) || !aligned16(args.weights.data) || !aligned16(args.output.data)) return false;
  return computeCapability() == 90;
}

void groupedGemm(const GroupedGemmArgs& args, cudaStream_t stream) {
  if (gemmRows(args) == 0) return;
  if (args.weightFormat == WeightFormat::Fp8Block128) {
    launchFp8(args, stream);
  } else {
    launch(args, stream);
  }
}

}  // namespace moekit::cuda::sm90
