// A value worked out once per CUDA device and then read without locking: the kernel families ask
// for device facts (compute capability, multiprocessors, occupancy, a raised shared-memory limit)
// on every launch, and the runtime's queries cost more than an atomic load.
#pragma once

#include <cuda_runtime.h>

#include <atomic>

#include "check.h"

namespace moekit::cuda {

// `T` is an integer or bool whose zero value means "not worked out yet"; compute() must not
// return it. Devices past kMaxDevices are not cached: they compute each time.
template <typename T>
class PerDevice {
 public:
  static constexpr int kMaxDevices = 64;

  // The value for the current device, from `compute(device)` the first time.
  template <typename Compute>
  T get(Compute&& compute) {
    int device = 0;
    MOEKIT_CUDA_CHECK(cudaGetDevice(&device));
    if (device < 0 || device >= kMaxDevices) return compute(device);
    T value = values_[device].load(std::memory_order_relaxed);
    if (value == T{}) {
      value = compute(device);
      values_[device].store(value, std::memory_order_relaxed);
    }
    return value;
  }

 private:
  std::atomic<T> values_[kMaxDevices] = {};
};

// The current device's compute capability as major * 10 + minor, queried once per device.
inline int computeCapability() {
  static PerDevice<int> cached;
  return cached.get([](int device) {
    int major = 0;
    int minor = 0;
    MOEKIT_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
    MOEKIT_CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device));
    return major * 10 + minor;
  });
}

// The current device's multiprocessor count, queried once per device.
inline int deviceMultiprocessors() {
  static PerDevice<int> cached;
  return cached.get([](int device) {
    int count = 0;
    MOEKIT_CUDA_CHECK(cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, device));
    return count;
  });
}

}  // namespace moekit::cuda
