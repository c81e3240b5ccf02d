// A device owns an ordered work queue (the CPU worker thread, or a CUDA stream), allocates the
// memory tensors live in, and runs ops. Everything enqueued on one device runs in call order;
// calls return as soon as the work is enqueued.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "op_args.h"

namespace moekit {

// Called once all work enqueued before whenIdle() has finished. `errorCode` is empty on success,
// otherwise a MoekitError code ("E_CUDA", "E_NATIVE", ...) with `errorMessage`. It may run on any
// thread; the binding marshals it back to JavaScript.
// Failures of the device itself (a CUDA error that stops its stream), not of one op: an op's own
// failure goes to the FailureSink instead.
using IdleCallback = std::function<void(const std::string& errorCode, const std::string& errorMessage)>;

// An op that failed while it ran (a fault, or on the CPU any exception), named by its ticket.
struct OpFailure {
  uint64_t ticket = 0;
  std::string code;  // a MoekitError code
  std::string message;
};

// What a device tells its FailureSink at an idle marker: the ops that failed since the last report.
struct FailureReport {
  uint64_t completedThrough = 0;  // what was passed to whenIdle()
  std::vector<OpFailure> failures;
  // CUDA: FaultRecord::markedTickets, which also names failed ops whose details were not kept
  // (more failing ops than slots). Empty when every failure is in `failures`.
  std::vector<uint32_t> markedTickets;

  // Whether op `ticket` may have failed without being in `failures`.
  bool marked(uint64_t ticket) const {
    return !markedTickets.empty() && (markedTickets[markedTicketWord(ticket)] & markedTicketBit(ticket)) != 0;
  }
};

// Told, on the device's own thread, each time the device reaches an idle marker and before that
// marker's IdleCallback runs.
using FailureSink = std::function<void(FailureReport report)>;

// A device's memory as moekit sees it. inUse: bytes handed out to tensors and scratch; reserved:
// bytes the device holds for them (the CUDA pool's reservation; on the CPU, where memory comes from
// the C heap, equal to inUse). free / total: the device's (the CUDA driver's view; on the CPU the
// machine's physical memory, or MOEKIT_CPU_MEMORY_MB's budget when that is set).
struct MemoryInfo {
  size_t inUse = 0;
  size_t reserved = 0;
  size_t free = 0;
  size_t total = 0;
};

class Device {
 public:
  virtual ~Device() = default;

  // -1 for the CPU, N for cuda:N.
  virtual int index() const = 0;

  // Where op failures go (see FailureSink). Set once, by whoever creates the device, before any op.
  virtual void setFailureSink(FailureSink sink) = 0;

  // ---- Memory ----
  // Allocates nbytes (> 0) of device memory, usable by work enqueued after this call.
  // Throws NativeError("E_OOM", ...) when the device has no room.
  virtual void* allocate(size_t nbytes) = 0;
  // Frees memory once the work enqueued before this call has finished with it.
  virtual void release(void* ptr) = 0;
  // The memory counts now (not ordered with the queued work: memory whose release is queued may
  // still count as in use). Never blocks on the device's work.
  virtual MemoryInfo memoryInfo() = 0;

  // Checks that memory another library allocated, [pointer, pointer + nbytes), can be used by this
  // device's work as tensor memory (Tensor.fromDevicePointer); throws NativeError("E_DEVICE", ...)
  // naming what is wrong. A device that cannot tell (the CPU: any host address) accepts it.
  virtual void checkForeignMemory(const void* pointer, size_t nbytes) const = 0;

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
  // `completedThrough` travels to the FailureSink: the caller's word that every op with a ticket
  // up to it was enqueued before this call (0: no such word).
  virtual void whenIdle(IdleCallback done, uint64_t completedThrough) = 0;
  // Blocks the calling thread until earlier work has finished; throws a failure of the device.
  // (Built on whenIdle, the same for every device.)
  void waitIdle(uint64_t completedThrough = 0);

  // ---- Side work ----
  // Work enqueued between beginSideWork() and endSideWork() is ordered after everything enqueued
  // before beginSideWork(), but not with what is enqueued after endSideWork(): a CUDA device runs
  // it on a second stream, concurrently (the layer's shared expert beside its routed ones).
  // joinSideWork() orders everything enqueued after it after the side work. One side at a time:
  // begin, end, join, in that order (join alone does nothing, so it can close an error path).
  // Throws NativeError("E_DEVICE", ...) when called out of order. A device with one queue (the
  // CPU) runs side work in order like any other.
  void beginSideWork();
  void endSideWork();
  void joinSideWork();

  // ---- Ops (semantics in op_args.h) ----
  // Each op's args.ticket is larger than that of every op enqueued on this device before it.
  virtual void routing(const RoutingArgs& args) = 0;
  virtual void permute(const PermuteArgs& args) = 0;
  virtual void groupedGemm(const GroupedGemmArgs& args) = 0;
  virtual void linear(const LinearArgs& args) = 0;
  virtual void activation(const ActivationArgs& args) = 0;
  virtual void combine(const CombineArgs& args) = 0;
  virtual void cast(const CastArgs& args) = 0;
  virtual void fillRandom(const FillRandomArgs& args) = 0;
  virtual void quantizeWeights(const QuantizeWeightsArgs& args) = 0;
  virtual void addInt32(const AddInt32Args& args) = 0;
  virtual void expertSlots(const ExpertSlotsArgs& args) = 0;
  virtual void fusedMoe(const FusedMoeArgs& args) = 0;

 protected:
  enum class SideWork { None, Open, Ended };
  // Where side work stands; a device that cannot switch queues meanwhile (setStream, a capture)
  // reads it.
  SideWork sideWork() const { return sideWork_; }
  // The three steps on a device with a second queue; the base class has checked their order.
  virtual void forkSideQueue() {}
  virtual void leaveSideQueue() {}
  virtual void joinSideQueue() {}

 private:
  SideWork sideWork_ = SideWork::None;
};

}  // namespace moekit
