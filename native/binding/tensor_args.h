// Reading op arguments from JavaScript. An op's argument object has one key per field of its C++
// struct (native/core/op_args.h); tensors are {storage, dtype, shape}. The TypeScript layer has
// already validated everything with friendly messages; the checks here only guarantee that no
// call, however wrong, reads or writes outside the memory it was given.
#pragma once

#include <napi.h>

#include <initializer_list>
#include <string>

#include "core/op_args.h"

namespace moekit::binding {

class OpArgs {
 public:
  OpArgs(const Napi::CallbackInfo& info, const char* opName);

  int device() const { return device_; }

  // A required tensor on the op's device whose storage holds at least its shape's bytes.
  TensorView tensor(const char* key) const;
  // An absent key (undefined/null) gives an empty view.
  TensorView optionalTensor(const char* key) const;

  int32_t int32(const char* key) const;
  // An absent key gives `fallback`.
  int32_t optionalInt32(const char* key, int32_t fallback) const;
  double number(const char* key) const;
  bool boolean(const char* key) const;

  // Throws unless view has exactly these extents (-1 = any) — guards memory, names the tensor.
  void expectShape(const TensorView& view, const char* key, std::initializer_list<int64_t> extents) const;
  void expectDType(const TensorView& view, const char* key, DType dtype) const;
  void expectFloat(const TensorView& view, const char* key) const;
  void expect(bool condition, const std::string& message) const;

 private:
  Napi::Env env_;
  std::string op_;
  int device_;
  Napi::Object args_;
};

}  // namespace moekit::binding
