// Times the decode grouped GEMM (native/cuda/grouped_gemm_small_m.cuh) on the MoE shapes it is for,
// against the library's own choice (cuda::groupedGemm under whatever MOEKIT_GEMM says), and prints
// the bandwidth achieved on the weights the routing actually touches.
//
// Per model and token count: GEMM1 (K = H, N = 2I, SwiGLU fused, output [rows, I]) and GEMM2
// (K = I, N = H), bf16 throughout; with --fp8 the weights are e4m3 with 128×128 block scales
// (W8A8: the bf16 rows are quantized by each call, as a layer's float input would be) and the
// configurations are timed on Fp8Operands. Each measurement is a CUDA graph of kVariants forwards with
// different random routings (so different experts, and weights that L2 cannot hold from one to
// the next), replayed kReplays times; the median replay over kVariants is the time per GEMM.
//
// Build (after test/native/run_cuda_ops_test.sh --build-only has built the library objects), as
// one command:
//   nvcc -std=c++17 -O3 --expt-relaxed-constexpr -Inative -gencode=arch=compute_90a,code=sm_90a
//     bench/native/gemm_small_m_bench.cu $(ls build/native-test/objects/native_*.o)
//     -o build/native-test/gemm_small_m_bench
// This file includes the kernel's header (grouped_gemm_small_m.cuh) to time each configuration by
// name.
//
//   gemm_small_m_bench [--with-library | --lib-only] [--fp8 | --wq] [--quick] [--tokens 1,16,...]
// --wq: weight-only weights, one sweep per format (Int4 g128, Int8 per channel, MXFP4 with e8m0
// codes 122..127), each path's GB/s counted on the packed bytes it streams (bf16: 2 bytes per
// weight); paths: the library on the packed weights (the reference), the bf16 decode kernel on
// the dense weights (agreement with it is the quantization error, not a bug), and the
// weight-only decode kernel (grouped_gemm_small_m_wq.cuh) per configuration. Tokens default to
// 1 and 16.
// The first path listed is the reference the others are compared with (largest difference over
// the largest reference value, GEMM1/GEMM2 output).
#include "cuda/grouped_gemm_small_m.cuh"
#include "cuda/grouped_gemm_small_m_wq.cuh"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "bench_common.cuh"
#include "cuda/kernels.h"
#include "cuda/quantize.h"

using namespace moekit;
namespace sm = moekit::cuda::small_m;
using namespace moekit::bench;

