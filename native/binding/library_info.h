// A library loaded at run time (core/runtime_library.h), as the object ncclInfo(), cublasInfo() and
// nvmlInfo() return: { available, path, problem, version }.
#pragma once

#include <napi.h>

#include "core/runtime_library.h"

namespace moekit::binding {

inline Napi::Object libraryInfo(Napi::Env env, const LibraryAvailability& availability) {
  Napi::Object result = Napi::Object::New(env);
  result.Set("available", availability.available);
  result.Set("path", availability.path);
  result.Set("problem", availability.problem);
  result.Set("version", availability.version);
  return result;
}

// What a library that only CUDA builds load reports in a build without CUDA.
inline LibraryAvailability withoutCuda() {
  LibraryAvailability availability;
  availability.problem = "this build of moekit has no CUDA backend";
  return availability;
}

}  // namespace moekit::binding
