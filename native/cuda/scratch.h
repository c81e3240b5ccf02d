// Stream-ordered scratch memory for an op's intermediates (a GEMM's float products before an
// unfused activation, quantized copies of its input): allocated from the device's pool on the op's
// stream and freed on it when the owner goes out of scope, after the kernels enqueued meanwhile in
// stream order. No host synchronisation, so ops that use it stay capturable in a CUDA graph.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>

#include "check.h"

namespace moekit::cuda {

class ScratchBuffer {
 public:
  // Where a buffer holds several parts, each starts at a multiple of this (TMA and 16-byte vector
  // loads need 16; the pool's allocations are aligned further).
  static constexpr size_t kPartAlignment = 256;
  static size_t roundUp(size_t bytes) { return (bytes + kPartAlignment - 1) / kPartAlignment * kPartAlignment; }

  ScratchBuffer(size_t bytes, cudaStream_t stream) : stream_(stream) {
    MOEKIT_CUDA_CHECK(cudaMallocAsync(&data_, std::max<size_t>(bytes, 1), stream));
  }
  ~ScratchBuffer() {
    if (data_ != nullptr) (void)cudaFreeAsync(data_, stream_);
  }
  ScratchBuffer(const ScratchBuffer&) = delete;
  ScratchBuffer& operator=(const ScratchBuffer&) = delete;

  void* data() const { return data_; }
  // The part starting `offset` bytes in.
  void* at(size_t offset) const { return static_cast<char*>(data_) + offset; }

 private:
  void* data_ = nullptr;
  cudaStream_t stream_;
};

}  // namespace moekit::cuda
