// Combine (unpermute) on the GPU: one block per token, threads across the hidden dimension. Each
// output element sums its token's K expert rows in slot order j = 0..K-1 (skipping pairs dropped
// by an expert-parallel permute), then adds the shared expert: the CPU backend's order, with no atomics, so results are deterministic.
#include "check.h"
#include "faults.cuh"
#include "flat_launch.h"
#include "float_access.cuh"
#include "kernels.h"

namespace moekit::cuda {
namespace {

struct CombineParams {
  const void* expertOutput;       // [T*K, H], expert-sorted rows
  const float* topkWeights;       // [T, K]
  const int32_t* sourceToPermuted;  // [T, K]
  const void* shared;             // [T, H] or nullptr
  const float* sharedGateLogits;  // [T] or nullptr
  void* output;                   // [T, H]
  int64_t tokens;
  int64_t hidden;
  int64_t slots;
  int64_t rows;                   // of expertOutput: sources must lie in [-1, rows)
  FaultSink faults;
};

template <typename In, typename Shared, typename Out>
__global__ void __launch_bounds__(FlatLaunch::kThreads) combineKernel(CombineParams p) {
  const auto* rows = static_cast<const typename In::Storage*>(p.expertOutput);
  const auto* shared = static_cast<const typename Shared::Storage*>(p.shared);
  auto* output = static_cast<typename Out::Storage*>(p.output);
  for (int64_t token = blockIdx.x; token < p.tokens; token += gridDim.x) {
    const float* weights = p.topkWeights + token * p.slots;
    const int32_t* sourceRows = p.sourceToPermuted + token * p.slots;
    const float sharedScale = p.sharedGateLogits ? 1.0f / (1.0f + expf(-p.sharedGateLogits[token])) : 1.0f;
    // One thread reports each bad source row; every thread skips it below.
    if (threadIdx.x == 0) {
      for (int64_t j = 0; j < p.slots; ++j) {
        if (sourceRows[j] < -1 || sourceRows[j] >= p.rows) {
          reportFault(p.faults, FaultKind::SourceRowOutOfRange, sourceRows[j], token * p.slots + j, p.rows);
        }
      }
    }
    for (int64_t h = threadIdx.x; h < p.hidden; h += blockDim.x) {
      // Separate multiply and add (the _rn intrinsics are never fused into an FMA), as the CPU
      // backend computes them: float32 results then agree with it bit for bit on x86-64.
      float sum = 0.0f;
      for (int64_t j = 0; j < p.slots; ++j) {
        // Negative: dropped (routed to an expert on another rank), or a fault; past the rows: a fault.
        if (sourceRows[j] < 0 || sourceRows[j] >= p.rows) continue;
        const float value = In::load(rows[static_cast<int64_t>(sourceRows[j]) * p.hidden + h]);
        sum = __fadd_rn(sum, __fmul_rn(weights[j], value));
      }
      if (shared != nullptr) sum = __fadd_rn(sum, __fmul_rn(sharedScale, Shared::load(shared[token * p.hidden + h])));
      output[token * p.hidden + h] = Out::store(sum);
    }
  }
}

}  // namespace

void combine(const CombineArgs& args, cudaStream_t stream) {
  const CombineParams params{args.expertOutput.data,
                             args.topkWeights.as<float>(),
                             args.sourceToPermuted.as<int32_t>(),
                             args.shared.present() ? args.shared.data : nullptr,
                             args.shared.present() && args.sharedGateLogits.present() ? args.sharedGateLogits.as<float>() : nullptr,
                             args.output.data,
                             args.output.dim(0),
                             args.output.dim(1),
                             args.topkWeights.dim(1),
                             args.expertOutput.dim(0),
                             FaultSink::of(args)};
  if (params.tokens == 0 || params.hidden == 0) {
    // No element to sum, but the sources are still the op's to check.
    checkSourceRows(params.sourceToPermuted, params.tokens * params.slots, params.rows, args, stream);
    return;
  }
  const unsigned blocks = FlatLaunch::blocks(params.tokens, 1);  // one token per block and pass
  // Without a shared expert its format is irrelevant; dispatch on the expert output's.
  const DType sharedDType = args.shared.present() ? args.shared.dtype : args.expertOutput.dtype;
  dispatchFloat(args.expertOutput.dtype, "combine expertOutput", [&](auto in) {
    dispatchFloat(sharedDType, "combine shared", [&](auto sharedFormat) {
      dispatchFloat(args.output.dtype, "combine output", [&](auto out) {
        combineKernel<decltype(in), decltype(sharedFormat), decltype(out)>
            <<<blocks, FlatLaunch::kThreads, 0, stream>>>(params);
        MOEKIT_CHECK_LAUNCH("combineKernel");
      });
    });
  });
}

}  // namespace moekit::cuda
