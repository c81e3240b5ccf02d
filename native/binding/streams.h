// User streams for CUDA devices: create one, or hand in any stream handle, and move a device's
// work onto it (setStream); null moves it back to the device's own stream. Also side work
// (Device::beginSideWork): a stretch of a device's work that runs beside the rest.
#pragma once

#include <napi.h>

namespace moekit::binding {

void RegisterStreams(Napi::Env env, Napi::Object exports);

}  // namespace moekit::binding
