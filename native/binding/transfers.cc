#include "transfers.h"

#include <vector>

#include "device_registry.h"
#include "idle_promise.h"
#include "js_errors.h"
#include "storage.h"

namespace moekit::binding {
namespace {

Napi::Value Allocate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsNumber()) {
    throwJsError(env, "E_INVALID_ARGUMENT", "allocate: expected (device, nbytes)");
  }
  const double nbytes = info[1].As<Napi::Number>().DoubleValue();
  if (!(nbytes >= 0 && nbytes <= 9007199254740991.0)) throwJsError(env, "E_INVALID_ARGUMENT", "allocate: bad byte count");
  return Storage::Create(env, info[0].As<Napi::Number>().Int32Value(), static_cast<size_t>(nbytes));
}

// Host views are ArrayBufferViews; their bytes are [data, data + byteLength).
struct HostBytes {
  uint8_t* data;
  size_t length;
};

HostBytes hostBytes(Napi::Value value, const char* what) {
  if (!value.IsTypedArray()) throwJsError(value.Env(), "E_INVALID_ARGUMENT", std::string(what) + ": expected a typed array");
  Napi::TypedArray array = value.As<Napi::TypedArray>();
  auto* base = static_cast<uint8_t*>(array.ArrayBuffer().Data());
  return {base + array.ByteOffset(), array.ByteLength()};
}

void Upload(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Storage& dst = Storage::FromValue(info[0], "upload");
  HostBytes src = hostBytes(info[1], "upload");
  const double offset = info[2].As<Napi::Number>().DoubleValue();
  if (dst.released()) throwJsError(env, "E_DISPOSED", "upload: the tensor was disposed");
  if (offset < 0 || offset + static_cast<double>(src.length) > static_cast<double>(dst.nbytes())) {
    throwJsError(env, "E_INVALID_ARGUMENT", "upload: the data does not fit the tensor");
  }
  if (src.length == 0) return;
  translateErrors(env, [&] {
    deviceFor(dst.device()).upload(static_cast<uint8_t*>(dst.data()) + static_cast<size_t>(offset), src.data, src.length);
  });
}

// The destination typed array must be kept alive by the caller until synchronize() settles
// (lib/tensor.ts holds it across the await).
void Download(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Storage& src = Storage::FromValue(info[0], "download");
  HostBytes dst = hostBytes(info[1], "download");
  if (src.released()) throwJsError(env, "E_DISPOSED", "download: the tensor was disposed");
  if (dst.length > src.nbytes()) throwJsError(env, "E_INVALID_ARGUMENT", "download: the destination is larger than the tensor");
  if (dst.length == 0) return;
  translateErrors(env, [&] { deviceFor(src.device()).download(dst.data, src.data(), dst.length); });
}

// Same device: a queued copy. Across devices the bytes pass through host memory, and the source
// device is waited for first — a blocking step, fine for Tensor.to() but kept out of forward().
void Copy(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Storage& dst = Storage::FromValue(info[0], "copy");
  Storage& src = Storage::FromValue(info[1], "copy");
  const double nbytesValue = info[2].As<Napi::Number>().DoubleValue();
  if (dst.released() || src.released()) throwJsError(env, "E_DISPOSED", "copy: a tensor was disposed");
  if (nbytesValue < 0 || nbytesValue > static_cast<double>(dst.nbytes()) || nbytesValue > static_cast<double>(src.nbytes())) {
    throwJsError(env, "E_INVALID_ARGUMENT", "copy: byte count out of range");
  }
  const size_t nbytes = static_cast<size_t>(nbytesValue);
  if (nbytes == 0) return;
  translateErrors(env, [&] {
    if (dst.device() == src.device()) {
      deviceFor(dst.device()).copy(dst.data(), src.data(), nbytes);
      return;
    }
    std::vector<uint8_t> staging(nbytes);
    Device& source = deviceFor(src.device());
    source.download(staging.data(), src.data(), nbytes);
    source.waitIdle();
    deviceFor(dst.device()).upload(dst.data(), staging.data(), nbytes);
  });
}

Napi::Value Synchronize(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) throwJsError(env, "E_INVALID_ARGUMENT", "synchronize: expected (device)");
  const int device = info[0].As<Napi::Number>().Int32Value();
  return whenDeviceIdle(env, device, "moekit.synchronize", nullptr, [](Napi::Env jsEnv) { return jsEnv.Undefined(); });
}

}  // namespace

void RegisterTransfers(Napi::Env env, Napi::Object exports) {
  exports.Set("allocate", Napi::Function::New<Allocate>(env, "allocate"));
  exports.Set("upload", Napi::Function::New<Upload>(env, "upload"));
  exports.Set("download", Napi::Function::New<Download>(env, "download"));
  exports.Set("copy", Napi::Function::New<Copy>(env, "copy"));
  exports.Set("synchronize", Napi::Function::New<Synchronize>(env, "synchronize"));
}

}  // namespace moekit::binding
