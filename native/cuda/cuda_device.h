// The CUDA devices, compiled only with the CUDA backend (MOEKIT_WITH_CUDA).
#pragma once

#include <memory>
#include <string>

#include "../core/device.h"

namespace moekit::cuda {

struct DeviceInfo {
  int index = 0;
  std::string name;
  size_t totalMemory = 0;
  int major = 0;
  int minor = 0;
  int multiprocessors = 0;
};

// Number of usable CUDA devices; 0 (not an error) when there is no driver or no GPU.
int deviceCount();
DeviceInfo deviceInfo(int index);

// A device with its own non-blocking stream and a stream-ordered memory pool
// (cudaMallocAsync with a release threshold). Throws CudaError when the GPU cannot be used.
std::unique_ptr<Device> makeDevice(int index);

}  // namespace moekit::cuda
