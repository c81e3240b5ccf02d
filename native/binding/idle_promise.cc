#include "idle_promise.h"

#include <string>
#include <utility>

#include "core/errors.h"
#include "device_registry.h"
#include "js_errors.h"

namespace moekit::binding {
namespace {

// What travels from the device's waiter thread back to the JS thread.
struct IdleOutcome {
  Napi::Promise::Deferred deferred;
  std::function<void()> onIdle;
  std::function<Napi::Value(Napi::Env)> result;
  std::string errorCode;
  std::string errorMessage;
};

void settle(Napi::Env env, Napi::Function, std::nullptr_t*, IdleOutcome* outcome) {
  if (env != nullptr) {
    if (outcome->errorCode.empty()) {
      outcome->deferred.Resolve(outcome->result(env));
    } else {
      Napi::Error error = Napi::Error::New(env, outcome->errorMessage);
      error.Set("code", Napi::String::New(env, outcome->errorCode));
      outcome->deferred.Reject(error.Value());
    }
  }
  delete outcome;
}

using SettleFunction = Napi::TypedThreadSafeFunction<std::nullptr_t, IdleOutcome, settle>;

// On the waiter thread: the earlier failure whenIdle hands over, else onIdle's.
void finish(IdleOutcome& outcome, const std::string& code, const std::string& message) {
  outcome.errorCode = code;
  outcome.errorMessage = message;
  if (!code.empty() || !outcome.onIdle) return;
  try {
    outcome.onIdle();
  } catch (const NativeError& error) {
    outcome.errorCode = error.code();
    outcome.errorMessage = error.what();
  }
}

}  // namespace

Napi::Promise whenDeviceIdle(Napi::Env env, int device, const char* name, std::function<void()> onIdle,
                             std::function<Napi::Value(Napi::Env)> result) {
  auto* outcome = new IdleOutcome{Napi::Promise::Deferred::New(env), std::move(onIdle), std::move(result), "", ""};
  Napi::Promise promise = outcome->deferred.Promise();
  SettleFunction carry = SettleFunction::New(env, name, 0, 1);
  try {
    translateErrors(env, [&] {
      ledgerFor(device).whenIdle(deviceFor(device), [carry, outcome](const std::string& code, const std::string& message) mutable {
        finish(*outcome, code, message);
        carry.BlockingCall(outcome);
        carry.Release();
      });
    });
  } catch (...) {
    carry.Release();
    delete outcome;
    throw;
  }
  return promise;
}

}  // namespace moekit::binding
