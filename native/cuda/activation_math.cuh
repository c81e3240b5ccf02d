// The activation functions in float32, shared by the activation kernel and the GEMM epilogues that
// fuse them, so a fused and an unfused forward compute the same function. The accurate libm
// functions (expf, tanhf, erff) keep results close to the CPU backend's std:: versions.
#pragma once

#include "../core/op_args.h"

namespace moekit::cuda {

constexpr float kSqrtTwoOverPi = 0.7978845608028654f;
constexpr float kGeluTanhCubic = 0.044715f;
constexpr float kInverseSqrtTwo = 0.7071067811865476f;

__device__ __forceinline__ float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }
__device__ __forceinline__ float silu(float x) { return x * sigmoid(x); }
__device__ __forceinline__ float geluTanh(float x) {
  return 0.5f * x * (1.0f + tanhf(kSqrtTwoOverPi * (x + kGeluTanhCubic * x * x * x)));
}
__device__ __forceinline__ float geluErf(float x) { return 0.5f * x * (1.0f + erff(x * kInverseSqrtTwo)); }

// Gated kinds: one output from a (gate, up) pair. alpha and limit are read by GptOssSwiGLU only.
__device__ __forceinline__ float activateGated(ActivationKind kind, float gate, float up, float alpha, float limit) {
  switch (kind) {
    case ActivationKind::SwiGLU: return silu(gate) * up;
    case ActivationKind::GeGLU: return geluTanh(gate) * up;
    case ActivationKind::GptOssSwiGLU: {
      const float g = fminf(gate, limit);
      const float u = fminf(fmaxf(up, -limit), limit);
      return (u + 1.0f) * g * sigmoid(alpha * g);
    }
    default: return 0.0f;  // not gated: never called
  }
}

// Plain kinds: one output from one input.
__device__ __forceinline__ float activatePlain(ActivationKind kind, float x) {
  switch (kind) {
    case ActivationKind::SiLU: return silu(x);
    case ActivationKind::GELU: return geluErf(x);
    case ActivationKind::ReLU: return fmaxf(x, 0.0f);
    default: return 0.0f;  // gated: never called
  }
}

}  // namespace moekit::cuda
