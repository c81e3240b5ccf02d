// Turning native failures into JavaScript errors that carry a MoekitError code (lib/errors.ts
// wraps them in MoekitError).
#pragma once

#include <napi.h>

#include <string>

#include "core/errors.h"

namespace moekit::binding {

[[noreturn]] inline void throwJsError(Napi::Env env, const std::string& code, const std::string& message) {
  Napi::Error error = Napi::Error::New(env, message);
  error.Set("code", Napi::String::New(env, code));
  throw error;
}

// Runs body, translating native exceptions into JavaScript ones.
template <typename Body>
auto translateErrors(Napi::Env env, Body&& body) -> decltype(body()) {
  try {
    return body();
  } catch (const Napi::Error&) {
    throw;
  } catch (const NativeError& error) {
    throwJsError(env, error.code(), error.what());
  } catch (const std::bad_alloc&) {
    throwJsError(env, "E_OOM", "out of host memory");
  } catch (const std::exception& error) {
    throwJsError(env, "E_NATIVE", error.what());
  }
}

}  // namespace moekit::binding
