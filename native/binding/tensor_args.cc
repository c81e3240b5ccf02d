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

void OpArgs::fail(const std::string& message) const { throwJsError(env_, "E_INVALID_ARGUMENT", op_ + ": " + message); }

void OpArgs::expect(bool condition, const char* message) const {
  if (!condition) fail(message);
}

void OpArgs::expectAbout(bool condition, const char* key, const char* problem) const {
  if (!condition) fail(std::string(key) + problem);
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
  expectAbout(value.IsObject(), key, " is missing");
  Napi::Object object = value.As<Napi::Object>();
  Storage* found = Storage::Unwrapped(object.Get("storage"));
  expectAbout(found != nullptr, key, ": not a tensor storage");
  Storage& storage = *found;
  expectAbout(!storage.released(), key, " was disposed");
  expectAbout(storage.device() == device_, key, " is on another device");

  TensorView view;
  const int32_t dtypeCode = object.Get("dtype").As<Napi::Number>().Int32Value();
  expectAbout(dtypeCode >= 0 && dtypeCode <= static_cast<int32_t>(kLastDType), key, " has an unknown dtype");
  view.dtype = static_cast<DType>(dtypeCode);
  view.shape = countsOf(object.Get("shape"), key, ".shape");
  expectAbout(view.nbytes() <= storage.nbytes(), key, " is larger than its storage");
  view.data = storage.data();
  if (reads != nullptr) reads->push_back(storage.lineage());
  if (writes != nullptr) writes->push_back(storage.lineage());
  return view;
}

std::vector<int64_t> OpArgs::counts(const char* key) const { return countsOf(args_.Get(key), key, ""); }

std::vector<int64_t> OpArgs::countsOf(const Napi::Value& value, const char* key, const char* suffix) const {
  if (!value.IsArray()) fail(std::string(key) + suffix + " is not an array");
  Napi::Array array = value.As<Napi::Array>();
  std::vector<int64_t> counts;
  for (uint32_t i = 0; i < array.Length(); ++i) {
    Napi::Value element = array.Get(i);
    // Up to 2^53, the integers a double holds exactly: the cast below is then defined.
    const double count = element.IsNumber() ? element.As<Napi::Number>().DoubleValue() : -1;
    if (!(count >= 0 && count <= 9007199254740992.0 && count == static_cast<double>(static_cast<int64_t>(count)))) {
      fail(std::string(key) + suffix + " must hold non-negative integers");
    }
    counts.push_back(static_cast<int64_t>(count));
  }
  return counts;
}

int32_t OpArgs::int32(const char* key) const {
  Napi::Value value = args_.Get(key);
  expectAbout(value.IsNumber(), key, " must be a number");
  return value.As<Napi::Number>().Int32Value();
}

int32_t OpArgs::optionalInt32(const char* key, int32_t fallback) const {
  Napi::Value value = args_.Get(key);
  return value.IsUndefined() || value.IsNull() ? fallback : int32(key);
}

double OpArgs::number(const char* key) const {
  Napi::Value value = args_.Get(key);
  expectAbout(value.IsNumber(), key, " must be a number");
  return value.As<Napi::Number>().DoubleValue();
}

bool OpArgs::boolean(const char* key) const {
  Napi::Value value = args_.Get(key);
  expectAbout(value.IsBoolean(), key, " must be a boolean");
  return value.As<Napi::Boolean>().Value();
}

namespace {

// Whether `shape` has exactly the extents [first, last) (-1 = any).
bool shapeMatches(const std::vector<int64_t>& shape, const int64_t* first, const int64_t* last) {
  if (shape.size() != static_cast<size_t>(last - first)) return false;
  for (size_t axis = 0; first != last; ++first, ++axis) {
    if (*first >= 0 && shape[axis] != *first) return false;
  }
  return true;
}

}  // namespace

void OpArgs::expectShape(const TensorView& view, const char* key, std::initializer_list<int64_t> extents) const {
  expectAbout(shapeMatches(view.shape, extents.begin(), extents.end()), key, " has the wrong shape");
}

void OpArgs::expectShape(const TensorView& view, const char* key, const std::vector<int64_t>& extents) const {
  expectAbout(shapeMatches(view.shape, extents.data(), extents.data() + extents.size()), key, " has the wrong shape");
}

void OpArgs::expectDType(const TensorView& view, const char* key, DType dtype) const {
  if (view.dtype != dtype) fail(std::string(key) + " must be " + dtypeName(dtype));
}

void OpArgs::expectFloat(const TensorView& view, const char* key) const {
  expectAbout(isComputeFloat(view.dtype), key, " must be a float32, float16 or bfloat16 tensor");
}

}  // namespace moekit::binding
