// Turning CUDA runtime failures into moekit::CudaError. Every runtime call and every kernel launch
// in the CUDA backend goes through one of these, so a failure surfaces in JavaScript with a stable
// code (E_OOM for allocation failures, E_CUDA otherwise), CUDA's own words, and the call site.
#pragma once

#include <cuda_runtime.h>

#include <string>

#include "../core/errors.h"

namespace moekit::cuda {

// The error code a failed CUDA call maps to.
inline const char* errorCodeFor(cudaError_t status) {
  return status == cudaErrorMemoryAllocation ? "E_OOM" : "E_CUDA";
}

// Throws CudaError unless `status` is cudaSuccess. `what` names the call, `file`/`line` its site.
// A failed call also sets the runtime's per-thread "last error"; it is cleared here so that the
// next launch check does not report this failure a second time. (Sticky errors, which poison the
// context, are reported again by every later call anyway.)
inline void checkCuda(cudaError_t status, const char* what, const char* file, int line) {
  if (status == cudaSuccess) return;
  (void)cudaGetLastError();
  throw CudaError(errorCodeFor(status), std::string(what) + " failed: " + cudaGetErrorString(status) + " (" +
                                            cudaGetErrorName(status) + " at " + file + ":" + std::to_string(line) + ")");
}

}  // namespace moekit::cuda

// MOEKIT_CUDA_CHECK(cudaMemsetAsync(...)): throws CudaError naming the call if it failed.
#define MOEKIT_CUDA_CHECK(call) ::moekit::cuda::checkCuda((call), #call, __FILE__, __LINE__)

// MOEKIT_CHECK_LAUNCH("routingKernel"): after a <<<...>>> launch, throws if the launch failed
// (bad configuration, missing kernel image, or an earlier asynchronous fault now reported).
#define MOEKIT_CHECK_LAUNCH(kernelName) \
  ::moekit::cuda::checkCuda(cudaGetLastError(), "launch of " kernelName, __FILE__, __LINE__)
