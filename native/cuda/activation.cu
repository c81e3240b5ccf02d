// Activations on the GPU: one thread per output element (grid-stride), float32 arithmetic with the
// accurate libm functions (expf, tanhf, erff), so results track the CPU backend's std:: versions.
#include "activation_math.cuh"
#include "check.h"
#include "flat_launch.h"
#include "float_access.cuh"
#include "kernels.h"

namespace moekit::cuda {
namespace {

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
  // Optional (fused-GEMM fallback): only rows in [rowOffsets[0], rowOffsets[groups]) are written.
  const int32_t* rowOffsets;
  int32_t groups;
};

template <typename In, typename Out>
__global__ void activationKernel(ActivationParams p) {
  const auto* input = static_cast<const typename In::Storage*>(p.input);
  auto* output = static_cast<typename Out::Storage*>(p.output);
  const bool gatedKind = isGated(p.kind);
  const bool interleaved = p.layout == GateLayout::Interleaved;
  const int64_t count = p.rows * p.width;
  const int64_t firstRow = p.rowOffsets == nullptr ? 0 : p.rowOffsets[0];
  const int64_t lastRow = p.rowOffsets == nullptr ? p.rows : p.rowOffsets[p.groups];
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t row = i / p.width;
    const int64_t column = i % p.width;
    if (row < firstRow || row >= lastRow) continue;
    const auto* in = input + row * p.inputWidth;
    float result;
    if (!gatedKind) {
      result = activatePlain(p.kind, In::load(in[column]));
    } else {
      const float gate = In::load(interleaved ? in[2 * column] : in[column]);
      const float up = In::load(interleaved ? in[2 * column + 1] : in[p.width + column]);
      result = activateGated(p.kind, gate, up, p.alpha, p.limit);
    }
    output[i] = Out::store(result);
  }
}

}  // namespace

void activationInRows(const ActivationArgs& args, const int32_t* rowOffsets, int32_t groups, cudaStream_t stream) {
  const ActivationParams params{args.input.data,  args.output.data, args.output.dim(0), args.output.dim(1),
                                args.input.dim(1), args.kind,       args.layout,        args.alpha,
                                args.limit,        rowOffsets,      groups};
  const int64_t count = params.rows * params.width;
  if (count == 0) return;
  dispatchFloat(args.input.dtype, "activation input", [&](auto in) {
    dispatchFloat(args.output.dtype, "activation output", [&](auto out) {
      activationKernel<decltype(in), decltype(out)>
          <<<FlatLaunch::blocks(count), FlatLaunch::kThreads, 0, stream>>>(params);
      MOEKIT_CHECK_LAUNCH("activationKernel");
    });
  });
}

void activation(const ActivationArgs& args, cudaStream_t stream) { activationInRows(args, nullptr, 0, stream); }

}  // namespace moekit::cuda
