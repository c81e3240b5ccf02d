// Times the FP8 expert GEMMs (WeightFormat::Fp8Block128, W8A8) of an MoE layer on model shapes, as a
// layer with FP8 experts runs them, beside the same GEMMs in bfloat16:
//   GEMM1: FP8 rows [rows, H] (+ scales, as permute writes them) × w13 [E, 2I, H], SwiGLU fused,
//          FP8 output [rows, I] + scales;
//   GEMM2: that FP8 output × w2 [E, H, I], bfloat16 output [rows, H].
// Per model and token count, random routings (top-k distinct experts per token); each measurement
// is a CUDA graph of kVariants routings replayed kReplays times, the median replay over kVariants
// being the time per GEMM. Printed: milliseconds, TFLOP/s, and the weight bytes the routing
// touches per second (the decode floor: FP8 weights are half of bfloat16's bytes), plus the
// device copy bandwidth measured in the same run.
//
// The family is the library's choice under MOEKIT_GEMM (auto, or sm90 / small_m / mma to force
// one): run the bench once per family to compare them.
//
// Build (after test/native/run_cuda_ops_test.sh --build-only has built the library objects), as
// one command:
//   nvcc -std=c++17 -O3 --expt-relaxed-constexpr -Inative -gencode=arch=compute_90a,code=sm_90a
//     bench/native/gemm_fp8_bench.cu $(ls build/native-test/objects/native_*.o)
//     -o build/native-test/gemm_fp8_bench
//
//   gemm_fp8_bench [--quick] [--no-bf16] [--tokens 1,16,...] [--models mixtral,qwen3,deepseek]
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "bench_common.cuh"
#include "core/dtype.h"
#include "cuda/kernels.h"
#include "cuda/quantize.h"

using namespace moekit;
using namespace moekit::bench;

namespace {

constexpr int kVariants = 4;  // routings per graph
constexpr int kReplays = 7;   // graph replays; the median is reported
constexpr uint64_t kCopyBytes = 1ull << 30;
// Random weights: e4m3 values uniform over [-448, 448) (a cast of uniform floats), block scales
// that make them about ±0.05, as a trained layer's are.
constexpr float kWeightRange = kFloat8E4M3Max;
constexpr float kWeightScale = 0.05f / kFloat8E4M3Max;

float copyBandwidth(cudaStream_t stream) {
  DeviceBuffer a(kCopyBytes), b(kCopyBytes);
  const float ms = timeGraph([&] { CUDA_OK(cudaMemcpyAsync(b.data, a.data, kCopyBytes, cudaMemcpyDeviceToDevice, stream)); }, stream, kReplays);
  return 2.0f * kCopyBytes / (ms * 1e-3f) / 1e9f;  // read + write, GB/s
}

// An FP8 weight tensor [E, N, K] with its block scales [E, ceil(N/128), ceil(K/128)].
struct Fp8Weights {
  int64_t experts, rows, depth;
  DeviceBuffer values, scales;

  Fp8Weights(int64_t e, int64_t n, int64_t k, uint64_t seed, cudaStream_t stream)
      : experts(e), rows(n), depth(k), values(static_cast<size_t>(e * n * k)),
        scales(static_cast<size_t>(e * fp8Blocks(n) * fp8Blocks(k)) * sizeof(float)) {
    // Uniform floats through bfloat16 scratch in slices (the full-size float copy would not fit
    // beside DeepSeek-V3's weights), cast to e4m3.
    constexpr int64_t kSlice = int64_t{1} << 28;
    DeviceBuffer scratch(static_cast<size_t>(kSlice) * 2);
    const int64_t count = e * n * k;
    for (int64_t first = 0; first < count; first += kSlice) {
      const int64_t length = std::min(kSlice, count - first);
      fill(TensorView{scratch.data, DType::BFloat16, {length}}, seed + first, kWeightRange, stream);
      CastArgs cast;
      cast.input = TensorView{scratch.data, DType::BFloat16, {length}};
      cast.output = TensorView{static_cast<uint8_t*>(values.data) + first, DType::Float8E4M3, {length}};
      cuda::cast(cast, stream);
    }
    const std::vector<float> hostScales(static_cast<size_t>(e * fp8Blocks(n) * fp8Blocks(k)), kWeightScale);
    CUDA_OK(cudaMemcpyAsync(scales.data, hostScales.data(), hostScales.size() * sizeof(float), cudaMemcpyHostToDevice, stream));
    CUDA_OK(cudaStreamSynchronize(stream));
  }

  TensorView valuesView() const { return TensorView{values.data, DType::Float8E4M3, {experts, rows, depth}}; }
  TensorView scalesView() const { return TensorView{scales.data, DType::Float32, {experts, fp8Blocks(rows), fp8Blocks(depth)}}; }
};

// kVariants routings with their FP8 input rows (quantized from random bfloat16, as permute would
// write them), GEMM1's FP8 output and GEMM2's bfloat16 output.
struct Fp8Workload {
  int64_t experts, hidden, intermediate, rows;
  int tokens;
  const Fp8Weights& w13;
  const Fp8Weights& w2;
  std::vector<Routing> routings;
  std::vector<std::unique_ptr<DeviceBuffer>> offsets, inputs, inputScales, middles, middleScales, outputs;

