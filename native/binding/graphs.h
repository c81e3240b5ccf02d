// CUDA graph capture and replay for a device's stream: beginCapture(device), endCapture(device)
// → Graph { launch(), release() }. On the CPU (or a build without CUDA) both throw E_DEVICE.
#pragma once

#include <napi.h>

namespace moekit::binding {

void RegisterGraphs(Napi::Env env, Napi::Object exports);

}  // namespace moekit::binding
