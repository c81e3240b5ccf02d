// Device-side timing: events recorded in a device's work order (recordEvent) and the time between
// them (elapsedTimes, a Promise settled off the JS thread by the same waiter as synchronize).
#pragma once

#include <napi.h>

namespace moekit::binding {

void RegisterEvents(Napi::Env env, Napi::Object exports);

}  // namespace moekit::binding
