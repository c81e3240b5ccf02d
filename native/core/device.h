// A device owns an ordered work queue (the CPU worker thread, or a CUDA stream), allocates the
// memory tensors live in, and runs ops. Everything enqueued on one device runs in call order;
// calls return as soon as the work is enqueued.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>

#include "op_args.h"

namespace moekit {

// Called once all work enqueued before whenIdle() has finished. `errorCode` is empty on success,
// otherwise a MoekitError code ("E_CUDA", "E_NATIVE", ...) with `errorMessage`. It may run on any
// thread; the binding marshals it back to JavaScript.
using IdleCallback = std::function<void(const std::string& errorCode, const std::string& errorMessage)>;

class Device {
 public:
  virtual ~Device() = default;

  // -1 for the CPU, N for cuda:N.
  virtual int index() const = 0;

  // ---- Memory ----
  // Allocates nbytes (> 0) of device memory, usable by work enqueued after this call.
  // Throws NativeError("E_OOM", ...) when the device has no room.
  virtual void* allocate(size_t nbytes) = 0;
  // Frees memory once the work enqueued before this call has finished with it.
  virtual void release(void* ptr) = 0;

  // ---- Copies ----
  // Copies nbytes from host memory to device memory, ordered after earlier work. hostSrc is read
  // before upload() returns (the caller may reuse it at once).
  virtual void upload(void* dst, const void* hostSrc, size_t nbytes) = 0;
  // Copies nbytes from device memory to host memory, ordered after earlier work. hostDst must stay
  // valid until a whenIdle() enqueued after this call has fired.
  virtual void download(void* hostDst, const void* src, size_t nbytes) = 0;
  // Copies nbytes within this device, ordered after earlier work.
  virtual void copy(void* dst, const void* src, size_t nbytes) = 0;

  // ---- Ordering ----
  virtual void whenIdle(IdleCallback done) = 0;
  // Blocks the calling thread until earlier work has finished; throws the first failure it met.
  // (Built on whenIdle, the same for every device.)
  void waitIdle();

  // ---- Ops (semantics in op_args.h) ----
  virtual void routing(const RoutingArgs& args) = 0;
  virtual void permute(const PermuteArgs& args) = 0;
  virtual void groupedGemm(const GroupedGemmArgs& args) = 0;
  virtual void linear(const LinearArgs& args) = 0;
  virtual void activation(const ActivationArgs& args) = 0;
  virtual void combine(const CombineArgs& args) = 0;
  virtual void cast(const CastArgs& args) = 0;
  virtual void fillRandom(const FillRandomArgs& args) = 0;
};

}  // namespace moekit
