// moekit's native module: devices, tensor storage, transfers and ops (see lib/native.ts for the
// JavaScript-side interface).
#include <napi.h>

#include <algorithm>
#include <string>

#include "codes.h"
#include "collectives.h"
#include "cublas_gemm.h"
#include "device_registry.h"
#include "events.h"
#include "gpu_telemetry.h"
#include "graphs.h"
#include "js_errors.h"
#include "ops.h"
#include "storage.h"
#include "streams.h"
#include "transfers.h"
#if MOEKIT_WITH_CUDA
#include "cuda/cuda_device.h"
#endif

namespace moekit::binding {
namespace {

Napi::Value CudaDeviceCount(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), cudaDeviceCount());
}

Napi::Value CudaDeviceInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
#if MOEKIT_WITH_CUDA
  const int index = info[0].As<Napi::Number>().Int32Value();
  if (index < 0 || index >= cudaDeviceCount()) throwJsError(env, "E_DEVICE", "cuda:" + std::to_string(index) + " does not exist");
  return translateErrors(env, [&] {
    cuda::DeviceInfo details = cuda::deviceInfo(index);
    Napi::Object result = Napi::Object::New(env);
    result.Set("index", details.index);
    result.Set("name", details.name);
    result.Set("totalMemory", static_cast<double>(details.totalMemory));
    result.Set("computeCapability", std::to_string(details.major) + "." + std::to_string(details.minor));
    result.Set("multiprocessors", details.multiprocessors);
    return result;
  });
#else
  throwJsError(env, "E_DEVICE", "this build of moekit has no CUDA backend");
#endif
}

// gpuLink(from, to) → { access, nativeAtomics, performanceRank }: what the driver tells of the path
// between two GPUs (cuda/cuda_device.h, PeerLink); null in a CPU-only build, which has no GPUs.
Napi::Value GpuLink(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
#if MOEKIT_WITH_CUDA
  const int from = info[0].As<Napi::Number>().Int32Value();
  const int to = info[1].As<Napi::Number>().Int32Value();
  const int count = cudaDeviceCount();
  for (const int index : {from, to}) {
    if (index < 0 || index >= count) throwJsError(env, "E_DEVICE", "cuda:" + std::to_string(index) + " does not exist");
  }
  if (from == to) throwJsError(env, "E_INVALID_ARGUMENT", "gpuLink: a GPU has no link to itself (cuda:" + std::to_string(from) + ")");
  return translateErrors(env, [&] {
    const cuda::PeerLink link = cuda::peerLink(from, to);
    Napi::Object result = Napi::Object::New(env);
    result.Set("access", link.access);
    result.Set("nativeAtomics", link.nativeAtomics);
    result.Set("performanceRank", link.performanceRank);
    return result;
  });
#else
  return env.Null();
#endif
}

// cudaRuntimeInfo() → { runtimeVersion, driverVersion, architectures, deviceCountError }: the
// facts lib/runtime.ts diagnoses a CUDA that cannot start from (zeros and [] in a CPU-only build).
Napi::Value CudaRuntimeInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object result = Napi::Object::New(env);
  Napi::Array architectures = Napi::Array::New(env);
#if MOEKIT_WITH_CUDA
  const cuda::RuntimeStatus status = cuda::runtimeStatus();
  result.Set("runtimeVersion", status.runtimeVersion);
  result.Set("driverVersion", status.driverVersion);
  result.Set("deviceCountError", status.deviceCountError);
  // MOEKIT_CUDA_ARCHITECTURES: "sm_80,sm_90a,compute_90", from CMakeLists.txt's -gencode list.
  const std::string compiled = MOEKIT_CUDA_ARCHITECTURES;
  uint32_t next = 0;
  for (size_t start = 0; start <= compiled.size();) {
    const size_t comma = std::min(compiled.find(',', start), compiled.size());
    if (comma > start) architectures.Set(next++, compiled.substr(start, comma - start));
    start = comma + 1;
  }
#else
  result.Set("runtimeVersion", 0);
  result.Set("driverVersion", 0);
  result.Set("deviceCountError", "");
#endif
  result.Set("architectures", architectures);
  return result;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("variant", Napi::String::New(env, cudaCompiledIn() ? "cuda" : "cpu"));
  exports.Set("cudaDeviceCount", Napi::Function::New<CudaDeviceCount>(env, "cudaDeviceCount"));
  exports.Set("cudaDeviceInfo", Napi::Function::New<CudaDeviceInfo>(env, "cudaDeviceInfo"));
  exports.Set("gpuLink", Napi::Function::New<GpuLink>(env, "gpuLink"));
  exports.Set("cudaRuntimeInfo", Napi::Function::New<CudaRuntimeInfo>(env, "cudaRuntimeInfo"));
  RegisterCodes(env, exports);
  Storage::Register(env, exports);
  RegisterTransfers(env, exports);
  RegisterOps(env, exports);
  RegisterGraphs(env, exports);
  RegisterCollectives(env, exports);
  RegisterStreams(env, exports);
  RegisterEvents(env, exports);
  RegisterCublasGemm(env, exports);
  RegisterGpuTelemetry(env, exports);
  return exports;
}

}  // namespace
}  // namespace moekit::binding

static Napi::Object InitMoekit(Napi::Env env, Napi::Object exports) { return moekit::binding::Init(env, exports); }

NODE_API_MODULE(moekit, InitMoekit)
