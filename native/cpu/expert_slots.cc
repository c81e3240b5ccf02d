// expertSlots on the CPU (op_args.h, "Expert slots"): each pair's expert id to one of its replicas'
// slots, the tokens of an expert taking the replicas in turn.
#include <string>

#include "../core/errors.h"
#include "../core/faults.h"
#include "kernels.h"

namespace moekit::cpu {

void expertSlots(const ExpertSlotsArgs& args) {
  const int64_t topK = args.topkIds.dim(1);
  const int64_t pairs = args.topkIds.numel();
  const auto experts = static_cast<int32_t>(args.replicaOffsets.numel() - 1);
  const auto* ids = args.topkIds.as<int32_t>();
  const auto* offsets = args.replicaOffsets.as<int32_t>();
  const auto* replicas = args.replicaSlots.as<int32_t>();
  auto* slots = args.slotIds.as<int32_t>();
  // The table is the caller's (op_args.h): checked here, where a bad one would read past it.
  const int64_t replicaCount = args.replicaSlots.numel();
  for (int32_t expert = 0; expert < experts; ++expert) {
    if (offsets[expert] < 0 || offsets[expert + 1] <= offsets[expert] || offsets[expert + 1] > replicaCount) {
      throw NativeError("E_INVALID_ARGUMENT", "expertSlots: replicaOffsets must increase strictly from 0 to at most the " +
                                                  std::to_string(replicaCount) + " replica slots (expert " + std::to_string(expert) + ")");
    }
  }
  // Ids come from users as well as from routing(): check them before writing anything.
  for (int64_t pair = 0; pair < pairs; ++pair) {
    if (ids[pair] < 0 || ids[pair] >= experts) {
      throw NativeError("E_INVALID_ARGUMENT", describeFault(FaultKind::SlotExpertIdOutOfRange, ids[pair], pair, experts));
    }
  }
  for (int64_t pair = 0; pair < pairs; ++pair) {
    const int32_t expert = ids[pair];
    const int64_t count = offsets[expert + 1] - offsets[expert];
    slots[pair] = replicas[offsets[expert] + (pair / topK) % count];
  }
}

}  // namespace moekit::cpu
