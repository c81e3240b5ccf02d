#include "transfers.h"

#include <vector>

#include "core/errors.h"
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

// wrapMemory(device, pointer: bigint, nbytes) → a Storage over memory another library owns.
Napi::Value WrapMemory(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsNumber() || !info[1].IsBigInt() || !info[2].IsNumber()) {
    throwJsError(env, "E_INVALID_ARGUMENT", "wrapMemory: expected (device, pointer: bigint, nbytes)");
  }
  const double nbytes = info[2].As<Napi::Number>().DoubleValue();
  if (!(nbytes >= 0 && nbytes <= 9007199254740991.0)) throwJsError(env, "E_INVALID_ARGUMENT", "wrapMemory: bad byte count");
  return Storage::Borrow(env, info[0].As<Napi::Number>().Int32Value(), info[1].As<Napi::BigInt>(), static_cast<size_t>(nbytes));
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

// Records a write of `written` (reading `read`, if any) in the device's ledger, so failures of the
// source's producer follow the bytes; runs `enqueue` in order with it.
template <typename Enqueue>
void enqueueTransfer(int device, const Storage* read, const Storage& written, bool overwrites, Enqueue&& enqueue) {
  OpAccess access;
  if (read != nullptr) access.reads.push_back(read->lineage());
  access.writes.push_back(written.lineage());
  access.overwrites = overwrites;
  OpLedger& ledger = ledgerFor(device);
  auto lock = ledger.enqueueLock();
  ledger.record(access);
  enqueue(deviceFor(device));
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
  const bool whole = offset == 0 && src.length == dst.nbytes();
  translateErrors(env, [&] {
    enqueueTransfer(dst.device(), nullptr, dst, whole, [&](Device& device) {
      device.upload(static_cast<uint8_t*>(dst.data()) + static_cast<size_t>(offset), src.data, src.length);
    });
  });
}

// download(src, dst) → Promise<void>: resolves once the bytes are in dst; rejects with the failure
// of the op that produced them (a poisoned tensor), or of the device. The destination typed array
// must be kept alive by the caller until the promise settles (lib/tensor.ts holds it across the
// await).
Napi::Value Download(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Storage& src = Storage::FromValue(info[0], "download");
  HostBytes dst = hostBytes(info[1], "download");
  if (src.released()) throwJsError(env, "E_DISPOSED", "download: the tensor was disposed");
  if (dst.length > src.nbytes()) throwJsError(env, "E_INVALID_ARGUMENT", "download: the destination is larger than the tensor");
  // The version read here, whatever later ops write: its failure is known once the device has
  // reported idle past the download.
  const VersionRef version = src.lineage()->current();
  if (dst.length > 0) translateErrors(env, [&] { deviceFor(src.device()).download(dst.data, src.data(), dst.length); });
  const auto failIfPoisoned = [version] {
    if (FailureRef failure = Lineage::failureOf(version)) throw NativeError(failure->code, failure->message);
  };
  return whenDeviceIdle(env, src.device(), "moekit.download", failIfPoisoned, [](Napi::Env jsEnv) { return jsEnv.Undefined(); });
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
  const bool whole = nbytes == dst.nbytes();
  translateErrors(env, [&] {
    if (dst.device() == src.device()) {
      enqueueTransfer(dst.device(), &src, dst, whole, [&](Device& device) { device.copy(dst.data(), src.data(), nbytes); });
      return;
    }
    std::vector<uint8_t> staging(nbytes);
    Device& source = deviceFor(src.device());
    source.download(staging.data(), src.data(), nbytes);
    // Also settles the source's failures, so the copy inherits them below.
    ledgerFor(src.device()).waitIdle(source);
    enqueueTransfer(dst.device(), &src, dst, whole, [&](Device& device) { device.upload(dst.data(), staging.data(), nbytes); });
  });
}

Napi::Value Synchronize(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) throwJsError(env, "E_INVALID_ARGUMENT", "synchronize: expected (device)");
  const int device = info[0].As<Napi::Number>().Int32Value();
  return whenDeviceIdle(env, device, "moekit.synchronize", nullptr, [](Napi::Env jsEnv) { return jsEnv.Undefined(); });
}

// memoryInfo(device): the device's MemoryInfo (core/device.h) as { inUse, reserved, free, total }.
Napi::Value ReadMemoryInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) throwJsError(env, "E_INVALID_ARGUMENT", "memoryInfo: expected (device)");
  const int device = info[0].As<Napi::Number>().Int32Value();
  return translateErrors(env, [&] {
    const moekit::MemoryInfo counts = deviceFor(device).memoryInfo();
    Napi::Object result = Napi::Object::New(env);
    result.Set("inUse", static_cast<double>(counts.inUse));
    result.Set("reserved", static_cast<double>(counts.reserved));
    result.Set("free", static_cast<double>(counts.free));
    result.Set("total", static_cast<double>(counts.total));
    return result;
  });
}

}  // namespace

void RegisterTransfers(Napi::Env env, Napi::Object exports) {
  exports.Set("wrapMemory", Napi::Function::New<WrapMemory>(env, "wrapMemory"));
  exports.Set("allocate", Napi::Function::New<Allocate>(env, "allocate"));
  exports.Set("upload", Napi::Function::New<Upload>(env, "upload"));
  exports.Set("download", Napi::Function::New<Download>(env, "download"));
  exports.Set("copy", Napi::Function::New<Copy>(env, "copy"));
  exports.Set("synchronize", Napi::Function::New<Synchronize>(env, "synchronize"));
  exports.Set("memoryInfo", Napi::Function::New<ReadMemoryInfo>(env, "memoryInfo"));
}

}  // namespace moekit::binding
