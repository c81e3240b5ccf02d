#include "ops.h"

#include "js_errors.h"
#include "tensor_args.h"

namespace moekit::binding {
namespace {

void Routing(const Napi::CallbackInfo& info) {
  OpArgs in(info, "routing");
  RoutingArgs args;
  args.logits = in.tensor("logits");
  args.correctionBias = in.optionalTensor("correctionBias");
  args.topkIds = in.output("topkIds");
  args.topkWeights = in.output("topkWeights");
  args.expertCounts = in.output("expertCounts");
  args.method = static_cast<RoutingMethod>(in.int32("method"));
  args.topK = in.int32("topK");
  args.renormalize = in.boolean("renormalize");
  args.numGroups = in.int32("numGroups");
  args.topkGroups = in.int32("topkGroups");
  args.scalingFactor = static_cast<float>(in.number("scalingFactor"));

  in.expectFloat(args.logits, "logits");
  in.expectShape(args.logits, "logits", {-1, -1});
  const int64_t tokens = args.logits.dim(0), experts = args.logits.dim(1);
  in.expect(args.method >= RoutingMethod::SoftmaxTopK && args.method <= RoutingMethod::SigmoidGroupTopK, "unknown method");
  in.expect(experts <= kMaxExperts, "logits has more expert columns than kMaxExperts");
  in.expect(args.topK >= 1 && args.topK <= experts, "topK must be in [1, experts]");
  in.expect(args.numGroups >= 1 && experts % args.numGroups == 0, "numGroups must divide the expert count");
  in.expect(args.topkGroups >= 1 && args.topkGroups <= args.numGroups, "topkGroups must be in [1, numGroups]");
  // The group limit leaves topkGroups groups eligible: asking for more experts than they hold
  // would pick excluded or repeated experts.
  in.expect(args.method != RoutingMethod::SigmoidGroupTopK ||
                args.topK <= static_cast<int64_t>(args.topkGroups) * (experts / args.numGroups),
            "topK must be at most topkGroups * experts / numGroups (the experts the group limit leaves eligible)");
  in.expectShape(args.topkIds, "topkIds", {tokens, args.topK});
  in.expectDType(args.topkIds, "topkIds", DType::Int32);
  in.expectShape(args.topkWeights, "topkWeights", {tokens, args.topK});
  in.expectDType(args.topkWeights, "topkWeights", DType::Float32);
  in.expectShape(args.expertCounts, "expertCounts", {experts});
  in.expectDType(args.expertCounts, "expertCounts", DType::Int32);
  if (args.correctionBias.present()) {
    in.expectShape(args.correctionBias, "correctionBias", {experts});
    in.expectDType(args.correctionBias, "correctionBias", DType::Float32);
  }
  in.enqueue([&](Device& device, uint64_t ticket) {
    args.ticket = ticket;
    device.routing(args);
  });
}

void Permute(const Napi::CallbackInfo& info) {
  OpArgs in(info, "permute");
  PermuteArgs args;
  args.input = in.tensor("input");
  args.topkIds = in.tensor("topkIds");
  args.permuted = in.output("permuted");
  args.expertOffsets = in.output("expertOffsets");
  args.sourceToPermuted = in.output("sourceToPermuted");
  args.permutedToSource = in.output("permutedToSource");
  args.numExperts = in.int32("numExperts");
  args.firstExpert = in.optionalInt32("firstExpert", 0);
  args.totalExperts = in.optionalInt32("totalExperts", args.numExperts);

  in.expect(args.totalExperts <= kMaxExperts, "totalExperts is larger than kMaxExperts");
  in.expect(args.firstExpert >= 0 && static_cast<int64_t>(args.firstExpert) + args.numExperts <= args.totalExperts,
            "local experts must lie within [0, totalExperts)");
  in.expectFloat(args.input, "input");
  in.expectShape(args.input, "input", {-1, -1});
  const int64_t tokens = args.input.dim(0), hidden = args.input.dim(1);
  in.expectShape(args.topkIds, "topkIds", {tokens, -1});
  in.expectDType(args.topkIds, "topkIds", DType::Int32);
  const int64_t pairs = tokens * args.topkIds.dim(1);
  in.expect(args.numExperts >= 1, "numExperts must be positive");
  in.expectShape(args.permuted, "permuted", {pairs, hidden});
  in.expectDType(args.permuted, "permuted", args.input.dtype);
  in.expectShape(args.expertOffsets, "expertOffsets", {args.numExperts + 1});
  in.expectDType(args.expertOffsets, "expertOffsets", DType::Int32);
  in.expectShape(args.sourceToPermuted, "sourceToPermuted", {tokens, args.topkIds.dim(1)});
  in.expectDType(args.sourceToPermuted, "sourceToPermuted", DType::Int32);
  in.expectShape(args.permutedToSource, "permutedToSource", {pairs});
  in.expectDType(args.permutedToSource, "permutedToSource", DType::Int32);
  in.enqueue([&](Device& device, uint64_t ticket) {
    args.ticket = ticket;
    device.permute(args);
  }, false);
}

void GroupedGemm(const Napi::CallbackInfo& info) {
  OpArgs in(info, "groupedGemm");
  GroupedGemmArgs args;
  args.input = in.tensor("input");
  args.weights = in.tensor("weights");
  args.bias = in.optionalTensor("bias");
  args.expertOffsets = in.tensor("expertOffsets");
  args.output = in.output("output");

  in.expectFloat(args.input, "input");
  in.expectFloat(args.weights, "weights");
  in.expectShape(args.input, "input", {-1, -1});
  in.expectShape(args.weights, "weights", {-1, -1, args.input.dim(1)});
  const int64_t rows = args.input.dim(0), experts = args.weights.dim(0), outFeatures = args.weights.dim(1);
  in.expect(experts <= kMaxExperts, "weights hold more experts than kMaxExperts");
  in.expectShape(args.expertOffsets, "expertOffsets", {experts + 1});
  in.expectDType(args.expertOffsets, "expertOffsets", DType::Int32);
  // activation: an ActivationKind, or absent for none (then layout, alpha and limit are unread).
  const int32_t activationKind = in.optionalInt32("activation", -1);
  if (activationKind >= 0) {
    args.activation.enabled = true;
    args.activation.kind = static_cast<ActivationKind>(activationKind);
    args.activation.layout = static_cast<GateLayout>(in.int32("layout"));
    args.activation.alpha = static_cast<float>(in.number("alpha"));
    args.activation.limit = static_cast<float>(in.number("limit"));
    in.expect(args.activation.kind <= ActivationKind::ReLU, "unknown activation kind");
    in.expect(args.activation.layout == GateLayout::Halves || args.activation.layout == GateLayout::Interleaved, "unknown gate layout");
    in.expect(!isGated(args.activation.kind) || outFeatures % 2 == 0, "a gated activation needs an even number of weight rows");
  }
  args.maxRowsPerExpert = in.optionalInt32("maxRowsPerExpert", 0);
  const int64_t outWidth = args.activation.enabled && isGated(args.activation.kind) ? outFeatures / 2 : outFeatures;
  in.expectShape(args.output, "output", {rows, outWidth});
  in.expect(args.output.dtype == DType::Float32 || args.output.dtype == args.input.dtype, "output must be float32 or the input dtype");
  if (args.bias.present()) {
    in.expectFloat(args.bias, "bias");
    in.expectShape(args.bias, "bias", {experts, outFeatures});
  }
  in.enqueue([&](Device& device, uint64_t ticket) {
    args.ticket = ticket;
    device.groupedGemm(args);
  }, false);
}

void Linear(const Napi::CallbackInfo& info) {
  OpArgs in(info, "linear");
  LinearArgs args;
  args.input = in.tensor("input");
  args.weight = in.tensor("weight");
  args.bias = in.optionalTensor("bias");
  args.output = in.output("output");

  in.expectFloat(args.input, "input");
  in.expectFloat(args.weight, "weight");
  in.expectShape(args.input, "input", {-1, -1});
  in.expectShape(args.weight, "weight", {-1, args.input.dim(1)});
  in.expectShape(args.output, "output", {args.input.dim(0), args.weight.dim(0)});
  in.expect(args.output.dtype == DType::Float32 || args.output.dtype == args.input.dtype, "output must be float32 or the input dtype");
  if (args.bias.present()) {
    in.expectFloat(args.bias, "bias");
    in.expectShape(args.bias, "bias", {args.weight.dim(0)});
  }
  in.enqueue([&](Device& device, uint64_t ticket) {
    args.ticket = ticket;
    device.linear(args);
  });
}

void Activation(const Napi::CallbackInfo& info) {
  OpArgs in(info, "activation");
  ActivationArgs args;
  args.input = in.tensor("input");
  args.output = in.output("output");
  args.kind = static_cast<ActivationKind>(in.int32("kind"));
  args.layout = static_cast<GateLayout>(in.int32("layout"));
  args.alpha = static_cast<float>(in.number("alpha"));
  args.limit = static_cast<float>(in.number("limit"));

  in.expect(args.kind >= ActivationKind::SwiGLU && args.kind <= ActivationKind::ReLU, "unknown activation kind");
  in.expect(args.layout == GateLayout::Halves || args.layout == GateLayout::Interleaved, "unknown gate layout");
  in.expectFloat(args.input, "input");
  in.expectFloat(args.output, "output");
  in.expectShape(args.input, "input", {-1, -1});
  const int64_t width = isGated(args.kind) ? args.input.dim(1) / 2 : args.input.dim(1);
  in.expect(!isGated(args.kind) || args.input.dim(1) % 2 == 0, "a gated input needs an even width");
  in.expectShape(args.output, "output", {args.input.dim(0), width});
  in.enqueue([&](Device& device, uint64_t ticket) {
    args.ticket = ticket;
    device.activation(args);
  });
}

void Combine(const Napi::CallbackInfo& info) {
  OpArgs in(info, "combine");
  CombineArgs args;
  args.expertOutput = in.tensor("expertOutput");
  args.topkWeights = in.tensor("topkWeights");
  args.sourceToPermuted = in.tensor("sourceToPermuted");
  args.shared = in.optionalTensor("shared");
  args.sharedGateLogits = in.optionalTensor("sharedGateLogits");
  args.output = in.output("output");

  in.expectFloat(args.expertOutput, "expertOutput");
  in.expectFloat(args.output, "output");
  in.expectShape(args.output, "output", {-1, -1});
  const int64_t tokens = args.output.dim(0), hidden = args.output.dim(1);
  in.expectShape(args.topkWeights, "topkWeights", {tokens, -1});
  in.expectDType(args.topkWeights, "topkWeights", DType::Float32);
  const int64_t slots = args.topkWeights.dim(1);
  in.expectShape(args.sourceToPermuted, "sourceToPermuted", {tokens, slots});
  in.expectDType(args.sourceToPermuted, "sourceToPermuted", DType::Int32);
  in.expectShape(args.expertOutput, "expertOutput", {tokens * slots, hidden});
  if (args.shared.present()) {
    in.expectFloat(args.shared, "shared");
    in.expectShape(args.shared, "shared", {tokens, hidden});
  }
  if (args.sharedGateLogits.present()) {
    in.expect(args.shared.present(), "sharedGateLogits needs shared");
    in.expectShape(args.sharedGateLogits, "sharedGateLogits", {tokens, 1});
    in.expectDType(args.sharedGateLogits, "sharedGateLogits", DType::Float32);
  }
  in.enqueue([&](Device& device, uint64_t ticket) {
    args.ticket = ticket;
    device.combine(args);
  });
}

void Cast(const Napi::CallbackInfo& info) {
  OpArgs in(info, "cast");
  CastArgs args;
  args.input = in.tensor("input");
  args.output = in.output("output");
  in.expect(args.input.numel() == args.output.numel(), "input and output sizes differ");
  const auto isFloat = [](DType dtype) { return isComputeFloat(dtype) || dtype == DType::Float8E4M3; };
  const bool rawCopy = args.input.dtype == args.output.dtype && !isFloat(args.input.dtype);
  in.expect(rawCopy || (isFloat(args.input.dtype) && isFloat(args.output.dtype)),
            "cast converts between float dtypes (float8_e4m3 included), or copies int32 or uint8");
  in.enqueue([&](Device& device, uint64_t ticket) {
    args.ticket = ticket;
    device.cast(args);
  });
}

void FillRandom(const Napi::CallbackInfo& info) {
  OpArgs in(info, "fillRandom");
  FillRandomArgs args;
  args.output = in.output("output");
  in.expectFloat(args.output, "output");
  const double seed = in.number("seed");
  in.expect(seed >= 0 && seed <= 9007199254740991.0, "seed must be a non-negative safe integer");
  args.seed = static_cast<uint64_t>(seed);
  args.scale = static_cast<float>(in.number("scale"));
  in.enqueue([&](Device& device, uint64_t ticket) {
    args.ticket = ticket;
    device.fillRandom(args);
  });
}

}  // namespace

void RegisterOps(Napi::Env env, Napi::Object exports) {
  exports.Set("routing", Napi::Function::New<Routing>(env, "routing"));
  exports.Set("permute", Napi::Function::New<Permute>(env, "permute"));
  exports.Set("groupedGemm", Napi::Function::New<GroupedGemm>(env, "groupedGemm"));
  exports.Set("linear", Napi::Function::New<Linear>(env, "linear"));
  exports.Set("activation", Napi::Function::New<Activation>(env, "activation"));
  exports.Set("combine", Napi::Function::New<Combine>(env, "combine"));
  exports.Set("cast", Napi::Function::New<Cast>(env, "cast"));
  exports.Set("fillRandom", Napi::Function::New<FillRandom>(env, "fillRandom"));
}

}  // namespace moekit::binding
