// Activations on the CPU: elementwise over rows, float32 arithmetic.
#include <algorithm>
#include <cmath>

#include "float_access.h"
#include "kernels.h"
#include "parallel.h"

namespace moekit::cpu {
namespace {

constexpr int64_t kRowsPerChunk = 32;
constexpr float kSqrtTwoOverPi = 0.7978845608028654f;
constexpr float kGeluTanhCubic = 0.044715f;
constexpr float kInverseSqrtTwo = 0.7071067811865476f;

float sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }
float silu(float x) { return x * sigmoid(x); }
float geluTanh(float x) { return 0.5f * x * (1.0f + std::tanh(kSqrtTwoOverPi * (x + kGeluTanhCubic * x * x * x))); }
float geluErf(float x) { return 0.5f * x * (1.0f + std::erf(x * kInverseSqrtTwo)); }

float gated(ActivationKind kind, float gate, float up, float alpha, float limit) {
  switch (kind) {
    case ActivationKind::SwiGLU: return silu(gate) * up;
    case ActivationKind::GeGLU: return geluTanh(gate) * up;
    case ActivationKind::GptOssSwiGLU: {
      const float g = std::min(gate, limit);
      const float u = std::clamp(up, -limit, limit);
      return (u + 1.0f) * g * sigmoid(alpha * g);
    }
    default: return 0.0f;  // not gated: never called
  }
}

float plain(ActivationKind kind, float x) {
  switch (kind) {
    case ActivationKind::SiLU: return silu(x);
    case ActivationKind::GELU: return geluErf(x);
    case ActivationKind::ReLU: return std::max(x, 0.0f);
    default: return 0.0f;  // gated: never called
  }
}

template <typename In, typename Out>
void activateRows(const ActivationArgs& args, int64_t begin, int64_t end) {
  const int64_t width = args.output.dim(1);
  const int64_t inputWidth = args.input.dim(1);
  const auto* input = args.input.as<typename In::Storage>();
  auto* output = args.output.as<typename Out::Storage>();
  const bool interleaved = args.layout == GateLayout::Interleaved;
  for (int64_t row = begin; row < end; ++row) {
    const auto* in = input + row * inputWidth;
    auto* out = output + row * width;
    if (!isGated(args.kind)) {
      for (int64_t i = 0; i < width; ++i) out[i] = Out::store(plain(args.kind, In::load(in[i])));
      continue;
    }
    for (int64_t i = 0; i < width; ++i) {
      const float gate = In::load(interleaved ? in[2 * i] : in[i]);
      const float up = In::load(interleaved ? in[2 * i + 1] : in[width + i]);
      out[i] = Out::store(gated(args.kind, gate, up, args.alpha, args.limit));
    }
  }
}

}  // namespace

void activation(const ActivationArgs& args) {
  dispatchFloat(args.input.dtype, "activation input", [&](auto in) {
    dispatchFloat(args.output.dtype, "activation output", [&](auto out) {
      using In = decltype(in);
      using Out = decltype(out);
      parallelFor(0, args.input.dim(0), kRowsPerChunk,
                  [&](int64_t begin, int64_t end) { activateRows<In, Out>(args, begin, end); });
    });
  });
}

}  // namespace moekit::cpu
