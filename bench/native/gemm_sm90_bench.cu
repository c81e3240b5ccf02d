// Times the Hopper grouped GEMM (native/cuda/grouped_gemm_sm90.cu) on prefill-sized MoE shapes,
// against the mma path (the library's sm_80 family, forced with MOEKIT_GEMM=mma), and prints
// milliseconds and TFLOP/s per GEMM and the largest difference from the mma path's results.
//
// Per model and token count, random routing (top-k distinct experts per token): GEMM1 (K = H,
// N = 2I, SwiGLU with GateLayout::Halves fused, output bf16 [rows, I]) and GEMM2 (K = I, N = H,
// output bf16 [rows, H]), bf16 throughout. Each measurement is a CUDA graph of kVariants GEMMs
// with different routings and inputs, replayed kReplays times; the median replay over kVariants is
// the time per GEMM.
//
// Build (after test/native/run_cuda_ops_test.sh --build-only has built the library objects), as
// one command:
//   nvcc -std=c++17 -O3 --expt-relaxed-constexpr -Inative -gencode=arch=compute_90a,code=sm_90a
//     bench/native/gemm_sm90_bench.cu $(ls build/native-test/objects/native_*.o | grep -v grouped_gemm_sm90)
//     -o build/native-test/gemm_sm90_bench
// This file includes grouped_gemm_sm90.cu itself (to call each tile shape by name), so that
// object is left out of the link; the kernels come from the sm90/instances_*.cu objects.
//
//   gemm_sm90_bench [--quick] [--shapes] [--sm90-only] [--tokens 128,1024,...] [--models mixtral,qwen3,deepseek,e384,e64]
// --shapes times each tile shape by name (wide, narrow, ping-pong) instead of the one groupedGemm() picks; --band N times
// the wide tile with N row tiles per band (sm90/scheduler.cuh) as the sm90 path; --sm90-only
// leaves out the mma path (and with it the agreement check), for quicker sweeps.
#include "../../native/cuda/grouped_gemm_sm90.cu"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "bench_common.cuh"
#include "cuda/kernels.h"

using namespace moekit;
namespace hopper = moekit::cuda::sm90;
using namespace moekit::bench;

