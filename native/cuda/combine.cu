// Combine (unpermute) on the GPU: each thread owns kVector consecutive hidden elements of one token
// (a flat grid-stride loop over tokens × hidden / kVector, so a single decode token still spreads over
// several blocks). Each output element sums its token's K expert rows in slot order j = 0..K-1
// (skipping pairs dropped by an expert-parallel permute), then adds the shared expert: the CPU
// backend's order, with no atomics, so results are deterministic. Rows whose width and addresses
// allow it are read 16 bytes at a time (kVector = 8 elements); others one element at a time.
#include <cstdint>

#include "alignment.h"
#include "check.h"
#include "combine_chunk.cuh"
#include "faults.cuh"
#include "flat_launch.h"
#include "float_access.cuh"
#include "kernels.h"

namespace moekit::cuda {
namespace {

// Elements per thread on the vector path: one 16-byte load of 16-bit values (two of float32).
constexpr int kWideVector = 8;

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

template <typename In, typename Shared, typename Out, int kVector>
__global__ void __launch_bounds__(FlatLaunch::kThreads) combineKernel(CombineParams p) {
  const auto* rows = static_cast<const typename In::Storage*>(p.expertOutput);
  const auto* shared = static_cast<const typename Shared::Storage*>(p.shared);
  auto* output = static_cast<typename Out::Storage*>(p.output);
  const int64_t chunksPerToken = p.hidden / kVector;
  const int64_t items = p.tokens * chunksPerToken;
  for (int64_t item = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; item < items;
       item += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t token = item / chunksPerToken;
    const int64_t h = (item - token * chunksPerToken) * kVector;
    const float* weights = p.topkWeights + token * p.slots;
    const int32_t* sourceRows = p.sourceToPermuted + token * p.slots;
    // combine_chunk.cuh: the CPU backend's arithmetic, so float32 results agree with it.
    float sum[kVector] = {};
    for (int64_t j = 0; j < p.slots; ++j) {
      const int32_t source = sourceRows[j];
      // Negative: dropped (routed to an expert on another rank), or a fault; past the rows: a fault.
      // The thread holding the row's first chunk reports a bad source; every thread skips it.
      if (source < -1 || source >= p.rows) {
        if (h == 0) reportFault(p.faults, FaultKind::SourceRowOutOfRange, source, token * p.slots + j, p.rows);
        continue;
      }
      if (source < 0) continue;
      float values[kVector];
      loadChunk<In, kVector>(rows + static_cast<int64_t>(source) * p.hidden + h, values);
      addWeighted(sum, weights[j], values);
    }
    if (shared != nullptr) {
      const float sharedScale = p.sharedGateLogits ? 1.0f / (1.0f + expf(-p.sharedGateLogits[token])) : 1.0f;
      float values[kVector];
      loadChunk<Shared, kVector>(shared + token * p.hidden + h, values);
      addWeighted(sum, sharedScale, values);
    }
    storeChunk<Out, kVector>(sum, output + token * p.hidden + h);
  }
}

// Whether every row of `data` (absent, or rows of `hidden` elements of `dtype`) starts on a
// kWideVector-element boundary, so that whole chunks can be moved at once.
bool chunkAligned(const void* data, int64_t hidden, DType dtype) {
  return data == nullptr || (hidden % kWideVector == 0 && alignedTo(data, kWideVector * dtypeSize(dtype)));
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
  // Without a shared expert its format is irrelevant; dispatch on the expert output's.
  const DType sharedDType = args.shared.present() ? args.shared.dtype : args.expertOutput.dtype;
  const bool wide = chunkAligned(params.expertOutput, params.hidden, args.expertOutput.dtype) &&
                    chunkAligned(params.shared, params.hidden, sharedDType) &&
                    chunkAligned(params.output, params.hidden, args.output.dtype);
  dispatchFloat(args.expertOutput.dtype, "combine expertOutput", [&](auto in) {
    dispatchFloat(sharedDType, "combine shared", [&](auto sharedFormat) {
      dispatchFloat(args.output.dtype, "combine output", [&](auto out) {
        using In = decltype(in);
        using Shared = decltype(sharedFormat);
        using Out = decltype(out);
        if (wide) {
          combineKernel<In, Shared, Out, kWideVector>
              <<<FlatLaunch::blocks(params.tokens * (params.hidden / kWideVector)), FlatLaunch::kThreads, 0, stream>>>(params);
        } else {
          combineKernel<In, Shared, Out, 1><<<FlatLaunch::blocks(params.tokens * params.hidden), FlatLaunch::kThreads, 0, stream>>>(params);
        }
        MOEKIT_CHECK_LAUNCH("combineKernel");
      });
    });
  });
}

}  // namespace moekit::cuda
