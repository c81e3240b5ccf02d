// What the native GEMM benches (gemm_small_m_bench.cu, gemm_sm90_bench.cu) share: the model
// shapes, device buffers, random routings and CUDA-graph timing. Included by each, after the
// library source it times.
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <memory>
#include <random>
#include <vector>

#include "core/op_args.h"
#include "cuda/check.h"
#include "cuda/kernels.h"

namespace moekit::bench {

#define CUDA_OK(call) ::moekit::cuda::checkCuda((call), #call, __FILE__, __LINE__)

struct Model {
  const char* name;
  int32_t experts;
  int32_t topK;
  int64_t hidden;
  int64_t intermediate;
};

const Model kModels[] = {
    {"mixtral-8x7b", 8, 2, 4096, 14336},
    {"qwen3-30b-a3b", 128, 8, 2048, 768},
    {"deepseek-v3", 256, 8, 7168, 2048},
};

// Shapes beyond the presets (the layer bench's --shape points): run only when named (--models).
const Model kOtherShapes[] = {
    {"e384-k8-h7168-i2048", 384, 8, 7168, 2048},  // Kimi-K2-sized
    {"e64-k6-h2048-i1408", 64, 6, 2048, 1408},    // DeepSeek-V2-Lite-sized
};

struct DeviceBuffer {
  void* data = nullptr;
  explicit DeviceBuffer(size_t bytes) { CUDA_OK(cudaMalloc(&data, std::max<size_t>(bytes, 16))); }
  ~DeviceBuffer() { (void)cudaFree(data); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
};

TensorView view(const DeviceBuffer& buffer, DType dtype, std::vector<int64_t> shape) {
  return TensorView{buffer.data, dtype, std::move(shape)};
}

void fill(const TensorView& tensor, uint64_t seed, float scale, cudaStream_t stream) {
  FillRandomArgs args;
  args.output = tensor;
  args.seed = seed;
  args.scale = scale;
  cuda::fillRandom(args, stream);
}

// One routing of `tokens` tokens: offsets of the expert-sorted rows and the experts it touches.
struct Routing {
  std::vector<int32_t> offsets;
  int touched = 0;
  int maxRows = 0;
};

Routing randomRouting(const Model& m, int tokens, std::mt19937& random) {
  std::vector<int32_t> counts(m.experts, 0);
  std::vector<int32_t> ids(m.experts);
  for (int t = 0; t < tokens; ++t) {
    for (int32_t e = 0; e < m.experts; ++e) ids[e] = e;
    for (int j = 0; j < m.topK; ++j) {  // k distinct experts, uniformly
      std::uniform_int_distribution<int32_t> pick(j, m.experts - 1);
      std::swap(ids[j], ids[pick(random)]);
      ++counts[ids[j]];
    }
  }
  Routing r;
  r.offsets.assign(m.experts + 1, 0);
  for (int32_t e = 0; e < m.experts; ++e) {
    r.offsets[e + 1] = r.offsets[e] + counts[e];
    r.touched += counts[e] > 0;
    r.maxRows = std::max(r.maxRows, counts[e]);
  }
  return r;
}

float medianOf(std::vector<float> values) {
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

// Median milliseconds of one replay (of `replays`) of a graph holding `enqueue` captured once.
float timeGraph(const std::function<void()>& enqueue, cudaStream_t stream, int replays) {
  cudaGraph_t graph;
  cudaGraphExec_t exec;
  CUDA_OK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
  enqueue();
  CUDA_OK(cudaStreamEndCapture(stream, &graph));
  CUDA_OK(cudaGraphInstantiate(&exec, graph, 0));
  cudaEvent_t start, stop;
  CUDA_OK(cudaEventCreate(&start));
  CUDA_OK(cudaEventCreate(&stop));
  CUDA_OK(cudaGraphLaunch(exec, stream));  // warm-up
  std::vector<float> times;
  for (int i = 0; i < replays; ++i) {
    CUDA_OK(cudaEventRecord(start, stream));
    CUDA_OK(cudaGraphLaunch(exec, stream));
    CUDA_OK(cudaEventRecord(stop, stream));
    CUDA_OK(cudaEventSynchronize(stop));
    float ms = 0;
    CUDA_OK(cudaEventElapsedTime(&ms, start, stop));
    times.push_back(ms);
  }
  CUDA_OK(cudaEventDestroy(start));
  CUDA_OK(cudaEventDestroy(stop));
  CUDA_OK(cudaGraphExecDestroy(exec));
  CUDA_OK(cudaGraphDestroy(graph));
  return medianOf(times);
}

// One model and token count, kVariants times over: a random routing per variant with its device
// offsets, input, GEMM1 output (`middles`) and GEMM2 output, and the two GEMMs' arguments over
// them (bf16; GEMM1 = K H, N 2I with SwiGLU fused; GEMM2 = K I, N H). w13 and w2 are the weights.
struct GemmWorkload {
  int64_t experts, hidden, intermediate, rows;
  int tokens;
  const DeviceBuffer& w13;
  const DeviceBuffer& w2;
  std::vector<Routing> routings;
  std::vector<std::unique_ptr<DeviceBuffer>> offsets, inputs, middles, outputs;

  GemmWorkload(const Model& m, int tokenCount, int variants, const DeviceBuffer& gateUp, const DeviceBuffer& down,
               std::mt19937& random, cudaStream_t stream)
      : experts(m.experts), hidden(m.hidden), intermediate(m.intermediate), rows(int64_t{tokenCount} * m.topK),
        tokens(tokenCount), w13(gateUp), w2(down) {
    for (int v = 0; v < variants; ++v) {
      routings.push_back(randomRouting(m, tokens, random));
      offsets.push_back(std::make_unique<DeviceBuffer>((experts + 1) * sizeof(int32_t)));
      CUDA_OK(cudaMemcpy(offsets.back()->data, routings.back().offsets.data(), (experts + 1) * sizeof(int32_t),
                         cudaMemcpyHostToDevice));
      inputs.push_back(std::make_unique<DeviceBuffer>(rows * hidden * 2));
      fill(view(*inputs.back(), DType::BFloat16, {rows * hidden}), 100 + v, 1.0f, stream);
      middles.push_back(std::make_unique<DeviceBuffer>(rows * intermediate * 2));
      outputs.push_back(std::make_unique<DeviceBuffer>(rows * hidden * 2));
    }
  }

  GroupedGemmArgs gemm1(int v) const {
    GroupedGemmArgs a;
    a.input = view(*inputs[v], DType::BFloat16, {rows, hidden});
    a.weights = view(w13, DType::BFloat16, {experts, 2 * intermediate, hidden});
    a.expertOffsets = view(*offsets[v], DType::Int32, {experts + 1});
    a.output = view(*middles[v], DType::BFloat16, {rows, intermediate});
    a.activation.enabled = true;
    a.activation.kind = ActivationKind::SwiGLU;
    a.maxRowsPerExpert = tokens;
    return a;
  }

  GroupedGemmArgs gemm2(int v) const {
    GroupedGemmArgs a;
    a.input = view(*middles[v], DType::BFloat16, {rows, intermediate});
    a.weights = view(w2, DType::BFloat16, {experts, hidden, intermediate});
    a.expertOffsets = view(*offsets[v], DType::Int32, {experts + 1});
    a.output = view(*outputs[v], DType::BFloat16, {rows, hidden});
    a.maxRowsPerExpert = tokens;
    return a;
  }
};

}  // namespace moekit::bench