namespace {

int gBandRowTiles = 0;  // --band: the sm90 path's band height (0: the library's)

constexpr int kVariants = 4;  // routings per graph
constexpr int kReplays = 7;   // graph replays; the median is reported

using GemmFn = std::function<void(const GroupedGemmArgs&, cudaStream_t)>;

struct Path {
  const char* name;
  GemmFn run;
};

// Largest |a - b| over max |b| of two bf16 tensors of `count` elements, over the elements both
// hold finite values; and how many are not finite in each (NaN: an element never written).
struct Difference {
  double relative = 0;
  size_t nonFiniteA = 0, nonFiniteB = 0;
};

Difference compareBf16(const DeviceBuffer& a, const DeviceBuffer& b, size_t count) {
  std::vector<uint16_t> ha(count), hb(count);
  CUDA_OK(cudaMemcpy(ha.data(), a.data, count * 2, cudaMemcpyDeviceToHost));
  CUDA_OK(cudaMemcpy(hb.data(), b.data, count * 2, cudaMemcpyDeviceToHost));
  Difference d;
  double worst = 0, scale = 0;
  for (size_t i = 0; i < count; ++i) {
    const double x = bfloat16ToFloat(ha[i]), y = bfloat16ToFloat(hb[i]);
    d.nonFiniteA += !std::isfinite(x);
    d.nonFiniteB += !std::isfinite(y);
    if (!std::isfinite(x) || !std::isfinite(y)) continue;
    worst = std::max(worst, std::fabs(x - y));
    scale = std::max(scale, std::fabs(y));
  }
  d.relative = worst / std::max(scale, 1e-30);
  return d;
}

void benchModel(const Model& m, const std::vector<int>& tokenCounts, const std::vector<Path>& paths, cudaStream_t stream) {
  const int64_t H = m.hidden, I = m.intermediate, E = m.experts;
  DeviceBuffer w13(static_cast<size_t>(E * 2 * I * H) * 2), w2(static_cast<size_t>(E * H * I) * 2);
  fill(view(w13, DType::BFloat16, {E * 2 * I * H}), 1, 0.05f, stream);
  fill(view(w2, DType::BFloat16, {E * H * I}), 2, 0.05f, stream);
  std::mt19937 random(7);

  for (int tokens : tokenCounts) {
    const int64_t rows = int64_t{tokens} * m.topK;
    const double flops1 = 2.0 * rows * 2 * I * H, flops2 = 2.0 * rows * H * I;
    const GemmWorkload work(m, tokens, kVariants, w13, w2, random, stream);
    const auto gemm1Args = [&](int v) { return work.gemm1(v); };
    const auto gemm2Args = [&](int v) { return work.gemm2(v); };
    auto& middles = work.middles;
    auto& outputs = work.outputs;

    // Agreement with the first path on variant 0, both GEMMs; outputs poisoned with NaN first.
    std::vector<std::string> agreement;
    std::unique_ptr<DeviceBuffer> refMiddle, refOut;
    for (size_t i = 0; i < paths.size(); ++i) {
      CUDA_OK(cudaMemsetAsync(middles[0]->data, 0xff, rows * I * 2, stream));
      CUDA_OK(cudaMemsetAsync(outputs[0]->data, 0xff, rows * H * 2, stream));
      paths[i].run(gemm1Args(0), stream);
      paths[i].run(gemm2Args(0), stream);
      CUDA_OK(cudaStreamSynchronize(stream));
      if (i == 0) {
        refMiddle = std::make_unique<DeviceBuffer>(rows * I * 2);
        refOut = std::make_unique<DeviceBuffer>(rows * H * 2);
        CUDA_OK(cudaMemcpy(refMiddle->data, middles[0]->data, rows * I * 2, cudaMemcpyDeviceToDevice));
        CUDA_OK(cudaMemcpy(refOut->data, outputs[0]->data, rows * H * 2, cudaMemcpyDeviceToDevice));
      } else {
        const Difference d1 = compareBf16(*middles[0], *refMiddle, rows * I);
        const Difference d2 = compareBf16(*outputs[0], *refOut, rows * H);
        char text[160];
        std::snprintf(text, sizeof(text), "%s maxdiff %.1e/%.1e non-finite %zu/%zu (%s %zu/%zu)", paths[i].name, d1.relative,
                      d2.relative, d1.nonFiniteA, d2.nonFiniteA, paths[0].name, d1.nonFiniteB, d2.nonFiniteB);
        agreement.push_back(text);
      }
    }

    std::printf("%-14s T=%-5d rows=%-6lld", m.name, tokens, static_cast<long long>(rows));
    for (const auto& a : agreement) std::printf("  [%s]", a.c_str());
    std::printf("\n");
    for (const Path& path : paths) {
      const float ms1 = timeGraph([&] { for (int v = 0; v < kVariants; ++v) path.run(gemm1Args(v), stream); }, stream, kReplays) / kVariants;
      const float ms2 = timeGraph([&] { for (int v = 0; v < kVariants; ++v) path.run(gemm2Args(v), stream); }, stream, kReplays) / kVariants;
      std::printf("RESULT %-14s T=%-5d %-9s gemm1 %9.3f ms %6.1f TFLOP/s | gemm2 %9.3f ms %6.1f TFLOP/s | both %6.1f TFLOP/s\n",
                  m.name, tokens, path.name, ms1, flops1 / (ms1 * 1e-3) / 1e12, ms2, flops2 / (ms2 * 1e-3) / 1e12,
                  (flops1 + flops2) / ((ms1 + ms2) * 1e-3) / 1e12);
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
  // The library path is the mma family: set before the library reads MOEKIT_GEMM (once).
  setenv("MOEKIT_GEMM", "mma", 1);
  bool quick = false, shapes = false, sm90Only = false;
  std::vector<int> tokenCounts = {128, 1024, 4096, 16384};
  std::vector<std::string> models;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--quick") == 0) {
      quick = true;
      tokenCounts = {128, 1024};
    }
    if (std::strcmp(argv[i], "--shapes") == 0) shapes = true;
    if (std::strcmp(argv[i], "--sm90-only") == 0) sm90Only = true;
    if (std::strcmp(argv[i], "--band") == 0 && i + 1 < argc) gBandRowTiles = std::atoi(argv[i + 1]);
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
    std::printf("device: %s, %d SMs%s, band %d\n", properties.name, properties.multiProcessorCount, quick ? ", quick" : "",
                gBandRowTiles);

    std::vector<Path> paths;
    if (!sm90Only) paths.push_back({"mma", [](const GroupedGemmArgs& a, cudaStream_t s) { cuda::groupedGemm(a, s); }});
    if (shapes) {
      paths.push_back({"sm90-256", [](const GroupedGemmArgs& a, cudaStream_t s) { hopper::launchShape<cuda::BF16, hopper::WideTile>(a, s); }});
      paths.push_back({"sm90-128", [](const GroupedGemmArgs& a, cudaStream_t s) { hopper::launchShape<cuda::BF16, hopper::NarrowTile>(a, s); }});
      paths.push_back({"sm90-pp", [](const GroupedGemmArgs& a, cudaStream_t s) { hopper::launchShape<cuda::BF16, hopper::PingPongTile>(a, s); }});
    } else {
      paths.push_back({"sm90", [](const GroupedGemmArgs& a, cudaStream_t s) {
                         if (gBandRowTiles > 0) {
                           hopper::launchShape<cuda::BF16, hopper::WideTile>(a, s, gBandRowTiles);
                         } else {
                           hopper::groupedGemm(a, s);
                         }
                       }});
    }
    const auto named = [&](const Model& m) {
      return std::any_of(models.begin(), models.end(), [&](const std::string& name) {
        return std::strncmp(m.name, name.c_str(), name.size()) == 0;
      });
    };
    for (const Model& m : kModels) {
      if (models.empty() || named(m)) benchModel(m, tokenCounts, paths, stream);
    }
    for (const Model& m : kOtherShapes) {
      if (named(m)) benchModel(m, tokenCounts, paths, stream);
    }
    CUDA_OK(cudaStreamDestroy(stream));
  } catch (const NativeError& error) {
    std::printf("FAIL %s: %s\n", error.code().c_str(), error.what());
    return 1;
  }
  return 0;
}
