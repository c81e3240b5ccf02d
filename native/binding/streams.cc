#include "streams.h"

#include "device_registry.h"
#include "js_errors.h"
#if MOEKIT_WITH_CUDA
#include <cuda_runtime.h>

#include "cuda/cuda_device.h"
#endif

namespace moekit::binding {
namespace {

#if MOEKIT_WITH_CUDA

cuda::CudaDevice& cudaDevice(const Napi::Value& value) {
  Napi::Env env = value.Env();
  if (!value.IsNumber() || value.As<Napi::Number>().Int32Value() < 0) throwJsError(env, "E_DEVICE", "streams need a CUDA device");
  return translateErrors(env, [&]() -> cuda::CudaDevice& {
    return dynamic_cast<cuda::CudaDevice&>(deviceFor(value.As<Napi::Number>().Int32Value()));
  });
}

// Stream handles cross into JavaScript as BigInt (the pointer's value).
cudaStream_t streamFrom(const Napi::Value& value) {
  if (value.IsNull() || value.IsUndefined()) return nullptr;
  if (!value.IsBigInt()) throwJsError(value.Env(), "E_INVALID_ARGUMENT", "a stream handle must be a bigint");
  bool lossless = false;
  const uint64_t bits = value.As<Napi::BigInt>().Uint64Value(&lossless);
  return reinterpret_cast<cudaStream_t>(static_cast<uintptr_t>(bits));
}

void check(Napi::Env env, cudaError_t status, const char* what) {
  if (status != cudaSuccess) throwJsError(env, "E_CUDA", std::string(what) + ": " + cudaGetErrorString(status));
}

// createStream(device) → bigint: a new non-blocking stream on the device.
Napi::Value CreateStream(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  cuda::CudaDevice& device = cudaDevice(info[0]);
  check(env, cudaSetDevice(device.index()), "cudaSetDevice");
  cudaStream_t stream = nullptr;
  check(env, cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
  return Napi::BigInt::New(env, static_cast<uint64_t>(reinterpret_cast<uintptr_t>(stream)));
}

// destroyStream(device, handle): work already enqueued on it still completes.
void DestroyStream(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  cuda::CudaDevice& device = cudaDevice(info[0]);
  cudaStream_t stream = streamFrom(info[1]);
  if (stream == device.stream()) throwJsError(env, "E_INVALID_ARGUMENT", "destroyStream: the device still uses this stream");
  check(env, cudaSetDevice(device.index()), "cudaSetDevice");
  check(env, cudaStreamDestroy(stream), "cudaStreamDestroy");
}

// setStream(device, handle | null)
void SetStream(const Napi::CallbackInfo& info) {
  cuda::CudaDevice& device = cudaDevice(info[0]);
  cudaStream_t stream = streamFrom(info[1]);
  translateErrors(info.Env(), [&] { device.setStream(stream); });
}

// currentStream(device) → bigint
Napi::Value CurrentStream(const Napi::CallbackInfo& info) {
  cuda::CudaDevice& device = cudaDevice(info[0]);
  return Napi::BigInt::New(info.Env(), static_cast<uint64_t>(reinterpret_cast<uintptr_t>(device.stream())));
}

#else

[[noreturn]] void noCuda(const Napi::CallbackInfo& info) {
  throwJsError(info.Env(), "E_DEVICE", "streams need a CUDA device; this build of moekit is CPU-only");
}
Napi::Value CreateStream(const Napi::CallbackInfo& info) { noCuda(info); }
void DestroyStream(const Napi::CallbackInfo& info) { noCuda(info); }
void SetStream(const Napi::CallbackInfo& info) { noCuda(info); }
Napi::Value CurrentStream(const Napi::CallbackInfo& info) { noCuda(info); }

#endif

// beginSideWork(device), endSideWork(device), joinSideWork(device): Device::beginSideWork and its
// steps, on any device (the CPU's run side work in order).
template <void (Device::*step)()>
void SideWorkStep(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsNumber()) throwJsError(env, "E_INVALID_ARGUMENT", "side work needs a device index");
  const int index = info[0].As<Napi::Number>().Int32Value();
  translateErrors(env, [&] { (deviceFor(index).*step)(); });
}

}  // namespace

void RegisterStreams(Napi::Env env, Napi::Object exports) {
  exports.Set("beginSideWork", Napi::Function::New<SideWorkStep<&Device::beginSideWork>>(env, "beginSideWork"));
  exports.Set("endSideWork", Napi::Function::New<SideWorkStep<&Device::endSideWork>>(env, "endSideWork"));
  exports.Set("joinSideWork", Napi::Function::New<SideWorkStep<&Device::joinSideWork>>(env, "joinSideWork"));
  exports.Set("createStream", Napi::Function::New<CreateStream>(env, "createStream"));
  exports.Set("destroyStream", Napi::Function::New<DestroyStream>(env, "destroyStream"));
  exports.Set("setStream", Napi::Function::New<SetStream>(env, "setStream"));
  exports.Set("currentStream", Napi::Function::New<CurrentStream>(env, "currentStream"));
}

}  // namespace moekit::binding
