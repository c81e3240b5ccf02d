// Reading an expert's rows from the device-side offsets, as every grouped GEMM family does.
// Offsets come from users as well as from permute(): a bad one is clamped, so no read or write can
// leave the input or output, and reported as a fault (native/core/op_args.h, "Faults").
#pragma once

#include <cstdint>

#include "faults.cuh"

namespace moekit::cuda {

// Expert `expert`'s rows [*begin, *end): offsets[expert] and offsets[expert + 1] clamped into
// [0, rows] and made non-decreasing.
template <typename Index>
__device__ inline void expertRowRange(const int32_t* offsets, int32_t expert, Index rows, const FaultSink& faults,
                                      Index* begin, Index* end) {
  const Index first = offsets[expert];
  const Index last = offsets[expert + 1];
  if (first < 0 || first > rows) reportFault(faults, FaultKind::ExpertOffsetOutOfRange, first, expert, rows);
  if (last < first || last > rows) reportFault(faults, FaultKind::ExpertOffsetOutOfRange, last, expert + 1, rows);
  *begin = min(max(first, Index{0}), rows);
  *end = min(max(last, *begin), rows);
}

}  // namespace moekit::cuda
