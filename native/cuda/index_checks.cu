// Index checks on their own, for calls whose main kernel has no work to do (a grouped GEMM over 0
// rows or 0 columns, a combine of 0-wide rows): the indices are still the op's input, and a bad one
// must still fault the op (native/core/op_args.h, "Faults"). A correct run never takes these paths
// at a size where their extra launch would matter.
#include "check.h"
#include "faults.cuh"
#include "flat_launch.h"
#include "kernels.h"

namespace moekit::cuda {
namespace {

// Each of offsets[0..experts] must lie in [the offset before it (0 for the first), rows].
__global__ void checkExpertOffsetsKernel(const int32_t* offsets, int32_t experts, int64_t rows, FaultSink faults) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i <= experts;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t lower = i == 0 ? 0 : offsets[i - 1];
    if (offsets[i] < lower || offsets[i] > rows) reportFault(faults, FaultKind::ExpertOffsetOutOfRange, offsets[i], i, rows);
  }
}

__global__ void checkSourceRowsKernel(const int32_t* sources, int64_t count, int64_t rows, FaultSink faults) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    if (sources[i] < -1 || sources[i] >= rows) reportFault(faults, FaultKind::SourceRowOutOfRange, sources[i], i, rows);
  }
}

}  // namespace

void checkExpertOffsets(const int32_t* offsets, int32_t experts, int64_t rows, const OpIdentity& op, cudaStream_t stream) {
  const FaultSink faults = FaultSink::of(op);
  checkExpertOffsetsKernel<<<FlatLaunch::blocks(static_cast<int64_t>(experts) + 1), FlatLaunch::kThreads, 0, stream>>>(
      offsets, experts, rows, faults);
  MOEKIT_CHECK_LAUNCH("checkExpertOffsetsKernel");
}

void checkSourceRows(const int32_t* sources, int64_t count, int64_t rows, const OpIdentity& op, cudaStream_t stream) {
  const FaultSink faults = FaultSink::of(op);
  if (count == 0) return;
  checkSourceRowsKernel<<<FlatLaunch::blocks(count), FlatLaunch::kThreads, 0, stream>>>(sources, count, rows, faults);
  MOEKIT_CHECK_LAUNCH("checkSourceRowsKernel");
}

}  // namespace moekit::cuda
