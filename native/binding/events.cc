#include "events.h"

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "core/errors.h"
#include "device_registry.h"
#include "idle_promise.h"
#include "js_errors.h"
#if MOEKIT_WITH_CUDA
#include <cuda_runtime.h>

#include "cuda/check.h"
#include "cuda/cuda_device.h"
#endif

namespace moekit::binding {
namespace {

using Clock = std::chrono::steady_clock;

// A point in one device's work order. On a CUDA device it is a timing event recorded on the
// device's stream; on the CPU, the host time at which the worker thread reached it.
class Mark {
 public:
  static std::shared_ptr<Mark> record(int device) {
    std::shared_ptr<Mark> mark(new Mark(device));
    if (device < 0) {
      ledgerFor(device).whenIdle(deviceFor(device), [mark](const std::string& code, const std::string& message) {
        mark->reachedAt_ = Clock::now();
        // whenIdle hands over (and clears) a failure that earlier work recorded. The CPU device
        // runs this callback as one of its queued tasks, and a task that throws records its
        // failure: throwing it back keeps it for the next wait (elapsedTimes, synchronize).
        if (!code.empty()) throw NativeError(code, message);
      });
      return mark;
    }
#if MOEKIT_WITH_CUDA
    auto& cudaDevice = dynamic_cast<cuda::CudaDevice&>(deviceFor(device));
    MOEKIT_CUDA_CHECK(cudaSetDevice(device));
    MOEKIT_CUDA_CHECK(cudaEventCreate(&mark->event_));  // default flags: timing enabled
    MOEKIT_CUDA_CHECK(cudaEventRecord(mark->event_, cudaDevice.stream()));
#else
    deviceFor(device);  // throws: this build has no CUDA devices
#endif
    return mark;
  }

  Mark(const Mark&) = delete;
  Mark& operator=(const Mark&) = delete;

  ~Mark() {
#if MOEKIT_WITH_CUDA
    // An event still pending is freed by CUDA once it completes.
    if (event_ != nullptr && cudaEventDestroy(event_) != cudaSuccess) (void)cudaGetLastError();
#endif
  }

  int device() const { return device_; }

  // Milliseconds from `earlier` to this mark; both must have been reached (their device has gone
  // idle since they were recorded).
  double millisecondsSince(const Mark& earlier) const {
    if (device_ < 0) return std::chrono::duration<double, std::milli>(reachedAt_ - earlier.reachedAt_).count();
#if MOEKIT_WITH_CUDA
    float milliseconds = 0;
    MOEKIT_CUDA_CHECK(cudaEventElapsedTime(&milliseconds, earlier.event_, event_));
    return milliseconds;
#else
    throw NativeError("E_DEVICE", "CUDA events need the CUDA backend");
#endif
  }

 private:
  explicit Mark(int device) : device_(device) {}

  const int device_;
  Clock::time_point reachedAt_{};  // the CPU
#if MOEKIT_WITH_CUDA
  cudaEvent_t event_ = nullptr;  // a CUDA device
#endif
};

// The JS object for a Mark. release() frees a CUDA event early; the finalizer is the safety net.
class EventHandle : public Napi::ObjectWrap<EventHandle> {
 public:
  static Napi::FunctionReference* constructor;

  static void Register(Napi::Env env) {
    Napi::Function ctor = DefineClass(env, "DeviceEvent", {InstanceMethod<&EventHandle::Release>("release")});
    constructor = new Napi::FunctionReference(Napi::Persistent(ctor));
  }

  static Napi::Object Wrap(std::shared_ptr<Mark> mark) {
    Napi::Object object = constructor->New({});
    Unwrap(object)->mark_ = std::move(mark);
    return object;
  }

  // The mark behind a JS value, or a JS error naming what is wrong with it.
  static std::shared_ptr<Mark> markOf(const Napi::Value& value) {
    Napi::Env env = value.Env();
    if (!value.IsObject() || !value.As<Napi::Object>().InstanceOf(constructor->Value())) {
      throwJsError(env, "E_INVALID_ARGUMENT", "elapsedTimes: expected events made by recordEvent");
    }
    std::shared_ptr<Mark> mark = Unwrap(value.As<Napi::Object>())->mark_;
    if (!mark) throwJsError(env, "E_DISPOSED", "elapsedTimes: an event was released");
    return mark;
  }

  explicit EventHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<EventHandle>(info) {}

 private:
  void Release(const Napi::CallbackInfo&) { mark_.reset(); }

  std::shared_ptr<Mark> mark_;
};

Napi::FunctionReference* EventHandle::constructor = nullptr;

// recordEvent(device) → an event at this point of the device's work order.
Napi::Value RecordEvent(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) throwJsError(env, "E_INVALID_ARGUMENT", "recordEvent: expected (device)");
  const int device = info[0].As<Napi::Number>().Int32Value();
  std::shared_ptr<Mark> mark = translateErrors(env, [&] { return Mark::record(device); });
  return EventHandle::Wrap(std::move(mark));
}

// elapsedTimes([first, ...events]) → Promise<number[]>: milliseconds from the first event to each
// (the first is 0), once the device has run past all of them. All events must be on one device.
Napi::Value ElapsedTimes(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsArray() || info[0].As<Napi::Array>().Length() == 0) {
    throwJsError(env, "E_INVALID_ARGUMENT", "elapsedTimes: expected a non-empty array of events");
  }
  Napi::Array events = info[0].As<Napi::Array>();
  std::vector<std::shared_ptr<Mark>> marks;
  for (uint32_t i = 0; i < events.Length(); ++i) marks.push_back(EventHandle::markOf(events.Get(i)));
  const int device = marks.front()->device();
  for (const auto& mark : marks) {
    if (mark->device() != device) throwJsError(env, "E_DEVICE", "elapsedTimes: the events are on different devices");
  }
  // The marks stay alive (captured) until the promise settles.
  auto milliseconds = std::make_shared<std::vector<double>>();
  const auto measure = [marks = std::move(marks), milliseconds] {
    for (const auto& mark : marks) milliseconds->push_back(mark->millisecondsSince(*marks.front()));
  };
  return whenDeviceIdle(env, device, "moekit.elapsedTimes", measure, [milliseconds](Napi::Env jsEnv) {
    Napi::Array times = Napi::Array::New(jsEnv, milliseconds->size());
    for (size_t i = 0; i < milliseconds->size(); ++i) times.Set(static_cast<uint32_t>(i), (*milliseconds)[i]);
    return Napi::Value(times);
  });
}

}  // namespace

void RegisterEvents(Napi::Env env, Napi::Object exports) {
  EventHandle::Register(env);
  exports.Set("recordEvent", Napi::Function::New<RecordEvent>(env, "recordEvent"));
  exports.Set("elapsedTimes", Napi::Function::New<ElapsedTimes>(env, "elapsedTimes"));
}

}  // namespace moekit::binding