  Fp8Workload(const Model& m, int tokenCount, const Fp8Weights& gateUp, const Fp8Weights& down, std::mt19937& random,
              cudaStream_t stream)
      : experts(m.experts), hidden(m.hidden), intermediate(m.intermediate), rows(int64_t{tokenCount} * m.topK),
        tokens(tokenCount), w13(gateUp), w2(down) {
    for (int v = 0; v < kVariants; ++v) {
      routings.push_back(randomRouting(m, tokens, random));
      offsets.push_back(std::make_unique<DeviceBuffer>((experts + 1) * sizeof(int32_t)));
      CUDA_OK(cudaMemcpy(offsets.back()->data, routings.back().offsets.data(), (experts + 1) * sizeof(int32_t),
                         cudaMemcpyHostToDevice));
      DeviceBuffer source(rows * hidden * 2);
      fill(view(source, DType::BFloat16, {rows, hidden}), 100 + v, 1.0f, stream);
      inputs.push_back(std::make_unique<DeviceBuffer>(rows * hidden));
      inputScales.push_back(std::make_unique<DeviceBuffer>(rows * fp8Blocks(hidden) * sizeof(float)));
      cuda::QuantizeRowsArgs quantize;
      quantize.input = view(source, DType::BFloat16, {rows, hidden});
      quantize.output = static_cast<uint8_t*>(inputs.back()->data);
      quantize.scales = static_cast<float*>(inputScales.back()->data);
      quantize.width = hidden;
      cuda::quantizeRows(quantize, stream);
      CUDA_OK(cudaStreamSynchronize(stream));
      middles.push_back(std::make_unique<DeviceBuffer>(rows * intermediate));
      middleScales.push_back(std::make_unique<DeviceBuffer>(rows * fp8Blocks(intermediate) * sizeof(float)));
      outputs.push_back(std::make_unique<DeviceBuffer>(rows * hidden * 2));
    }
  }

  GroupedGemmArgs gemm1(int v) const {
    GroupedGemmArgs a;
    a.input = view(*inputs[v], DType::Float8E4M3, {rows, hidden});
    a.inputScales = view(*inputScales[v], DType::Float32, {rows, fp8Blocks(hidden)});
    a.weights = w13.valuesView();
    a.weightScales = w13.scalesView();
    a.weightFormat = WeightFormat::Fp8Block128;
    a.expertOffsets = view(*offsets[v], DType::Int32, {experts + 1});
    a.output = view(*middles[v], DType::Float8E4M3, {rows, intermediate});
    a.outputScales = view(*middleScales[v], DType::Float32, {rows, fp8Blocks(intermediate)});
    a.activation.enabled = true;
    a.activation.kind = ActivationKind::SwiGLU;
    a.maxRowsPerExpert = tokens;
    return a;
  }

