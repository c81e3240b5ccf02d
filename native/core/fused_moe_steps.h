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

// A step's arguments, carrying the fused op's identity.
template <class Args>
Args stepArgs(const OpIdentity& identity) {
  Args args;
  static_cast<OpIdentity&>(args) = identity;
  return args;
}

template <class Steps>
void fusedMoeInSteps(const FusedMoeArgs& args, Steps& steps) {
  const OpIdentity& identity = args;
  const int64_t tokens = args.input.dim(0);
  const int32_t experts = static_cast<int32_t>(args.w13.dim(0));
  const int64_t pairs = tokens * args.topK;
  const DType dtype = args.input.dtype;

  LinearArgs router = stepArgs<LinearArgs>(identity);
  router.input = args.input;
  router.weight = args.routerWeight;
  router.bias = args.routerBias;
  router.output = steps.scratch(DType::Float32, {tokens, experts});
  steps.linear(router);

  RoutingArgs routing = stepArgs<RoutingArgs>(identity);
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

  PermuteArgs sort = stepArgs<PermuteArgs>(identity);
  sort.input = args.input;
  sort.topkIds = args.topkIds;
  sort.expertOffsets = steps.scratch(DType::Int32, {experts + int64_t{1}});
  sort.sourceToPermuted = steps.scratch(DType::Int32, {tokens, args.topK});
  sort.permutedToSource = steps.scratch(DType::Int32, {pairs});
  sort.localExpertCount = experts;
  sort.totalExperts = experts;
  steps.permute(sort);

  // The two GEMMs over the pairs in expert order, a token visiting an expert at most once.
  const auto expertGemm = [&](const TensorView& input, const TensorView& weights, const TensorView& bias, int64_t width) {
    GroupedGemmArgs gemm = stepArgs<GroupedGemmArgs>(identity);
    gemm.input = input;
    gemm.weights = weights;
    gemm.bias = bias;
    gemm.expertOffsets = sort.expertOffsets;
    gemm.output = steps.scratch(dtype, {pairs, width});
    gemm.maxRowsPerExpert = tokens;
    return gemm;
  };
  const int64_t up = args.w13.dim(1);
  GroupedGemmArgs first = expertGemm(args.input, args.w13, args.w13Bias, isGated(args.activation.kind) ? up / 2 : up);
  first.gatherRows = sort.permutedToSource;
  first.gatherDivisor = args.topK;
  first.activation = args.activation;
  steps.groupedGemm(first);
  const GroupedGemmArgs second = expertGemm(first.output, args.w2, args.w2Bias, args.input.dim(1));
  steps.groupedGemm(second);

  CombineArgs combine = stepArgs<CombineArgs>(identity);
  combine.expertOutput = second.output;
  combine.topkWeights = args.topkWeights;
  combine.sourceToPermuted = sort.sourceToPermuted;
  combine.output = args.output;
  steps.combine(combine);
}

}  // namespace moekit
