#include "gpu_telemetry.h"

#include <string>

#include "js_errors.h"
#include "library_info.h"
#if MOEKIT_WITH_CUDA
#include "cuda/nvml_library.h"
#endif

namespace moekit::binding {
namespace {

// nvmlInfo() → {available, path, problem, version}
Napi::Value NvmlInfo(const Napi::CallbackInfo& info) {
#if MOEKIT_WITH_CUDA
  return libraryInfo(info.Env(), nvml::probe());
#else
  return libraryInfo(info.Env(), withoutCuda());
#endif
}

// gpuReading(device) → {smClockMHz, memoryClockMHz, powerW, powerLimitW, temperatureC,
// clockEventReasons}: CUDA device `device` now (a few microseconds of host time).
Napi::Value GpuReading(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) throwJsError(env, "E_INVALID_ARGUMENT", "gpuReading: expected (device)");
  const int device = info[0].As<Napi::Number>().Int32Value();
#if MOEKIT_WITH_CUDA
  const nvml::Reading reading = translateErrors(env, [&] { return nvml::read(device); });
  Napi::Object result = Napi::Object::New(env);
  result.Set("smClockMHz", reading.smClockMHz);
  result.Set("memoryClockMHz", reading.memoryClockMHz);
  result.Set("powerW", reading.powerW);
  result.Set("powerLimitW", reading.powerLimitW);
  result.Set("temperatureC", reading.temperatureC);
  // The reasons are bits below 2^53: a JS number holds them exactly.
  result.Set("clockEventReasons", static_cast<double>(reading.clockEventReasons));
  return result;
#else
  throwJsError(env, "E_DEVICE", "gpuReading: device " + std::to_string(device) + ": this build of moekit has no CUDA backend");
#endif
}

}  // namespace

void RegisterGpuTelemetry(Napi::Env env, Napi::Object exports) {
  exports.Set("nvmlInfo", Napi::Function::New<NvmlInfo>(env, "nvmlInfo"));
  exports.Set("gpuReading", Napi::Function::New<GpuReading>(env, "gpuReading"));
}

}  // namespace moekit::binding
