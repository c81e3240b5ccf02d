// A Promise settled on the JS thread once a device has run everything queued before the call
// (Device::whenIdle, on the device's waiter thread): synchronize() and elapsedTimes() wait so.
#pragma once

#include <napi.h>

#include <functional>

namespace moekit::binding {

// `onIdle` runs on the waiter thread once the device is idle (and the op ledger has heard of the
// failures of the ops before it), unless the device itself failed (then the promise rejects with
// that failure); it may throw a NativeError to reject instead. `result`
// runs on the JS thread and gives the value the promise resolves to. `name` labels the
// thread-safe function that carries the outcome back (it shows in diagnostics).
Napi::Promise whenDeviceIdle(Napi::Env env, int device, const char* name, std::function<void()> onIdle,
                             std::function<Napi::Value(Napi::Env)> result);

}  // namespace moekit::binding
