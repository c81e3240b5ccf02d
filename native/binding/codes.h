// The numeric codes of the words JavaScript passes to native code (dtypes, routing methods,
// activations, gate layouts, weight formats), exported as `codes` under the names lib/ uses, so a
// test can check lib/'s tables against the enums they must match.
#pragma once

#include <napi.h>

namespace moekit::binding {

void RegisterCodes(Napi::Env env, Napi::Object exports);

}  // namespace moekit::binding