namespace {

constexpr int kVariants = 4;  // routings per graph
constexpr int kReplays = 9;   // graph replays; the median is reported
constexpr uint64_t kCopyBytes = 1ull << 30;

float copyBandwidth(cudaStream_t stream) {
  DeviceBuffer a(kCopyBytes), b(kCopyBytes);
  const float ms = timeGraph([&] { CUDA_OK(cudaMemcpyAsync(b.data, a.data, kCopyBytes, cudaMemcpyDeviceToDevice, stream)); }, stream, kReplays);
  return 2.0f * kCopyBytes / (ms * 1e-3f) / 1e9f;  // read + write, GB/s
}

using GemmFn = std::function<void(const GroupedGemmArgs&, cudaStream_t)>;

// The bf16 kernel with configuration `Config`, whatever groupedGemm() would pick.
template <class Config>
void runConfig(const GroupedGemmArgs& args, cudaStream_t stream) {
  sm::detail::StreamProblem p = sm::detail::problemOf<Config>(args, args.output.data, args.output.dtype);
  p.input = args.input.data;
  sm::detail::launchStream<sm::detail::DenseOperands<cuda::BF16>, Config>(p, stream);
}

// The FP8 kernel with configuration `Config` (the float input quantized first, as the library does).
template <class Config>
void runFp8Config(const GroupedGemmArgs& args, cudaStream_t stream) {
  const cuda::QuantizedRows input(args.input, args.inputScales, stream);
  sm::detail::StreamProblem p = sm::detail::problemOf<Config>(args, args.output.data, args.output.dtype);
  p.input = input.values();
  p.inputScales = input.scales();
  sm::detail::launchStream<sm::detail::Fp8Operands, Config>(p, stream);
}

// The weight-only decode kernel with configuration `Config` (the library's scale stage; N must
// fill whole items).
template <WeightFormat kFormat, class Config>
void runWqConfig(const GroupedGemmArgs& args, cudaStream_t stream) {
  sm::detail::launchWq<kFormat, cuda::BF16, Config>(args, stream);
}

// A bf16 weight stack [E, N, K] quantized to e4m3 with 128×128 block scales.
struct Fp8Stack {
  int64_t experts, cols, depth;
  DeviceBuffer values, scales;
  Fp8Stack(const DeviceBuffer& dense, int64_t e, int64_t n, int64_t k, cudaStream_t stream)
      : experts(e), cols(n), depth(k), values(static_cast<size_t>(e * n * k)),
        scales(static_cast<size_t>(e * fp8Blocks(n) * fp8Blocks(k)) * sizeof(float)) {
    cuda::quantizeWeightBlocks(view(dense, DType::BFloat16, {e, n, k}), view(values, DType::Float8E4M3, {e, n, k}),
                               view(scales, DType::Float32, {e, fp8Blocks(n), fp8Blocks(k)}), stream);
  }
  // `args` with these weights in place of its bf16 ones.
  GroupedGemmArgs into(GroupedGemmArgs args) const {
    args.weights = view(values, DType::Float8E4M3, {experts, cols, depth});
    args.weightScales = view(scales, DType::Float32, {experts, fp8Blocks(cols), fp8Blocks(depth)});
    args.weightFormat = WeightFormat::Fp8Block128;
    return args;
  }
};

// A bf16 weight stack [E, N, K] as weight-only packed weights: Int8 / Int4 quantized by the
// library (cuda::quantizeWeights), MXFP4 random bytes with e8m0 codes 122..127.
struct WqStack {
  int64_t experts, cols, depth;
  WeightFormat format;
  int64_t groupSize;
  DeviceBuffer values, scales;
  int64_t scaleGroups() const { return weightScaleGroups(format, groupSize, depth); }
  WqStack(const DeviceBuffer& dense, int64_t e, int64_t n, int64_t k, WeightFormat f, int64_t g, cudaStream_t stream)
      : experts(e), cols(n), depth(k), format(f), groupSize(g), values(static_cast<size_t>(e * n * weightRowBytes(f, k))),
        scales(static_cast<size_t>(e * n * weightScaleGroups(f, g, k)) * sizeof(float)) {
    if (format == WeightFormat::Mxfp4) {
      constexpr uint8_t kLowestCode = 122;
      constexpr int kCodes = 6;
      std::mt19937 random(11);
      std::vector<uint8_t> bytes(static_cast<size_t>(e * n * weightRowBytes(f, k)));
      for (uint8_t& byte : bytes) byte = static_cast<uint8_t>(random());
      std::vector<uint8_t> codes(static_cast<size_t>(e * n * scaleGroups()));
      for (uint8_t& code : codes) code = static_cast<uint8_t>(kLowestCode + random() % kCodes);
      CUDA_OK(cudaMemcpy(values.data, bytes.data(), bytes.size(), cudaMemcpyHostToDevice));
      CUDA_OK(cudaMemcpy(scales.data, codes.data(), codes.size(), cudaMemcpyHostToDevice));
      return;
    }
    QuantizeWeightsArgs args;
    args.input = view(dense, DType::BFloat16, {e, n, k});
    args.format = format;
    args.groupSize = groupSize;
    args.output = view(values, DType::UInt8, {e, n, weightRowBytes(f, k)});
    args.scales = view(scales, DType::Float32, {e, n, scaleGroups()});
    cuda::quantizeWeights(args, stream);
  }
  double bytesPerWeight() const { return format == WeightFormat::Int8 ? 1.0 : 0.5; }
  GroupedGemmArgs into(GroupedGemmArgs args) const {
    args.weights = view(values, DType::UInt8, {experts, cols, weightRowBytes(format, depth)});
    args.weightScales = view(scales, format == WeightFormat::Mxfp4 ? DType::UInt8 : DType::Float32, {experts, cols, scaleGroups()});
    args.weightFormat = format;
    args.weightGroupSize = groupSize;
    return args;
  }
};

// What a sweep multiplies: bf16 weights, FP8 block-scaled ones, or one weight-only format.
struct Quantization {
  enum class Kind { Bf16, Fp8, WeightOnly } kind = Kind::Bf16;
  WeightFormat format = WeightFormat::Dense;  // WeightOnly
  int64_t groupSize = 0;
  const char* name = "bf16";
};

struct Path {
  const char* name;
  GemmFn run;
  bool dense = false;  // multiplies the bf16 weights whatever the sweep quantizes
};

// Largest |a - b| over max |b| of two bf16 tensors of `count` elements.
double relativeDifference(const DeviceBuffer& a, const DeviceBuffer& b, size_t count) {
  std::vector<uint16_t> ha(count), hb(count);
  CUDA_OK(cudaMemcpy(ha.data(), a.data, count * 2, cudaMemcpyDeviceToHost));
  CUDA_OK(cudaMemcpy(hb.data(), b.data, count * 2, cudaMemcpyDeviceToHost));
  double worst = 0, scale = 0;
  for (size_t i = 0; i < count; ++i) {
    const double x = bfloat16ToFloat(ha[i]), y = bfloat16ToFloat(hb[i]);
    if (std::isnan(x) || std::isnan(y)) return INFINITY;
    worst = std::max(worst, std::fabs(x - y));
    scale = std::max(scale, std::fabs(y));
  }
  return worst / std::max(scale, 1e-30);
}

void benchModel(const Model& m, const std::vector<int>& tokenCounts, const std::vector<Path>& paths, const Quantization& quantization,
                cudaStream_t stream) {
  const bool fp8 = quantization.kind == Quantization::Kind::Fp8;
  const bool wq = quantization.kind == Quantization::Kind::WeightOnly;
  const int64_t H = m.hidden, I = m.intermediate, E = m.experts;
  DeviceBuffer w13(static_cast<size_t>(E * 2 * I * H) * 2), w2(static_cast<size_t>(E * H * I) * 2);
  fill(view(w13, DType::BFloat16, {E * 2 * I * H}), 1, 0.05f, stream);
  fill(view(w2, DType::BFloat16, {E * H * I}), 2, 0.05f, stream);
  std::unique_ptr<Fp8Stack> w13Fp8, w2Fp8;
  if (fp8) {
    w13Fp8 = std::make_unique<Fp8Stack>(w13, E, 2 * I, H, stream);
    w2Fp8 = std::make_unique<Fp8Stack>(w2, E, H, I, stream);
  }
  std::unique_ptr<WqStack> w13Wq, w2Wq;
  if (wq) {
    w13Wq = std::make_unique<WqStack>(w13, E, 2 * I, H, quantization.format, quantization.groupSize, stream);
    w2Wq = std::make_unique<WqStack>(w2, E, H, I, quantization.format, quantization.groupSize, stream);
  }
  const double quantizedBytes = fp8 ? 1.0 : wq ? w13Wq->bytesPerWeight() : 2.0;
  const auto bytesPerWeight = [&](const Path& path) { return path.dense ? 2.0 : quantizedBytes; };
  std::mt19937 random(7);

  for (int tokens : tokenCounts) {
    const int64_t rows = int64_t{tokens} * m.topK;
    const GemmWorkload work(m, tokens, kVariants, w13, w2, random, stream);
    double touched = 0;
    int maxRows = 0;
    for (const Routing& routing : work.routings) {
      touched += routing.touched / static_cast<double>(kVariants);
      maxRows = std::max(maxRows, routing.maxRows);
    }
    // The arguments of path `path` for routing variant v.
    const auto gemm1Args = [&](const Path& path, int v) {
      return path.dense ? work.gemm1(v) : fp8 ? w13Fp8->into(work.gemm1(v)) : wq ? w13Wq->into(work.gemm1(v)) : work.gemm1(v);
    };
    const auto gemm2Args = [&](const Path& path, int v) {
      return path.dense ? work.gemm2(v) : fp8 ? w2Fp8->into(work.gemm2(v)) : wq ? w2Wq->into(work.gemm2(v)) : work.gemm2(v);
    };
    auto& middles = work.middles;
    auto& outputs = work.outputs;

    // Agreement with the first path (the library) on variant 0, both GEMMs.
    std::vector<std::string> agreement;
    std::unique_ptr<DeviceBuffer> refMiddle, refOut;
    for (size_t i = 0; i < paths.size(); ++i) {
      CUDA_OK(cudaMemsetAsync(middles[0]->data, 0xff, rows * I * 2, stream));  // NaN poison
      CUDA_OK(cudaMemsetAsync(outputs[0]->data, 0xff, rows * H * 2, stream));
      paths[i].run(gemm1Args(paths[i], 0), stream);
      paths[i].run(gemm2Args(paths[i], 0), stream);
      CUDA_OK(cudaStreamSynchronize(stream));
      if (i == 0) {
        refMiddle = std::make_unique<DeviceBuffer>(rows * I * 2);
        refOut = std::make_unique<DeviceBuffer>(rows * H * 2);
        CUDA_OK(cudaMemcpy(refMiddle->data, middles[0]->data, rows * I * 2, cudaMemcpyDeviceToDevice));
        CUDA_OK(cudaMemcpy(refOut->data, outputs[0]->data, rows * H * 2, cudaMemcpyDeviceToDevice));
      } else {
        char text[96];
        std::snprintf(text, sizeof(text), "%s %.1e/%.1e", paths[i].name, relativeDifference(*middles[0], *refMiddle, rows * I),
                      relativeDifference(*outputs[0], *refOut, rows * H));
        agreement.push_back(text);
      }
    }

    std::printf("%-6s %-14s T=%-4d rows=%-5lld touched=%5.1f maxRows=%-4d", quantization.name, m.name, tokens, static_cast<long long>(rows), touched, maxRows);
    for (const auto& a : agreement) std::printf("  [%s]", a.c_str());
    std::printf("\n");
    for (const Path& path : paths) {
      const double gemm1BytesPerExpert = 2.0 * I * H * bytesPerWeight(path), gemm2BytesPerExpert = 1.0 * H * I * bytesPerWeight(path);
      const float ms1 = timeGraph([&] { for (int v = 0; v < kVariants; ++v) path.run(gemm1Args(path, v), stream); }, stream, kReplays) / kVariants;
      const float ms2 = timeGraph([&] { for (int v = 0; v < kVariants; ++v) path.run(gemm2Args(path, v), stream); }, stream, kReplays) / kVariants;
      const double gbs1 = touched * gemm1BytesPerExpert / (ms1 * 1e-3) / 1e9;
      const double gbs2 = touched * gemm2BytesPerExpert / (ms2 * 1e-3) / 1e9;
      // GEMM1 then GEMM2 of one forward after the other, as a layer runs them.
      const float msPair = timeGraph([&] {
        for (int v = 0; v < kVariants; ++v) {
          path.run(gemm1Args(path, v), stream);
          path.run(gemm2Args(path, v), stream);
        }
      }, stream, kReplays) / kVariants;
      const double gbsPair = touched * (gemm1BytesPerExpert + gemm2BytesPerExpert) / (msPair * 1e-3) / 1e9;
      std::printf("    %-10s gemm1 %8.1f us %5.0f GB/s | gemm2 %8.1f us %5.0f GB/s | 1+2 %8.1f us %5.0f GB/s\n", path.name,
                  ms1 * 1e3, gbs1, ms2 * 1e3, gbs2, msPair * 1e3, gbsPair);
    }
    std::fflush(stdout);
  }
}

// The --wq sweep's paths for one format: the library first (the reference), the bf16 kernel on
// the dense weights, then the weight-only kernel per configuration: the library's four by name,
// then wWcCuU: W warps, C column tiles, U chunks per batch; tT, T token groups per pass; bB, at
// least B blocks per multiprocessor (registers capped to fit them).
template <WeightFormat kFormat>
std::vector<Path> wqPaths() {
  using sm::detail::StreamConfig;
  return {
      {"library", [](const GroupedGemmArgs& a, cudaStream_t s) { cuda::groupedGemm(a, s); }},
      {"bf16", [](const GroupedGemmArgs& a, cudaStream_t s) { sm::groupedGemm(a, s); }, true},
      {"single", runWqConfig<kFormat, sm::detail::WqSingleConfig>},
      {"pair", runWqConfig<kFormat, sm::detail::WqPairConfig>},
      {"wide", runWqConfig<kFormat, sm::detail::WqWideConfig>},
      {"deep", runWqConfig<kFormat, sm::detail::WqDeepConfig>},
      {"w2c2u1t2", runWqConfig<kFormat, StreamConfig<2, 2, 1, 2>>},
  };
}

}  // namespace

