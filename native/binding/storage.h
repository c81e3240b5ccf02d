// Storage: the JavaScript handle of one device allocation. A Tensor owns exactly one. release()
// frees the memory in stream order (after the work already enqueued on its device); the finalizer
// does the same for a Storage that is garbage-collected without having been released.
#pragma once

#include <napi.h>

#include "op_ledger.h"

namespace moekit::binding {

class Storage : public Napi::ObjectWrap<Storage> {
 public:
  static void Register(Napi::Env env, Napi::Object exports);
  // Creates a Storage of nbytes on a device (throws E_OOM / E_DEVICE).
  static Napi::Object Create(Napi::Env env, int device, size_t nbytes);
  // A Storage over memory another library owns (checked with Device::checkForeignMemory): moekit
  // never frees it; release() only stops using it.
  static Napi::Object Borrow(Napi::Env env, int device, Napi::BigInt pointer, size_t nbytes);
  // The Storage behind a JS value, or a thrown TypeError naming `what`.
  static Storage& FromValue(Napi::Value value, const std::string& what);
  // The Storage behind a JS value, or nullptr (for callers that build their message only on failure).
  static Storage* Unwrapped(Napi::Value value);

  explicit Storage(const Napi::CallbackInfo& info);
  ~Storage() override;

  int device() const { return device_; }
  size_t nbytes() const { return nbytes_; }
  void* data() const { return data_; }
  bool released() const { return data_ == nullptr; }
  // Which versions of these bytes the ops have written, and whether one failed (op_ledger.h).
  const LineageRef& lineage() const { return lineage_; }

 private:
  Napi::Value DeviceGetter(const Napi::CallbackInfo& info);
  Napi::Value NbytesGetter(const Napi::CallbackInfo& info);
  Napi::Value ReleasedGetter(const Napi::CallbackInfo& info);
  Napi::Value PointerGetter(const Napi::CallbackInfo& info);
  void Release(const Napi::CallbackInfo& info);
  void releaseMemory();

  int device_ = -1;
  size_t nbytes_ = 0;
  void* data_ = nullptr;
  bool borrowed_ = false;
  LineageRef lineage_ = std::make_shared<Lineage>();
  Napi::Env env_;
};

}  // namespace moekit::binding
