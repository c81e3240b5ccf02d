// Gathered rows of a grouped GEMM (GroupedGemmArgs::gatherRows, native/core/op_args.h): product
// row r reads input row gatherRows[r] / divisor. Every family reads its rows through
// RowGather::source(), so the index check and its fault are written once: a bad index is reported
// and the row reads zeros, never memory outside the input.
#pragma once

#include <cstdint>

#include "../core/host_device.h"
#include "../core/op_args.h"
#include "divider.h"
#include "faults.cuh"
#include "scratch.h"

namespace moekit::cuda {

struct RowGather {
  const int32_t* rows = nullptr;  // gatherRows [M], or nullptr: row r reads input row r
  Divider divisor;                // gatherDivisor
  int64_t bound = 0;              // valid values: [0, T · gatherDivisor)
  FaultSink faults;

  static RowGather of(const GroupedGemmArgs& args) {
    RowGather gather;
    if (!args.gatherRows.present()) return gather;
    gather.rows = args.gatherRows.as<int32_t>();
    gather.divisor = Divider::of(static_cast<uint32_t>(args.gatherDivisor));
    gather.bound = args.input.dim(0) * args.gatherDivisor;
    gather.faults = FaultSink::of(args);
    return gather;
  }

  MOEKIT_HOST_DEVICE bool present() const { return rows != nullptr; }

#ifdef __CUDACC__
  // The input row product row `row` reads, or -1 (read zeros) for an index outside [0, bound),
  // which is reported. The value is non-negative below 2^31 once checked, as divide() needs.
  __device__ int64_t source(int64_t row) const {
    if (rows == nullptr) return row;
    const int32_t value = rows[row];
    if (value < 0 || value >= bound) {
      reportFault(faults, FaultKind::GatherRowOutOfRange, value, row, bound);
      return -1;
    }
    return divisor.divide(static_cast<uint32_t>(value));
  }
#endif
};

// A grouped GEMM's input with its gathered rows copied out (gathered_input.cu), for the kernels
// that read rows in place (everything but sm90's 16-bit kernel and small_m's dense one): rows
// [offsets[0], offsets[E]) of a [M, K] scratch copy hold their gathered rows (zeros for a bad
// index), rows outside them zeros. args() is the call on that copy, without gatherRows. The
// scratch is freed in stream order after the work enqueued while it lives.
class GatheredInput {
 public:
  GatheredInput(const GroupedGemmArgs& args, cudaStream_t stream);

  const GroupedGemmArgs& args() const { return args_; }

 private:
  ScratchBuffer scratch_;
  GroupedGemmArgs args_;
};

}  // namespace moekit::cuda