int main(int argc, char** argv) {
  bool libOnly = false, quick = false, withLibrary = false, fp8 = false, wq = false;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--fp8") == 0) fp8 = true;
    if (std::strcmp(argv[i], "--wq") == 0) wq = quick = true;
    if (std::strcmp(argv[i], "--lib-only") == 0) libOnly = withLibrary = true;
    if (std::strcmp(argv[i], "--with-library") == 0) withLibrary = true;
    if (std::strcmp(argv[i], "--quick") == 0) quick = true;
  }
  try {
    CUDA_OK(cudaSetDevice(0));
    cudaStream_t stream;
    CUDA_OK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    const char* forced = std::getenv("MOEKIT_GEMM");
    std::printf("device copy: %.0f GB/s (read + write); library path: MOEKIT_GEMM=%s\n", copyBandwidth(stream),
                forced ? forced : "auto");

    std::vector<Path> paths;
    if (withLibrary) paths.push_back({"library", [](const GroupedGemmArgs& a, cudaStream_t s) { cuda::groupedGemm(a, s); }});
    paths.push_back({"decode", [](const GroupedGemmArgs& a, cudaStream_t s) { sm::groupedGemm(a, s); }});
    if (!libOnly && fp8) {
      // warps × column tiles × unroll × token groups.
      paths.push_back({"w2c1", runFp8Config<sm::detail::StreamConfig<2, 1, 2, 4>>});
      paths.push_back({"w4c1", runFp8Config<sm::detail::StreamConfig<4, 1, 2, 4>>});
      paths.push_back({"w8c1", runFp8Config<sm::detail::StreamConfig<8, 1, 2, 4>>});
      paths.push_back({"w2c2", runFp8Config<sm::detail::StreamConfig<2, 2, 2, 4>>});
      paths.push_back({"w4c2", runFp8Config<sm::detail::StreamConfig<4, 2, 2, 4>>});
      paths.push_back({"w8c2", runFp8Config<sm::detail::StreamConfig<8, 2, 2, 4>>});
      paths.push_back({"w4u4", runFp8Config<sm::detail::StreamConfig<4, 1, 4, 2>>});
    } else if (!libOnly) {
      paths.push_back({"warps2", runConfig<sm::detail::StreamConfig<2, 1, 2, 4>>});
      paths.push_back({"warps4", runConfig<sm::detail::StreamConfig<4, 1, 2, 4>>});
      paths.push_back({"warps8", runConfig<sm::detail::StreamConfig<8, 1, 2, 4>>});
      paths.push_back({"w4c2", runConfig<sm::detail::StreamConfig<4, 2, 2, 4>>});
      paths.push_back({"w2c2", runConfig<sm::detail::StreamConfig<2, 2, 2, 4>>});
      paths.push_back({"w4u4", runConfig<sm::detail::StreamConfig<4, 1, 4, 4>>});
      paths.push_back({"w8u4", runConfig<sm::detail::StreamConfig<8, 1, 4, 4>>});
    }
    std::vector<int> tokenCounts = quick ? std::vector<int>{1, 16} : std::vector<int>{1, 4, 16, 32, 64, 128};
    for (int i = 1; i + 1 < argc; ++i) {
      if (std::strcmp(argv[i], "--tokens") != 0) continue;
      tokenCounts.clear();
      for (const char* item = argv[i + 1]; *item != 0;) {
        char* end = nullptr;
        tokenCounts.push_back(static_cast<int>(std::strtol(item, &end, 10)));
        item = *end == ',' ? end + 1 : end;
      }
    }
    if (wq) {
      using Kind = Quantization::Kind;
      const std::vector<std::pair<Quantization, std::vector<Path>>> sweeps = {
          {{Kind::WeightOnly, WeightFormat::Int4, 128, "int4"}, wqPaths<WeightFormat::Int4>()},
          {{Kind::WeightOnly, WeightFormat::Int8, 0, "int8"}, wqPaths<WeightFormat::Int8>()},
          {{Kind::WeightOnly, WeightFormat::Mxfp4, 0, "mxfp4"}, wqPaths<WeightFormat::Mxfp4>()},
      };
      for (const auto& [quantization, wqPathList] : sweeps) {
        for (const Model& m : kModels) benchModel(m, tokenCounts, wqPathList, quantization, stream);
      }
    } else {
      Quantization quantization;
      if (fp8) quantization = {Quantization::Kind::Fp8, WeightFormat::Fp8Block128, 0, "fp8"};
      for (const Model& m : kModels) benchModel(m, tokenCounts, paths, quantization, stream);
    }
    CUDA_OK(cudaStreamDestroy(stream));
  } catch (const NativeError& error) {
    std::printf("FAIL %s: %s\n", error.code().c_str(), error.what());
    return 1;
  }
  return 0;
}
