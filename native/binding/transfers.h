// Memory entry points: allocate, host<->device copies, device<->device copies, and synchronize
// (a Promise that settles once a device's queued work is done).
#pragma once

#include <napi.h>

namespace moekit::binding {

void RegisterTransfers(Napi::Env env, Napi::Object exports);

}  // namespace moekit::binding
