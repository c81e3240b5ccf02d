// Faults: checks on an op's data (index values) that fail while the op runs, after the call that
// enqueued it has returned. The rule every backend follows is written in op_args.h ("Faults");
// this file holds what backends and the binding share to report them.
//
// The CPU backend throws a NativeError whose message is describeFault(...). A CUDA kernel cannot
// throw and must not stop the stream, so it writes an OpFault into its device's FaultRecord
// (native/cuda/faults.cuh), which the device copies out and clears each time it reports idle.
#pragma once

#include <cstdint>
#include <string>

#include "host_device.h"

namespace moekit {

// What a check found. Numeric values are written by kernels into FaultRecord slots.
enum class FaultKind : int32_t {
  None = 0,
  // permute: topkIds[position] holds expert id `value`, outside [0, bound).
  ExpertIdOutOfRange = 1,
  // combine: sourceToPermuted[position] holds row `value`, outside [-1, bound) (-1: dropped pair).
  SourceRowOutOfRange = 2,
  // groupedGemm: expertOffsets[position] is `value`, outside [expertOffsets[position - 1], bound]
  // (offsets must start at 0 or more, never decrease, and end at most at the row count).
  ExpertOffsetOutOfRange = 3,
  // expertSlots: topkIds[position] holds expert id `value`, outside [0, bound).
  SlotExpertIdOutOfRange = 4,
  // groupedGemm: gatherRows[position] is `value`, outside [0, bound) (bound: the input's rows times
  // gatherDivisor).
  GatherRowOutOfRange = 5,
};

// One failing op, as a kernel reports it: the first fault its threads found.
struct OpFault {
  unsigned long long ticket;  // the op's OpIdentity::ticket; 0 marks a free slot
  int32_t kind;               // FaultKind
  int32_t unused;
  long long value;
  long long position;
  long long bound;
};

// Failing ops whose details are kept between two idle reports.
constexpr int kFaultSlots = 32;
// Every failing op also marks bit (ticket mod kMarkedTicketBits), so ops past the slots are still
// known to have failed; an op whose ticket shares a bit with a failing op's in the same stretch of
// work (more than this many tickets apart) would be taken as failed too.
constexpr int kMarkedTicketBits = 8192;
constexpr int kMarkedTicketWords = kMarkedTicketBits / 32;

// One per CUDA device, in device memory, zeroed after each idle report.
struct FaultRecord {
  OpFault slots[kFaultSlots];
  unsigned int markedTickets[kMarkedTicketWords];
};

MOEKIT_HOST_DEVICE inline int markedTicketWord(unsigned long long ticket) { return static_cast<int>((ticket / 32) % kMarkedTicketWords); }
MOEKIT_HOST_DEVICE inline unsigned int markedTicketBit(unsigned long long ticket) { return 1u << (ticket % 32); }

// The message a fault turns into, the same on every backend.
inline std::string describeFault(FaultKind kind, long long value, long long position, long long bound) {
  const std::string at = std::to_string(position);
  const std::string found = std::to_string(value);
  const std::string limit = std::to_string(bound);
  switch (kind) {
    case FaultKind::ExpertIdOutOfRange:
      return "permute: topkIds holds expert id " + found + " at flat index " + at + ", outside [0, " + limit + ")";
    case FaultKind::SourceRowOutOfRange:
      return "combine: sourceToPermuted holds row " + found + " at flat index " + at + ", outside [-1, " + limit +
             ") (-1 marks a dropped pair)";
    case FaultKind::ExpertOffsetOutOfRange:
      return "groupedGemm: expertOffsets[" + at + "] is " + found +
             ", but offsets must be non-decreasing from 0 and at most the row count " + limit;
    case FaultKind::SlotExpertIdOutOfRange:
      return "expertSlots: topkIds holds expert id " + found + " at flat index " + at + ", outside [0, " + limit + ")";
    case FaultKind::GatherRowOutOfRange:
      return "groupedGemm: gatherRows[" + at + "] is " + found + ", outside [0, " + limit +
             ") (the input's rows times gatherDivisor)";
    case FaultKind::None:
      break;
  }
  return "an index check failed (fault kind " + std::to_string(static_cast<int>(kind)) + ")";
}

}  // namespace moekit
