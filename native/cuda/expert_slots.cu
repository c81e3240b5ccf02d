// expertSlots on the GPU (op_args.h, "Expert slots"): one thread per (token, slot) pair maps its
// expert id to one of the expert's replicas, the tokens of an expert taking them in turn. Bad ids
// are reported (faults.cuh) and their pairs dropped (slot -1), as permute does.
#include "check.h"
#include "faults.cuh"
#include "flat_launch.h"
#include "kernels.h"

namespace moekit::cuda {
namespace {

constexpr int32_t kDropped = -1;

struct SlotTable {
  const int32_t* offsets;   // [experts + 1]
  const int32_t* replicas;  // [replicaCount]
  int32_t experts;
  int32_t replicaCount;
};

__global__ void expertSlotsKernel(const int32_t* ids, int64_t pairs, int64_t topK, SlotTable table, int32_t* slots, FaultSink faults) {
  for (int64_t pair = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; pair < pairs;
       pair += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int32_t expert = ids[pair];
    if (expert < 0 || expert >= table.experts) {
      reportFault(faults, FaultKind::SlotExpertIdOutOfRange, expert, pair, table.experts);
      slots[pair] = kDropped;
      continue;
    }
    const int32_t begin = table.offsets[expert], end = table.offsets[expert + 1];
    // A table that breaks the contract (built by the library from a checked placement) drops
    // the pair rather than read past replicaSlots.
    const bool valid = begin >= 0 && end > begin && end <= table.replicaCount;
    slots[pair] = valid ? table.replicas[begin + (pair / topK) % (end - begin)] : kDropped;
  }
}

}  // namespace

void expertSlots(const ExpertSlotsArgs& args, cudaStream_t stream) {
  const int64_t pairs = args.topkIds.numel();
  if (pairs == 0) return;
  const SlotTable table{args.replicaOffsets.as<int32_t>(), args.replicaSlots.as<int32_t>(),
                        static_cast<int32_t>(args.replicaOffsets.numel() - 1), static_cast<int32_t>(args.replicaSlots.numel())};
  expertSlotsKernel<<<FlatLaunch::blocks(pairs), FlatLaunch::kThreads, 0, stream>>>(
      args.topkIds.as<int32_t>(), pairs, args.topkIds.dim(1), table, args.slotIds.as<int32_t>(), FaultSink::of(args));
  MOEKIT_CHECK_LAUNCH("expertSlotsKernel");
}

}  // namespace moekit::cuda
