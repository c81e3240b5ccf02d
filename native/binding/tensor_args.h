// Reading op arguments from JavaScript. An op's argument object has one key per field of its C++
// struct (native/core/op_args.h); tensors are {storage, dtype, shape}. The TypeScript layer has
// already validated everything with friendly messages; the checks here only guarantee that no
// call, however wrong, reads or writes outside the memory it was given. Reading a tensor also
// notes whether the op reads or writes it, for the ledger that enqueue() records the op in.
#pragma once

#include <napi.h>

#include <functional>
#include <initializer_list>
#include <string>
#include <vector>

#include "core/device.h"
#include "core/op_args.h"
#include "op_ledger.h"

namespace moekit::binding {

class OpArgs {
 public:
  OpArgs(const Napi::CallbackInfo& info, const char* opName);

  int device() const { return device_; }

  // A required tensor the op reads, on the op's device, whose storage holds at least its shape's
  // bytes.
  TensorView tensor(const char* key);
  // An absent key (undefined/null) gives an empty view.
  TensorView optionalTensor(const char* key);
  // A tensor the op writes (`output`), or reads and writes in place (`inPlace`).
  TensorView output(const char* key);
  // An absent key (undefined/null) gives an empty view.
  TensorView optionalOutput(const char* key);
  TensorView inPlace(const char* key);

  // Records the op in its device's ledger and runs `enqueue` with the op's ticket (to go in
  // OpIdentity::ticket); native failures become JavaScript errors. `overwrites`: the op writes
  // every byte of its outputs.
  void enqueue(const std::function<void(Device&, uint64_t ticket)>& enqueue, bool overwrites = true);
  // The same for an op of the Device interface: its args get the ticket, then `op` enqueues them.
  template <typename Args>
  void enqueueOp(Args& args, void (Device::*op)(const Args&), bool overwrites = true) {
    enqueue(
        [&](Device& device, uint64_t ticket) {
          args.ticket = ticket;
          (device.*op)(args);
        },
        overwrites);
  }

  // An array of non-negative integers (row counts, say).
  std::vector<int64_t> counts(const char* key) const;
  int32_t int32(const char* key) const;
  // An absent key gives `fallback`.
  int32_t optionalInt32(const char* key, int32_t fallback) const;
  double number(const char* key) const;
  bool boolean(const char* key) const;

  // Throws unless view has exactly these extents (-1 = any) — guards memory, names the tensor.
  // A braced list of extents is read where it stands (no vector is allocated per check).
  void expectShape(const TensorView& view, const char* key, std::initializer_list<int64_t> extents) const;
  void expectShape(const TensorView& view, const char* key, const std::vector<int64_t>& extents) const;
  void expectDType(const TensorView& view, const char* key, DType dtype) const;
  void expectFloat(const TensorView& view, const char* key) const;
  // Messages are built only when the check fails: an op call makes dozens of checks, and the
  // host's time per call is what a decode step without a graph waits on (bench/host_cost.js).
  void expect(bool condition, const char* message) const;
  // Throws "<op>: <key><problem>" when `condition` is false.
  void expectAbout(bool condition, const char* key, const char* problem) const;
  [[noreturn]] void fail(const std::string& message) const;

 private:
  TensorView view(const char* key, std::vector<LineageRef>* reads, std::vector<LineageRef>* writes);
  // `key` and `suffix` name the array in a failure's message ("<key><suffix> is not an array").
  std::vector<int64_t> countsOf(const Napi::Value& value, const char* key, const char* suffix) const;

  Napi::Env env_;
  OpAccess access_;
  std::string op_;
  int device_;
  Napi::Object args_;
};

}  // namespace moekit::binding
