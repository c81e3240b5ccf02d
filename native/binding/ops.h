// The op entry points: each reads its argument object, checks that it is memory-safe, and
// enqueues the op on its device. They return at once.
#pragma once

#include <napi.h>

namespace moekit::binding {

void RegisterOps(Napi::Env env, Napi::Object exports);

}  // namespace moekit::binding
