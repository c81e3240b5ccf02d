#include "storage.h"

#include "device_registry.h"
#include "js_errors.h"

namespace moekit::binding {
namespace {

// Lives in the addon's instance data so several Node environments (workers) each have theirs.
struct StorageClass {
  Napi::FunctionReference constructor;
};

}  // namespace

void Storage::Register(Napi::Env env, Napi::Object exports) {
  Napi::Function constructor = DefineClass(env, "Storage", {
    InstanceAccessor<&Storage::DeviceGetter>("device"),
    InstanceAccessor<&Storage::NbytesGetter>("nbytes"),
    InstanceAccessor<&Storage::ReleasedGetter>("released"),
    InstanceAccessor<&Storage::PointerGetter>("pointer"),
    InstanceMethod<&Storage::Release>("release"),
  });
  auto* storageClass = new StorageClass{Napi::Persistent(constructor)};
  env.SetInstanceData<StorageClass>(storageClass);
  exports.Set("Storage", constructor);
}

Napi::Object Storage::Create(Napi::Env env, int device, size_t nbytes) {
  return env.GetInstanceData<StorageClass>()->constructor.New({
    Napi::Number::New(env, device),
    Napi::Number::New(env, static_cast<double>(nbytes)),
  });
}

Napi::Object Storage::Borrow(Napi::Env env, int device, Napi::BigInt pointer, size_t nbytes) {
  return env.GetInstanceData<StorageClass>()->constructor.New({Napi::Number::New(env, device), Napi::Number::New(env, static_cast<double>(nbytes)), pointer});
}

Storage* Storage::Unwrapped(Napi::Value value) {
  Napi::Env env = value.Env();
  if (!value.IsObject() || !value.As<Napi::Object>().InstanceOf(env.GetInstanceData<StorageClass>()->constructor.Value())) {
    return nullptr;
  }
  return Napi::ObjectWrap<Storage>::Unwrap(value.As<Napi::Object>());
}

Storage& Storage::FromValue(Napi::Value value, const std::string& what) {
  Storage* storage = Unwrapped(value);
  if (storage == nullptr) throwJsError(value.Env(), "E_INVALID_ARGUMENT", what + ": not a tensor storage");
  return *storage;
}

// new Storage(device, nbytes[, pointer]): allocates, or borrows `pointer`. Only Create() and
// Borrow() call it.
Storage::Storage(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Storage>(info), env_(info.Env()) {
  translateErrors(info.Env(), [&] {
    device_ = info[0].As<Napi::Number>().Int32Value();
    const double requested = info[1].As<Napi::Number>().DoubleValue();
    nbytes_ = static_cast<size_t>(requested);
    if (info.Length() > 2 && info[2].IsBigInt()) {
      bool lossless = false;
      void* pointer = reinterpret_cast<void*>(static_cast<uintptr_t>(info[2].As<Napi::BigInt>().Uint64Value(&lossless)));
      deviceFor(device_).checkForeignMemory(pointer, nbytes_);
      data_ = pointer;
      borrowed_ = true;
      return;
    }
    // Zero-byte tensors (a dimension of 0) still get a distinct, valid pointer.
    data_ = deviceFor(device_).allocate(nbytes_ == 0 ? 1 : nbytes_);
  });
  // Host memory counts towards V8's heap pressure so the GC finalizes forgotten CPU tensors.
  if (device_ == -1 && !borrowed_) Napi::MemoryManagement::AdjustExternalMemory(env_, static_cast<int64_t>(nbytes_));
}

Storage::~Storage() { releaseMemory(); }

void Storage::releaseMemory() {
  if (data_ == nullptr) return;
  if (borrowed_) {
    data_ = nullptr;
    return;
  }
  deviceFor(device_).release(data_);
  data_ = nullptr;
  if (device_ == -1) Napi::MemoryManagement::AdjustExternalMemory(env_, -static_cast<int64_t>(nbytes_));
}

Napi::Value Storage::DeviceGetter(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), device_); }

Napi::Value Storage::NbytesGetter(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(nbytes_));
}

Napi::Value Storage::ReleasedGetter(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), released()); }

Napi::Value Storage::PointerGetter(const Napi::CallbackInfo& info) {
  return Napi::BigInt::New(info.Env(), static_cast<uint64_t>(reinterpret_cast<uintptr_t>(data_)));
}

void Storage::Release(const Napi::CallbackInfo&) { releaseMemory(); }

}  // namespace moekit::binding
