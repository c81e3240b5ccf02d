// Reporting a fault from a kernel (the rule: native/core/op_args.h, "Faults"). A kernel that finds
// a bad index skips or clamps the read and calls reportFault; it never traps, since a trap would
// stop the stream and poison the CUDA context for the whole process.
#pragma once

#include "../core/faults.h"
#include "../core/op_args.h"

namespace moekit::cuda {

// Where one op's kernels report: its device's record and its ticket. A null record (native tests
// and benches that run kernels without the binding) drops reports.
struct FaultSink {
  FaultRecord* record = nullptr;
  unsigned long long ticket = 0;

  static FaultSink of(const OpIdentity& op) { return FaultSink{op.faultRecord, op.ticket}; }
};

// Marks the op as failed and keeps its first fault's details: the first thread to claim a free slot
// for this ticket writes them; threads that find the ticket already there stop. Runs only on the
// failure path, so the atomics cost nothing in a correct run.
__device__ inline void reportFault(const FaultSink& sink, FaultKind kind, long long value, long long position,
                                   long long bound) {
  if (sink.record == nullptr || sink.ticket == 0) return;
  atomicOr(&sink.record->markedTickets[markedTicketWord(sink.ticket)], markedTicketBit(sink.ticket));
  for (int slot = 0; slot < kFaultSlots; ++slot) {
    OpFault& fault = sink.record->slots[slot];
    const unsigned long long holder = atomicCAS(&fault.ticket, 0ull, sink.ticket);
    if (holder == sink.ticket) return;
    if (holder == 0) {
      fault.kind = static_cast<int32_t>(kind);
      fault.value = value;
      fault.position = position;
      fault.bound = bound;
      return;
    }
  }
}

}  // namespace moekit::cuda
