// A GPU's clocks and power as the driver reports them (native/cuda/nvml_library): nvmlInfo() says
// whether NVML could be loaded, gpuReading(device) reads CUDA device `device` now. The benchmark
// samples them while it times, so each result says what clocks it ran at.
#pragma once

#include <napi.h>

namespace moekit::binding {

void RegisterGpuTelemetry(Napi::Env env, Napi::Object exports);

}  // namespace moekit::binding
