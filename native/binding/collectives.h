// NCCL from JavaScript: whether it is available, unique ids, communicators and all-reduce.
#pragma once

#include <napi.h>

namespace moekit::binding {

void RegisterCollectives(Napi::Env env, Napi::Object exports);

}  // namespace moekit::binding