  GroupedGemmArgs gemm2(int v) const {
    GroupedGemmArgs a;
    a.input = view(*middles[v], DType::Float8E4M3, {rows, intermediate});
    a.inputScales = view(*middleScales[v], DType::Float32, {rows, fp8Blocks(intermediate)});
    a.weights = w2.valuesView();
    a.weightScales = w2.scalesView();
    a.weightFormat = WeightFormat::Fp8Block128;
    a.expertOffsets = view(*offsets[v], DType::Int32, {experts + 1});
    a.output = view(*outputs[v], DType::BFloat16, {rows, hidden});
    a.maxRowsPerExpert = tokens;
    return a;
  }
};

struct Timing {
  float ms1, ms2, msPair;
};

template <class Workload>
Timing timeWorkload(const Workload& work, cudaStream_t stream) {
  const auto run = [&](bool first, bool second) {
    for (int v = 0; v < kVariants; ++v) {
      if (first) cuda::groupedGemm(work.gemm1(v), stream);
      if (second) cuda::groupedGemm(work.gemm2(v), stream);
    }
  };
  run(true, true);  // warm-up, and every lazy per-device setup out of the graphs
  CUDA_OK(cudaStreamSynchronize(stream));
  return Timing{timeGraph([&] { run(true, false); }, stream, kReplays) / kVariants,
                timeGraph([&] { run(false, true); }, stream, kReplays) / kVariants,
                timeGraph([&] { run(true, true); }, stream, kReplays) / kVariants};
}

void printTiming(const char* name, const Timing& t, double flops1, double flops2, double bytes1, double bytes2) {
  std::printf("    %-5s gemm1 %9.3f ms %6.1f TFLOP/s %5.0f GB/s | gemm2 %9.3f ms %6.1f TFLOP/s %5.0f GB/s | "
              "1+2 %9.3f ms %6.1f TFLOP/s %5.0f GB/s\n",
              name, t.ms1, flops1 / (t.ms1 * 1e-3) / 1e12, bytes1 / (t.ms1 * 1e-3) / 1e9, t.ms2,
              flops2 / (t.ms2 * 1e-3) / 1e12, bytes2 / (t.ms2 * 1e-3) / 1e9, t.msPair,
              (flops1 + flops2) / (t.msPair * 1e-3) / 1e12, (bytes1 + bytes2) / (t.msPair * 1e-3) / 1e9);
}

void benchModel(const Model& m, const std::vector<int>& tokenCounts, bool withBf16, cudaStream_t stream) {
  const int64_t H = m.hidden, I = m.intermediate, E = m.experts;
  const Fp8Weights w13(E, 2 * I, H, 1, stream), w2(E, H, I, 2, stream);
  std::unique_ptr<DeviceBuffer> bf16W13, bf16W2;
  if (withBf16) {
    bf16W13 = std::make_unique<DeviceBuffer>(static_cast<size_t>(E * 2 * I * H) * 2);
    bf16W2 = std::make_unique<DeviceBuffer>(static_cast<size_t>(E * H * I) * 2);
    fill(view(*bf16W13, DType::BFloat16, {E * 2 * I * H}), 1, 0.05f, stream);
    fill(view(*bf16W2, DType::BFloat16, {E * H * I}), 2, 0.05f, stream);
  }
  std::mt19937 random(7);
  for (int tokens : tokenCounts) {
    const int64_t rows = int64_t{tokens} * m.topK;
    const double flops1 = 2.0 * rows * 2 * I * H, flops2 = 2.0 * rows * H * I;
    const Fp8Workload work(m, tokens, w13, w2, random, stream);
    double touched = 0;
    for (const Routing& routing : work.routings) touched += routing.touched / static_cast<double>(kVariants);
    std::printf("%-14s T=%-6d rows=%-7lld experts touched %.1f of %lld\n", m.name, tokens, static_cast<long long>(rows), touched,
                static_cast<long long>(E));
    // Weight bytes a GEMM must read (the decode floor), per element size.
    const double elements1 = touched * 2 * I * H, elements2 = touched * H * I;
    printTiming("fp8", timeWorkload(work, stream), flops1, flops2, elements1, elements2);
    if (withBf16) {
      std::mt19937 same(7 + tokens);
      const GemmWorkload bf16Work(m, tokens, kVariants, *bf16W13, *bf16W2, same, stream);
      printTiming("bf16", timeWorkload(bf16Work, stream), flops1, flops2, 2 * elements1, 2 * elements2);
    }
    std::fflush(stdout);
  }
}

std::vector<std::string> splitList(const char* text) {
  std::vector<std::string> items;
  std::string current;
  for (const char* c = text; *c != 0; ++c) {
    if (*c == ',') {
      items.push_back(current);
      current.clear();
    } else {
      current += *c;
    }
  }
  if (!current.empty()) items.push_back(current);
  return items;
}

}  // namespace

int main(int argc, char** argv) {
  bool withBf16 = true;
  std::vector<int> tokenCounts = {1, 16, 128, 1024, 4096, 16384};
  std::vector<std::string> models;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--quick") == 0) tokenCounts = {1, 16, 1024};
    if (std::strcmp(argv[i], "--no-bf16") == 0) withBf16 = false;
    if (std::strcmp(argv[i], "--tokens") == 0 && i + 1 < argc) {
      tokenCounts.clear();
      for (const std::string& item : splitList(argv[i + 1])) tokenCounts.push_back(std::stoi(item));
    }
    if (std::strcmp(argv[i], "--models") == 0 && i + 1 < argc) models = splitList(argv[i + 1]);
  }
  try {
    CUDA_OK(cudaSetDevice(0));
    cudaStream_t stream;
    CUDA_OK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    cudaDeviceProp properties;
    CUDA_OK(cudaGetDeviceProperties(&properties, 0));
    const char* forced = std::getenv("MOEKIT_GEMM");
    std::printf("device: %s, %d SMs; copy %.0f GB/s (read + write); MOEKIT_GEMM=%s\n", properties.name,
                properties.multiProcessorCount, copyBandwidth(stream), forced != nullptr ? forced : "auto");
    std::printf("GB/s: weight bytes the routing touches per second (FP8 1 byte per weight, bf16 2)\n");
    for (const Model& m : kModels) {
      const bool wanted = models.empty() || std::any_of(models.begin(), models.end(), [&](const std::string& name) {
                            return std::strncmp(m.name, name.c_str(), name.size()) == 0;
                          });
      if (wanted) benchModel(m, tokenCounts, withBf16, stream);
    }
    CUDA_OK(cudaStreamDestroy(stream));
  } catch (const NativeError& error) {
    std::printf("FAIL %s: %s\n", error.code().c_str(), error.what());
    return 1;
  }
  return 0;
}
