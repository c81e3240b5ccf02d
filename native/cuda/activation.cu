// Activations on the GPU: one thread per output element (grid-stride), float32 arithmetic with the
// accurate libm functions (expf, tanhf, erff), so results track the CPU backend's std:: versions.
#include <algorithm>

#include "check.h"
#include "float_access.cuh"
#include "kernels.h"

namespace moekit::cuda {
namespace {

constexpr float kSqrtTwoOverPi = 0.7978845608028654f;
constexpr float kGeluTanhCubic = 0.044715f;
constexpr float kInverseSqrtTwo = 0.7071067811865476f;

struct ElementwiseLaunch {
  static constexpr int kThreads = 256;
  static constexpr int64_t kMaxBlocks = 1 << 16;  // the grid-stride loop covers the rest

  static unsigned blocks(int64_t count) {
    return static_cast<unsigned>(std::min<int64_t>((count + kThreads - 1) / kThreads, kMaxBlocks));
  }
};

struct ActivationParams {
  const void* input;   // [rows, inputWidth]
  void* output;        // [rows, width]
  int64_t rows;
  int64_t width;       // I
  int64_t inputWidth;  // 2I when gated, I otherwise
  ActivationKind kind;
  GateLayout layout;
  float alpha;
  float limit;
};

__device__ float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }
__device__ float silu(float x) { return x * sigmoid(x); }
__device__ float geluTanh(float x) { return 0.5f * x * (1.0f + tanhf(kSqrtTwoOverPi * (x + kGeluTanhCubic * x * x * x))); }
__device__ float geluErf(float x) { return 0.5f * x * (1.0f + erff(x * kInverseSqrtTwo)); }

__host__ __device__ bool isGated(ActivationKind kind) {
  return kind == ActivationKind::SwiGLU || kind == ActivationKind::GeGLU || kind == ActivationKind::GptOssSwiGLU;
}

__device__ float gated(const ActivationParams& p, float gate, float up) {
  switch (p.kind) {
    case ActivationKind::SwiGLU: return silu(gate) * up;
    case ActivationKind::GeGLU: return geluTanh(gate) * up;
    case ActivationKind::GptOssSwiGLU: {
      const float g = fminf(gate, p.limit);
      const float u = fminf(fmaxf(up, -p.limit), p.limit);
      return (u + 1.0f) * g * sigmoid(p.alpha * g);
    }
    default: return 0.0f;  // not gated: never called
  }
}

__device__ float plain(ActivationKind kind, float x) {
  switch (kind) {
    case ActivationKind::SiLU: return silu(x);
    case ActivationKind::GELU: return geluErf(x);
    case ActivationKind::ReLU: return fmaxf(x, 0.0f);
    default: return 0.0f;  // gated: never called
  }
}

template <typename In, typename Out>
__global__ void activationKernel(ActivationParams p) {
  const auto* input = static_cast<const typename In::Storage*>(p.input);
  auto* output = static_cast<typename Out::Storage*>(p.output);
  const bool gatedKind = isGated(p.kind);
  const bool interleaved = p.layout == GateLayout::Interleaved;
  const int64_t count = p.rows * p.width;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t row = i / p.width;
    const int64_t column = i % p.width;
    const auto* in = input + row * p.inputWidth;
    float result;
    if (!gatedKind) {
      result = plain(p.kind, In::load(in[column]));
    } else {
      const float gate = In::load(interleaved ? in[2 * column] : in[column]);
      const float up = In::load(interleaved ? in[2 * column + 1] : in[p.width + column]);
      result = gated(p, gate, up);
    }
    output[i] = Out::store(result);
  }
}

}  // namespace

void activation(const ActivationArgs& args, cudaStream_t stream) {
  const ActivationParams params{args.input.data, args.output.data, args.output.dim(0), args.output.dim(1),
                                args.input.dim(1), args.kind, args.layout, args.alpha, args.limit};
  const int64_t count = params.rows * params.width;
  if (count == 0) return;
  dispatchFloat(args.input.dtype, "activation input", [&](auto in) {
    dispatchFloat(args.output.dtype, "activation output", [&](auto out) {
      activationKernel<decltype(in), decltype(out)>
          <<<ElementwiseLaunch::blocks(count), ElementwiseLaunch::kThreads, 0, stream>>>(params);
      MOEKIT_CHECK_LAUNCH("activationKernel");
    });
  });
}

}  // namespace moekit::cuda
