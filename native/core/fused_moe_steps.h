// The fused MoE op (op_args.h, "6. Fused MoE") as the separate ops in sequence: what the op means,
// written once. The CPU backend runs it as its implementation; the CUDA backend for calls its
// fused kernel does not take.
//
// `Steps` provides the ops and the intermediates' memory:
//   TensorView scratch(DType dtype, std::vector<int64_t> shape);  // lives until Steps is gone
//   void linear(const LinearArgs&); void routing(const RoutingArgs&); void permute(const PermuteArgs&);
//   void groupedGemm(const GroupedGemmArgs&); void combine(const CombineArgs&);
// Every step carries the fused op's identity, so a fault found in one is reported as the op's.
#pragma once

#include <cstdint>
#include <vector>

#include "op_args.h"

namespace moekit {

template <class Steps>
void fusedMoeInSteps(const FusedMoeArgs& args, Steps& steps) {
  const OpIdentity& identity = args;
  const int64_t tokens = args.input.dim(0);
  const int32_t experts = static_cast<int32_t>(args.w13.dim(0));
  const int64_t pairs = tokens * args.topK;
  const DType dtype = args.input.dtype;

  LinearArgs router;
  static_cast<OpIdentity&>(router) = identity;
  router.input = args.input;
  router.weight = args.routerWeight;
  router.bias = args.routerBias;
  router.output = steps.scratch(DType::Float32, {tokens, experts});
  steps.linear(router);

  RoutingArgs routing;
  static_cast<OpIdentity&>(routing) = identity;
  routing.logits = router.output;
  routing.correctionBias = args.correctionBias;
  routing.topkIds = args.topkIds;
  routing.topkWeights = args.topkWeights;
  routing.expertCounts = args.expertCounts;
  routing.method = args.method;
  routing.topK = args.topK;
  routing.renormalize = args.renormalize;
  routing.numGroups = args.numGroups;
  routing.topkGroups = args.topkGroups;
  routing.scalingFactor = args.scalingFactor;
  steps.routing(routing);

  PermuteArgs sort;
  static_cast<OpIdentity&>(sort) = identity;
  sort.input = args.input;
  sort.topkIds = args.topkIds;
  sort.expertOffsets = steps.scratch(DType::Int32, {experts + int64_t{1}});
  sort.sourceToPermuted = steps.scratch(DType::Int32, {tokens, args.topK});
  sort.permutedToSource = steps.scratch(DType::Int32, {pairs});
  sort.localExpertCount = experts;
  sort.totalExperts = experts;
  steps.permute(sort);

  const int64_t up = args.w13.dim(1);
  GroupedGemmArgs first;
  static_cast<OpIdentity&>(first) = identity;
  first.input = args.input;
  first.gatherRows = sort.permutedToSource;
  first.gatherDivisor = args.topK;
  first.weights = args.w13;
  first.bias = args.w13Bias;
  first.expertOffsets = sort.expertOffsets;
  first.activation = args.activation;
  first.output = steps.scratch(dtype, {pairs, isGated(args.activation.kind) ? up / 2 : up});
  first.maxRowsPerExpert = tokens;
  steps.groupedGemm(first);

  GroupedGemmArgs second;
  static_cast<OpIdentity&>(second) = identity;
  second.input = first.output;
  second.weights = args.w2;
  second.bias = args.w2Bias;
  second.expertOffsets = sort.expertOffsets;
  second.output = steps.scratch(dtype, {pairs, args.input.dim(1)});
  second.maxRowsPerExpert = tokens;
  steps.groupedGemm(second);

  CombineArgs combine;
  static_cast<OpIdentity&>(combine) = identity;
  combine.expertOutput = second.output;
  combine.topkWeights = args.topkWeights;
  combine.sourceToPermuted = sort.sourceToPermuted;
  combine.output = args.output;
  steps.combine(combine);
}

}  // namespace moekit
