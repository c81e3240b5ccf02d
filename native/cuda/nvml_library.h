// NVML (the driver's management library), loaded at run time with dlopen, for one job: reading a
// GPU's clocks and power while the benchmark times it. A large prefill layer can hold an H200 at
// its power limit, and the SM clock then falls well below the one a short dense GEMM runs at
// (bench/NOTES.md, v12), so timings mean little without the clocks they ran at. As for cuBLAS,
// nothing links against it: the few entry points used are declared by hand with NVML's stable C
// ABI. MOEKIT_NVML_PATH names the library file (or its folder); otherwise libnvidia-ml.so.1.
#pragma once

#include <cstdint>

#include "../core/runtime_library.h"

namespace moekit::nvml {

using Availability = LibraryAvailability;
Availability probe();

// One reading of a GPU's state.
struct Reading {
  uint32_t smClockMHz = 0;
  uint32_t memoryClockMHz = 0;
  double powerW = 0;         // board power draw
  double powerLimitW = 0;    // the limit the driver enforces
  uint32_t temperatureC = 0;
  uint64_t clockEventReasons = 0;  // NVML's bits: why the clocks are held below their maximum
};

// Now, of CUDA device `device` (found by its PCI bus id, so CUDA_VISIBLE_DEVICES and NVML's own
// order do not matter). Throws NativeError E_CUDA where NVML is not available.
Reading read(int device);

}  // namespace moekit::nvml
