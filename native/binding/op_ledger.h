// Which tensors an op's failure reaches (native/core/op_args.h, "Faults").
//
// An op can fail after the call that enqueued it has returned: a CUDA kernel finds a bad index, or
// a CPU task throws. The device reports such failures by ticket at its next idle marker
// (Device::setFailureSink). The ledger remembers, for every op enqueued since, which versions of
// which tensors it read and wrote, so a failure poisons exactly the failed op's outputs and,
// through them, the outputs of every later op that read a poisoned version. Awaiting a poisoned
// tensor then rejects with the failure; unrelated tensors are unaffected.
//
// Once the device has reported idle past an op, that op's outputs are final: clean ones forget
// their sources, so history never grows without bound.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_set>
#include <vector>

#include "core/device.h"

namespace moekit::binding {

struct Failure {
  std::string code;  // a MoekitError code
  std::string message;
};
using FailureRef = std::shared_ptr<const Failure>;

// One version of a tensor's bytes: what one write left there.
struct Version;
using VersionRef = std::shared_ptr<Version>;

// A tensor's history: its current version. One per Storage, shared with the ledger's entries and
// the captured graphs that write it (which may outlive the Storage).
class Lineage {
 public:
  Lineage();
  // The failure the tensor's current contents carry, as far as the devices have reported.
  FailureRef failure() const;
  // The current version, to be checked later (a download reads this version, whatever is
  // written after it).
  VersionRef current() const;
  static FailureRef failureOf(const VersionRef& version);

 private:
  friend class OpLedger;
  VersionRef current_;
};
using LineageRef = std::shared_ptr<Lineage>;

// What an op (or a copy) reads and writes.
struct OpAccess {
  std::vector<LineageRef> reads;
  std::vector<LineageRef> writes;
  // Whether the op writes every byte of its outputs. If not, the bytes it leaves keep whatever
  // failure the earlier contents carried.
  bool overwrites = true;
};

// What a captured CUDA graph reads from outside itself and writes, and the tickets its ops got
// while it was captured (its kernels report faults under those).
struct GraphHistory {
  uint64_t firstTicket = 0;
  uint64_t lastTicket = 0;
  std::vector<LineageRef> reads;
  std::vector<LineageRef> writes;
};

// One per device, created with it (device_registry).
class OpLedger {
 public:
  // Held around recording an op and enqueuing it, so tickets reach the device in order.
  std::unique_lock<std::mutex> enqueueLock() { return std::unique_lock<std::mutex>(enqueueMutex_); }

  // Records an op about to be enqueued and returns its ticket (OpIdentity::ticket). While a graph
  // is being captured, the op is added to the graph's history instead: its outputs change only
  // when the graph is replayed.
  uint64_t record(const OpAccess& access);
  // Records one replay of a captured graph.
  void recordLaunch(const GraphHistory& graph);

  void beginCapture();
  GraphHistory endCapture();

  // Enqueues a whenIdle marker that also lets the ledger retire what ran before it.
  void whenIdle(Device& device, IdleCallback done);
  void waitIdle(Device& device);
  // Enqueues a marker (with no callback) when many ops wait to be retired, so a loop that never
  // awaits anything keeps the ledger small. Call after enqueuing.
  void retireIfLong(Device& device);

  // The device's FailureSink: marks failed ops' outputs, spreads their failures, retires ops up to
  // report.completedThrough. Runs on the device's thread.
  void resolve(const FailureReport& report);

 private:
  struct Entry {
    uint64_t ticket = 0;
    // A graph replay: the tickets its ops were captured under (0, 0 otherwise).
    uint64_t capturedFirst = 0;
    uint64_t capturedLast = 0;
    std::vector<VersionRef> outputs;

    bool owns(uint64_t failedTicket) const {
      return failedTicket == ticket || (capturedFirst != 0 && failedTicket >= capturedFirst && failedTicket <= capturedLast);
    }
  };

  static FailureRef failureOf(const Entry& entry, const FailureReport& report);
  // Called with the version lock held.
  void write(const std::vector<VersionRef>& sources, const OpAccess& access, Entry& entry);
  uint64_t issuedThrough();
  uint64_t enqueuedThrough();

  std::mutex enqueueMutex_;
  // Guarded by the version lock (op_ledger.cc):
  std::deque<Entry> entries_;  // ops not yet retired, in ticket order
  uint64_t issuedThrough_ = 0;
  bool capturing_ = false;
  GraphHistory capture_;
  std::unordered_set<Lineage*> captureWritten_;
  bool retiring_ = false;  // a marker from retireIfLong is on its way
};

}  // namespace moekit::binding
