// The CPU reference backend: one synchronous function per op. The CPU device (native/binding)
// runs them on its worker thread, in the order they were enqueued; each may use the shared
// thread pool (parallel.h) internally. Semantics: native/core/op_args.h.
#pragma once

#include "../core/op_args.h"

namespace moekit::cpu {

void routing(const RoutingArgs& args);
void permute(const PermuteArgs& args);
void groupedGemm(const GroupedGemmArgs& args);
void linear(const LinearArgs& args);
void activation(const ActivationArgs& args);
void combine(const CombineArgs& args);
void cast(const CastArgs& args);
void fillRandom(const FillRandomArgs& args);
void quantizeWeights(const QuantizeWeightsArgs& args);
void addInt32(const AddInt32Args& args);
void expertSlots(const ExpertSlotsArgs& args);
void fusedMoe(const FusedMoeArgs& args);

}  // namespace moekit::cpu
