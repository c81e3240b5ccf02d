#include "tensor_args.h"

#include "device_registry.h"
#include "js_errors.h"
#include "storage.h"

namespace moekit::binding {

OpArgs::OpArgs(const Napi::CallbackInfo& info, const char* opName)
    : env_(info.Env()), op_(opName), device_(0) {
  if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsObject()) {
    throwJsError(env_, "E_INVALID_ARGUMENT", op_ + ": expected (device, args)");
  }
  device_ = info[0].As<Napi::Number>().Int32Value();
  args_ = info[1].As<Napi::Object>();
}

void OpArgs::expect(bool condition, const std::string& message) const {
  if (!condition) throwJsError(env_, "E_INVALID_ARGUMENT", op_ + ": " + message);
}

TensorView OpArgs::optionalTensor(const char* key) {
  Napi::Value value = args_.Get(key);
  if (value.IsUndefined() || value.IsNull()) return {};
  return tensor(key);
}

TensorView OpArgs::optionalOutput(const char* key) {
  Napi::Value value = args_.Get(key);
  if (value.IsUndefined() || value.IsNull()) return {};
  return output(key);
}

TensorView OpArgs::tensor(const char* key) { return view(key, &access_.reads, nullptr); }
TensorView OpArgs::output(const char* key) { return view(key, nullptr, &access_.writes); }
TensorView OpArgs::inPlace(const char* key) { return view(key, &access_.reads, &access_.writes); }

void OpArgs::enqueue(const std::function<void(Device&, uint64_t ticket)>& enqueue, bool overwrites) {
  access_.overwrites = overwrites;
  translateErrors(env_, [&] {
    Device& device = deviceFor(device_);
    OpLedger& ledger = ledgerFor(device_);
    {
      auto lock = ledger.enqueueLock();
      enqueue(device, ledger.record(access_));
    }
    ledger.retireIfLong(device);
  });
}

TensorView OpArgs::view(const char* key, std::vector<LineageRef>* reads, std::vector<LineageRef>* writes) {
  Napi::Value value = args_.Get(key);
  expect(value.IsObject(), std::string(key) + " is missing");
  Napi::Object object = value.As<Napi::Object>();
  Storage& storage = Storage::FromValue(object.Get("storage"), op_ + ": " + key);
  expect(!storage.released(), std::string(key) + " was disposed");
  expect(storage.device() == device_, std::string(key) + " is on another device");

  TensorView view;
  const int32_t dtypeCode = object.Get("dtype").As<Napi::Number>().Int32Value();
  expect(dtypeCode >= 0 && dtypeCode <= static_cast<int32_t>(kLastDType), std::string(key) + " has an unknown dtype");
  view.dtype = static_cast<DType>(dtypeCode);
  view.shape = countsOf(object.Get("shape"), std::string(key) + ".shape");
  expect(view.nbytes() <= storage.nbytes(), std::string(key) + " is larger than its storage");
  view.data = storage.data();
  if (reads != nullptr) reads->push_back(storage.lineage());
  if (writes != nullptr) writes->push_back(storage.lineage());
  return view;
}

std::vector<int64_t> OpArgs::counts(const char* key) const { return countsOf(args_.Get(key), key); }

std::vector<int64_t> OpArgs::countsOf(const Napi::Value& value, const std::string& what) const {
  expect(value.IsArray(), what + " is not an array");
  Napi::Array array = value.As<Napi::Array>();
  std::vector<int64_t> counts;
  for (uint32_t i = 0; i < array.Length(); ++i) {
    Napi::Value element = array.Get(i);
    // Up to 2^53, the integers a double holds exactly: the cast below is then defined.
    const double count = element.IsNumber() ? element.As<Napi::Number>().DoubleValue() : -1;
    expect(count >= 0 && count <= 9007199254740992.0 && count == static_cast<double>(static_cast<int64_t>(count)),
           what + " must hold non-negative integers");
    counts.push_back(static_cast<int64_t>(count));
  }
  return counts;
}

int32_t OpArgs::int32(const char* key) const {
  Napi::Value value = args_.Get(key);
  expect(value.IsNumber(), std::string(key) + " must be a number");
  return value.As<Napi::Number>().Int32Value();
}

int32_t OpArgs::optionalInt32(const char* key, int32_t fallback) const {
  Napi::Value value = args_.Get(key);
  return value.IsUndefined() || value.IsNull() ? fallback : int32(key);
}

double OpArgs::number(const char* key) const {
  Napi::Value value = args_.Get(key);
  expect(value.IsNumber(), std::string(key) + " must be a number");
  return value.As<Napi::Number>().DoubleValue();
}

bool OpArgs::boolean(const char* key) const {
  Napi::Value value = args_.Get(key);
  expect(value.IsBoolean(), std::string(key) + " must be a boolean");
  return value.As<Napi::Boolean>().Value();
}

void OpArgs::expectShape(const TensorView& view, const char* key, const std::vector<int64_t>& extents) const {
  bool matches = view.shape.size() == extents.size();
  size_t axis = 0;
  for (int64_t extent : extents) {
    if (!matches) break;
    matches = extent < 0 || view.shape[axis] == extent;
    ++axis;
  }
  expect(matches, std::string(key) + " has the wrong shape");
}

void OpArgs::expectDType(const TensorView& view, const char* key, DType dtype) const {
  expect(view.dtype == dtype, std::string(key) + " must be " + dtypeName(dtype));
}

void OpArgs::expectFloat(const TensorView& view, const char* key) const {
  expect(isComputeFloat(view.dtype), std::string(key) + " must be a float32, float16 or bfloat16 tensor");
}

}  // namespace moekit::binding
