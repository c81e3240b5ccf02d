// Marks functions that both host code and CUDA kernels call (dtype conversions, hashing, the fault
// record's bit helpers): __host__ __device__ under nvcc, nothing for the host compiler.
#pragma once

#if defined(__CUDACC__)
#define MOEKIT_HOST_DEVICE __host__ __device__
#else
#define MOEKIT_HOST_DEVICE
#endif

#include <cstdint>

namespace moekit {

// How many pieces of `size` cover `extent` (extent >= 0, size > 0).
MOEKIT_HOST_DEVICE constexpr int64_t ceilDiv(int64_t extent, int64_t size) { return (extent + size - 1) / size; }

}  // namespace moekit
