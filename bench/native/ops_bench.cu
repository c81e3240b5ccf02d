// Times single ops of the CUDA backend at model sizes, as the native harness
// (test/native/cuda_ops_test.cu, which only checks) used to at its end: routing and permute at
// DeepSeek-V3's shape, and Mixtral-8x7B's two expert GEMMs (H 4096, I 14336, 8 experts, top-2)
// in bf16, f16 and f32 through cuda::groupedGemm (whatever family MOEKIT_GEMM or the heuristic
// picks). Each time is the median CUDA-graph replay (bench_common.cuh).
//
// Build (after test/native/run_cuda_ops_test.sh --build-only has built the library objects):
//   nvcc -std=c++17 -O3 --expt-relaxed-constexpr -Inative -gencode=arch=compute_90a,code=sm_90a
//     bench/native/ops_bench.cu $(ls build/native-test/objects/native_*.o) -o build/native-test/ops_bench
#include <cstdio>
#include <random>

#include "bench_common.cuh"
#include "core/dtype.h"

namespace moekit::bench {
namespace {

constexpr int kReplays = 10;

// Routing + permute at 20000 tokens, 256 experts, top-8, H 7168 bf16 (DeepSeek-V3-like).
void timeRoutingAndPermute(cudaStream_t stream) {
  const int64_t T = 20000, H = 7168;
  const int32_t E = 256, K = 8;
  DeviceBuffer logits(T * E * 4), bias(E * 4), ids(T * K * 4), weights(T * K * 4), counts(E * 4);
  fill(view(logits, DType::Float32, {T, E}), 95, 3.0f, stream);
  fill(view(bias, DType::Float32, {E}), 96, 0.5f, stream);
  RoutingArgs routing;
  routing.logits = view(logits, DType::Float32, {T, E});
  routing.correctionBias = view(bias, DType::Float32, {E});
  routing.topkIds = view(ids, DType::Int32, {T, K});
  routing.topkWeights = view(weights, DType::Float32, {T, K});
  routing.expertCounts = view(counts, DType::Int32, {E});
  routing.method = RoutingMethod::SigmoidGroupTopK;
  routing.topK = K;
  routing.renormalize = true;
  routing.numGroups = 8;
  routing.topkGroups = 4;
  routing.scalingFactor = 2.5f;
  const float routingMs = timeGraph([&] { cuda::routing(routing, stream); }, stream, kReplays);

  DeviceBuffer x(T * H * 2), permuted(T * K * H * 2), offsets((E + 1) * 4), toPermuted(T * K * 4), toSource(T * K * 4);
  fill(view(x, DType::BFloat16, {T, H}), 97, 1.0f, stream);
  PermuteArgs permute;
  permute.input = view(x, DType::BFloat16, {T, H});
  permute.topkIds = routing.topkIds;
  permute.permuted = view(permuted, DType::BFloat16, {T * K, H});
  permute.expertOffsets = view(offsets, DType::Int32, {E + 1});
  permute.sourceToPermuted = view(toPermuted, DType::Int32, {T, K});
  permute.permutedToSource = view(toSource, DType::Int32, {T * K});
  permute.localExpertCount = E;
  permute.totalExperts = E;
  const float permuteMs = timeGraph([&] { cuda::permute(permute, stream); }, stream, kReplays);
  std::printf("routing sigmoid_group_topk T=%lld E=%d K=%d: %.3f ms; permute (H=%lld bf16): %.3f ms\n",
              static_cast<long long>(T), E, K, routingMs, static_cast<long long>(H), permuteMs);
}

// Mixtral-8x7B's expert GEMMs for `tokens` tokens routed uniformly over its experts.
void timeMixtral(DType dtype, int tokens, cudaStream_t stream) {
  const Model& mixtral = kModels[0];
  const int64_t E = mixtral.experts, H = mixtral.hidden, I = mixtral.intermediate, rows = int64_t{tokens} * mixtral.topK;
  std::mt19937 random(90);
  const Routing routing = randomRouting(mixtral, tokens, random);
  const size_t bytes = dtypeSize(dtype);
  DeviceBuffer offsets((E + 1) * 4), x(rows * H * bytes), w13(E * 2 * I * H * bytes), w2(E * H * I * bytes), hidden(rows * 2 * I * bytes),
      y(rows * H * bytes);
  CUDA_OK(cudaMemcpyAsync(offsets.data, routing.offsets.data(), (E + 1) * 4, cudaMemcpyHostToDevice, stream));
  fill(view(x, dtype, {rows, H}), 91, 1.0f, stream);
  fill(view(w13, dtype, {E, 2 * I, H}), 92, 0.02f, stream);
  fill(view(w2, dtype, {E, H, I}), 93, 0.02f, stream);
  GroupedGemmArgs up;
  up.input = view(x, dtype, {rows, H});
  up.weights = view(w13, dtype, {E, 2 * I, H});
  up.expertOffsets = view(offsets, DType::Int32, {E + 1});
  up.output = view(hidden, dtype, {rows, 2 * I});
  GroupedGemmArgs down;
  down.input = view(hidden, dtype, {rows, I});  // the first I columns' worth of rows, reinterpreted
  down.weights = view(w2, dtype, {E, H, I});
  down.expertOffsets = up.expertOffsets;
  down.output = view(y, dtype, {rows, H});
  const int replays = dtype == DType::Float32 ? 3 : kReplays;
  const float upMs = timeGraph([&] { cuda::groupedGemm(up, stream); }, stream, replays);
  const float downMs = timeGraph([&] { cuda::groupedGemm(down, stream); }, stream, replays);
  const double upFlops = 2.0 * rows * 2 * I * H, downFlops = 2.0 * rows * H * I;
  std::printf("groupedGemm %-8s Mixtral T=%d (M=%lld): w13 %.2f ms (%.1f TFLOP/s), w2 %.2f ms (%.1f TFLOP/s), expert GEMMs %.2f ms\n",
              dtypeName(dtype), tokens, static_cast<long long>(rows), upMs, upFlops / upMs / 1e9, downMs, downFlops / downMs / 1e9,
              upMs + downMs);
}

}  // namespace
}  // namespace moekit::bench

int main() {
  using namespace moekit;
  cudaStream_t stream;
  CUDA_OK(cudaSetDevice(0));
  CUDA_OK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  bench::timeRoutingAndPermute(stream);
  bench::timeMixtral(DType::BFloat16, 8192, stream);
  bench::timeMixtral(DType::BFloat16, 20000, stream);
  bench::timeMixtral(DType::Float16, 20000, stream);
  bench::timeMixtral(DType::Float32, 8192, stream);
  CUDA_OK(cudaStreamSynchronize(stream));
  return 0;
}
