// cp.async (sm_80+): global → shared copies that bypass registers, committed in groups and waited
// for by count, the mma family's software pipeline.
#pragma once

#include <cuda_runtime.h>

namespace moekit::cuda {

// 16 bytes global → shared, bypassing L1; with valid == false the 16 bytes are zero-filled and
// nothing is read (src-size 0).
// The destination as a shared-window address (what __cvta_generic_to_shared gives).
__device__ __forceinline__ void copyAsync16(unsigned sharedDestination, const void* globalSource, bool valid) {
  const int sourceBytes = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(sharedDestination), "l"(globalSource),
               "r"(sourceBytes));
}
__device__ __forceinline__ void copyAsync16(void* sharedDestination, const void* globalSource, bool valid) {
  copyAsync16(static_cast<unsigned>(__cvta_generic_to_shared(sharedDestination)), globalSource, valid);
}

__device__ __forceinline__ void commitAsyncCopies() { asm volatile("cp.async.commit_group;\n" ::); }

// Waits until at most `pending` committed groups are still in flight.
template <int pending>
__device__ __forceinline__ void waitAsyncCopies() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(pending));
}

}  // namespace moekit::cuda
