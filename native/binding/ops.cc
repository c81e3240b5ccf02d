#include "ops.h"

#include "js_errors.h"
#include "tensor_args.h"

namespace moekit::binding {
namespace {

// ---- Quantized operands (op_args.h, "Quantized weights and activations") --------------------

WeightFormat readWeightFormat(const OpArgs& in, const char* key) {
  const int32_t format = in.optionalInt32(key, static_cast<int32_t>(WeightFormat::Dense));
  if (format < static_cast<int32_t>(WeightFormat::Dense) || format > static_cast<int32_t>(WeightFormat::Mxfp4)) {
    in.fail(std::string("unknown ") + key);
  }
  return static_cast<WeightFormat>(format);
}

// A weight-only format's group size (`key`: weightGroupSize or groupSize) for weights of depth K.
int64_t readWeightGroupSize(const OpArgs& in, const char* key, WeightFormat format, int64_t depth) {
  const int64_t groupSize = in.optionalInt32(key, 0);
  if (format == WeightFormat::Mxfp4) {
    in.expectAbout(groupSize == 0 || groupSize == kMxfp4GroupSize, key, " must be 0 or 32 with MXFP4 weights");
    in.expect(depth % kMxfp4GroupSize == 0, "MXFP4 weights need K to be a multiple of 32");
  } else if (isWeightOnly(format)) {
    in.expectAbout(groupSize == 0 || (groupSize > 0 && groupSize % kWeightGroupQuantum == 0), key,
                   " must be 0 (per output channel) or a positive multiple of 32");
  } else {
    in.expectAbout(groupSize == 0, key, " goes only with weight-only formats (Int8, Int4, Mxfp4)");
  }
  return groupSize;
}

// Row scales of an FP8 activation [rows, width]: float32 [rows, ceil(width/128)].
void expectRowScales(const OpArgs& in, const TensorView& scales, const char* key, const TensorView& rows, const char* rowsKey) {
  if (!scales.present()) in.fail(std::string(rowsKey) + " is float8_e4m3: " + key + " is required");
  in.expectDType(scales, key, DType::Float32);
  in.expectShape(scales, key, {rows.dim(0), fp8Blocks(rows.dim(1))});
}

// A GEMM's input [M, K] (rank already checked): float, or with FP8 weights also Float8E4M3 with
// its row scales.
void checkGemmInput(const OpArgs& in, WeightFormat format, const TensorView& input, const TensorView& inputScales) {
  if (input.dtype != DType::Float8E4M3) {
    in.expectFloat(input, "input");
    in.expect(!inputScales.present(), "inputScales goes only with a float8_e4m3 input");
    return;
  }
  in.expect(format == WeightFormat::Fp8Block128, "a float8_e4m3 input needs FP8 weights (weightFormat Fp8Block128)");
  expectRowScales(in, inputScales, "inputScales", input, "input");
}

// A GEMM's weights [lead.., N, stored K] for an input of depth K, and their weightScales, by
// format: float with no scales (Dense), Float8E4M3 with float32 block scales (Fp8Block128), or
// UInt8 bytes with group scales (weight-only). `lead` is {E} (grouped GEMM) or {} (linear).
// Returns the weight-only group size (0 otherwise).
int64_t checkGemmWeights(const OpArgs& in, WeightFormat format, const TensorView& weights, const char* key,
                         const TensorView& weightScales, std::vector<int64_t> lead, int64_t depth) {
  std::vector<int64_t> shape = lead;
  shape.insert(shape.end(), {-1, isWeightOnly(format) ? -1 : depth});
  in.expectShape(weights, key, shape);
  const int64_t groupSize = readWeightGroupSize(in, "weightGroupSize", format, depth);
  if (format == WeightFormat::Dense) {
    in.expectFloat(weights, key);
    if (weightScales.present()) in.fail(std::string("dense ") + key + " take no weightScales");
    return groupSize;
  }
  const int64_t outFeatures = weights.shape[lead.size()];
  std::vector<int64_t> scaleShape = lead;
  if (format == WeightFormat::Fp8Block128) {
    in.expectDType(weights, key, DType::Float8E4M3);
    if (!weightScales.present()) in.fail(std::string("FP8 ") + key + " need weightScales");
    in.expectDType(weightScales, "weightScales", DType::Float32);
    scaleShape.insert(scaleShape.end(), {fp8Blocks(outFeatures), fp8Blocks(depth)});
  } else {
    in.expectDType(weights, key, DType::UInt8);
    in.expectAbout(weightDepth(format, weights.shape.back()) == depth, key,
                   " hold a different K (weightDepth of their last extent) than the input");
    if (!weightScales.present()) in.fail(std::string("weight-only ") + key + " need weightScales");
    in.expectDType(weightScales, "weightScales", format == WeightFormat::Mxfp4 ? DType::UInt8 : DType::Float32);
    scaleShape.insert(scaleShape.end(), {outFeatures, weightScaleGroups(format, groupSize, depth)});
  }
  in.expectShape(weightScales, "weightScales", scaleShape);
  return groupSize;
}

// A GEMM's output (rank already checked): float32 or the input's dtype; with FP8 weights any float,
// or Float8E4M3 with its row scales.
void checkGemmOutput(const OpArgs& in, WeightFormat format, const TensorView& input, const TensorView& output, const TensorView& outputScales) {
  if (output.dtype == DType::Float8E4M3) {
    in.expect(format == WeightFormat::Fp8Block128, "a float8_e4m3 output needs FP8 weights (weightFormat Fp8Block128)");
    expectRowScales(in, outputScales, "outputScales", output, "output");
    return;
  }
  in.expect(!outputScales.present(), "outputScales goes only with a float8_e4m3 output");
  if (format == WeightFormat::Fp8Block128) {
    in.expectFloat(output, "output");
  } else {
    in.expect(output.dtype == DType::Float32 || output.dtype == input.dtype, "output must be float32 or the input dtype");
  }
}

// An optional bias: absent, or float of `shape`.
void expectOptionalBias(const OpArgs& in, const TensorView& bias, const char* key, std::initializer_list<int64_t> shape) {
  if (!bias.present()) return;
  in.expectFloat(bias, key);
  in.expectShape(bias, key, shape);
}

// A grouped GEMM's gathered rows (op_args.h, "Gathered rows"): gatherRows int32 [M] and a
// gatherDivisor of 1 or more, not with FP8 input rows (those are permuted with their scales).
// Their values are checked where they are read. Returns M, the product's row count.
int64_t checkGatherRows(const OpArgs& in, const GroupedGemmArgs& args) {
  if (!args.gatherRows.present()) {
    in.expect(args.gatherDivisor == 1, "gatherDivisor goes only with gatherRows");
    return gemmRows(args);
  }
  in.expectDType(args.gatherRows, "gatherRows", DType::Int32);
  in.expectShape(args.gatherRows, "gatherRows", {-1});
  in.expect(!args.inputScales.present(), "gatherRows does not go with inputScales (FP8 rows are permuted with their scales)");
  in.expect(args.gatherDivisor >= 1, "gatherDivisor must be at least 1");
  return gemmRows(args);
}

// ---- Ops ------------------------------------------------------------------------------------

// Routing's choice of experts for logits of `experts` columns (RoutingArgs, and the fused MoE op's
// copy of its fields): method, topK, renormalize, the group limit, scalingFactor, correctionBias.
template <typename Args>
void readRoutingRule(OpArgs& in, Args& args, int64_t experts) {
  args.correctionBias = in.optionalTensor("correctionBias");
  args.method = static_cast<RoutingMethod>(in.int32("method"));
  args.topK = in.int32("topK");
  args.renormalize = in.boolean("renormalize");
  args.numGroups = in.int32("numGroups");
  args.topkGroups = in.int32("topkGroups");
  args.scalingFactor = static_cast<float>(in.number("scalingFactor"));
  in.expect(args.method >= RoutingMethod::SoftmaxTopK && args.method <= RoutingMethod::SigmoidGroupTopK, "unknown method");
  in.expect(experts <= kMaxExperts, "more experts than kMaxExperts");
  in.expect(args.topK >= 1 && args.topK <= experts, "topK must be in [1, experts]");
  in.expect(args.numGroups >= 1 && experts % args.numGroups == 0, "numGroups must divide the expert count");
  in.expect(args.topkGroups >= 1 && args.topkGroups <= args.numGroups, "topkGroups must be in [1, numGroups]");
  // The group limit leaves topkGroups groups eligible: asking for more experts than they hold
  // would pick excluded or repeated experts.
  in.expect(args.method != RoutingMethod::SigmoidGroupTopK ||
                args.topK <= static_cast<int64_t>(args.topkGroups) * (experts / args.numGroups),
            "topK must be at most topkGroups * experts / numGroups (the experts the group limit leaves eligible)");
  if (args.correctionBias.present()) {
    in.expectShape(args.correctionBias, "correctionBias", {experts});
    in.expectDType(args.correctionBias, "correctionBias", DType::Float32);
  }
}

// Routing's outputs for `tokens` rows: topkIds, topkWeights [T, K] and expertCounts [E].
template <typename Args>
void checkRoutingOutputs(const OpArgs& in, const Args& args, int64_t tokens, int64_t experts) {
  in.expectShape(args.topkIds, "topkIds", {tokens, args.topK});
  in.expectDType(args.topkIds, "topkIds", DType::Int32);
  in.expectShape(args.topkWeights, "topkWeights", {tokens, args.topK});
  in.expectDType(args.topkWeights, "topkWeights", DType::Float32);
  in.expectShape(args.expertCounts, "expertCounts", {experts});
  in.expectDType(args.expertCounts, "expertCounts", DType::Int32);
}

// A GEMM's fused activation: `activation` an ActivationKind, or absent for none (then layout,
// alpha and limit are unread), for weights of `outFeatures` rows.
GemmActivation readGemmActivation(const OpArgs& in, int64_t outFeatures) {
  GemmActivation activation;
  const int32_t kind = in.optionalInt32("activation", -1);
  if (kind < 0) return activation;
  activation.enabled = true;
  activation.kind = static_cast<ActivationKind>(kind);
  activation.layout = static_cast<GateLayout>(in.int32("layout"));
  activation.alpha = static_cast<float>(in.number("alpha"));
  activation.limit = static_cast<float>(in.number("limit"));
  in.expect(activation.kind <= ActivationKind::ReLU, "unknown activation kind");
  in.expect(activation.layout == GateLayout::Halves || activation.layout == GateLayout::Interleaved, "unknown gate layout");
  in.expect(!isGated(activation.kind) || outFeatures % 2 == 0, "a gated activation needs an even number of weight rows");
  return activation;
}

void Routing(const Napi::CallbackInfo& info) {
  OpArgs in(info, "routing");
  RoutingArgs args;
  args.logits = in.tensor("logits");
  args.topkIds = in.output("topkIds");
  args.topkWeights = in.output("topkWeights");
  args.expertCounts = in.output("expertCounts");
  in.expectFloat(args.logits, "logits");
  in.expectShape(args.logits, "logits", {-1, -1});
  const int64_t tokens = args.logits.dim(0), experts = args.logits.dim(1);
  readRoutingRule(in, args, experts);
  checkRoutingOutputs(in, args, tokens, experts);
  in.enqueueOp(args, &Device::routing);
}

// Permute's rows, when it writes them (`permuted` given): input [T, H] float, or Float8E4M3 with
// inputScales (copied as they are, into FP8 rows); permuted [T*K, H] of input's dtype, or
// Float8E4M3 with permutedScales (quantized by the W8A8 rule).
void checkPermutedRows(const OpArgs& in, const PermuteArgs& args, int64_t tokens, int64_t pairs) {
  in.expectAbout(args.input.present(), "input", " is missing (permuted holds its rows)");
  in.expectShape(args.input, "input", {tokens, -1});
  const int64_t hidden = args.input.dim(1);
  if (args.input.dtype == DType::Float8E4M3) {
    expectRowScales(in, args.inputScales, "inputScales", args.input, "input");
    in.expectDType(args.permuted, "permuted", DType::Float8E4M3);
  } else {
    in.expectFloat(args.input, "input");
    in.expect(!args.inputScales.present(), "inputScales goes only with float8_e4m3 input rows");
  }
  in.expectShape(args.permuted, "permuted", {pairs, hidden});
  if (args.permuted.dtype == DType::Float8E4M3) {
    expectRowScales(in, args.permutedScales, "permutedScales", args.permuted, "permuted");
  } else {
    in.expectDType(args.permuted, "permuted", args.input.dtype);
    in.expect(!args.permutedScales.present(), "permutedScales goes only with float8_e4m3 permuted rows");
  }
}

void Permute(const Napi::CallbackInfo& info) {
  OpArgs in(info, "permute");
  PermuteArgs args;
  // Without `permuted` only the maps are written (for a GEMM that gathers the rows itself), and
  // the input rows, unread, may be left out.
  args.input = in.optionalTensor("input");
  args.inputScales = in.optionalTensor("inputScales");
  args.topkIds = in.tensor("topkIds");
  args.permuted = in.optionalOutput("permuted");
  args.permutedScales = in.optionalOutput("permutedScales");
  args.expertOffsets = in.output("expertOffsets");
  args.sourceToPermuted = in.output("sourceToPermuted");
  args.permutedToSource = in.output("permutedToSource");
  args.localExpertCount = in.int32("localExpertCount");
  args.firstExpert = in.optionalInt32("firstExpert", 0);
  args.totalExperts = in.optionalInt32("totalExperts", args.localExpertCount);

  in.expect(args.totalExperts <= kMaxExperts, "totalExperts is larger than kMaxExperts");
  in.expect(args.firstExpert >= 0 && static_cast<int64_t>(args.firstExpert) + args.localExpertCount <= args.totalExperts,
            "local experts must lie within [0, totalExperts)");
  in.expectShape(args.topkIds, "topkIds", {-1, -1});
  in.expectDType(args.topkIds, "topkIds", DType::Int32);
  const int64_t tokens = args.topkIds.dim(0), pairs = tokens * args.topkIds.dim(1);
  in.expect(args.localExpertCount >= 1, "localExpertCount must be positive");
  if (args.permuted.present()) {
    checkPermutedRows(in, args, tokens, pairs);
  } else {
    in.expect(!args.permutedScales.present(), "permutedScales goes only with permuted rows");
    // Unread, but still the op's argument: an input given must match the ids.
    if (args.input.present()) in.expectShape(args.input, "input", {tokens, -1});
  }
  in.expectShape(args.expertOffsets, "expertOffsets", {args.localExpertCount + 1});
  in.expectDType(args.expertOffsets, "expertOffsets", DType::Int32);
  in.expectShape(args.sourceToPermuted, "sourceToPermuted", {tokens, args.topkIds.dim(1)});
  in.expectDType(args.sourceToPermuted, "sourceToPermuted", DType::Int32);
  in.expectShape(args.permutedToSource, "permutedToSource", {pairs});
  in.expectDType(args.permutedToSource, "permutedToSource", DType::Int32);
  in.enqueueOp(args, &Device::permute, false);
}

void GroupedGemm(const Napi::CallbackInfo& info) {
  OpArgs in(info, "groupedGemm");
  GroupedGemmArgs args;
  args.input = in.tensor("input");
  args.inputScales = in.optionalTensor("inputScales");
  args.gatherRows = in.optionalTensor("gatherRows");
  args.gatherDivisor = in.optionalInt32("gatherDivisor", 1);
  args.weights = in.tensor("weights");
  args.weightScales = in.optionalTensor("weightScales");
  args.weightFormat = readWeightFormat(in, "weightFormat");
  args.bias = in.optionalTensor("bias");
  args.expertOffsets = in.tensor("expertOffsets");
  args.output = in.output("output");
  args.outputScales = in.optionalOutput("outputScales");

  in.expectShape(args.input, "input", {-1, -1});
  checkGemmInput(in, args.weightFormat, args.input, args.inputScales);
  const int64_t depth = args.input.dim(1);
  in.expectShape(args.weights, "weights", {-1, -1, -1});
  const int64_t rows = checkGatherRows(in, args), experts = args.weights.dim(0), outFeatures = args.weights.dim(1);
  args.weightGroupSize = checkGemmWeights(in, args.weightFormat, args.weights, "weights", args.weightScales, {experts}, depth);
  in.expect(experts <= kMaxExperts, "weights hold more experts than kMaxExperts");
  in.expectShape(args.expertOffsets, "expertOffsets", {experts + 1});
  in.expectDType(args.expertOffsets, "expertOffsets", DType::Int32);
  args.activation = readGemmActivation(in, outFeatures);
  args.maxRowsPerExpert = in.optionalInt32("maxRowsPerExpert", 0);
  const int64_t outWidth = args.activation.enabled && isGated(args.activation.kind) ? outFeatures / 2 : outFeatures;
  in.expectShape(args.output, "output", {rows, outWidth});
  checkGemmOutput(in, args.weightFormat, args.input, args.output, args.outputScales);
  expectOptionalBias(in, args.bias, "bias", {experts, outFeatures});
  in.enqueueOp(args, &Device::groupedGemm, false);
}

void Linear(const Napi::CallbackInfo& info) {
  OpArgs in(info, "linear");
  LinearArgs args;
  args.input = in.tensor("input");
  args.inputScales = in.optionalTensor("inputScales");
  args.weight = in.tensor("weight");
  args.weightScales = in.optionalTensor("weightScales");
  args.weightFormat = readWeightFormat(in, "weightFormat");
  args.bias = in.optionalTensor("bias");
  args.output = in.output("output");
  args.outputScales = in.optionalOutput("outputScales");

  in.expectShape(args.input, "input", {-1, -1});
  checkGemmInput(in, args.weightFormat, args.input, args.inputScales);
  const int64_t depth = args.input.dim(1);
  args.weightGroupSize = checkGemmWeights(in, args.weightFormat, args.weight, "weight", args.weightScales, {}, depth);
  in.expectShape(args.output, "output", {args.input.dim(0), args.weight.dim(0)});
  checkGemmOutput(in, args.weightFormat, args.input, args.output, args.outputScales);
  expectOptionalBias(in, args.bias, "bias", {args.weight.dim(0)});
  in.enqueueOp(args, &Device::linear);
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
  in.enqueueOp(args, &Device::activation);
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
  in.enqueueOp(args, &Device::combine);
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
  in.enqueueOp(args, &Device::cast);
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
  in.enqueueOp(args, &Device::fillRandom);
}

void QuantizeWeights(const Napi::CallbackInfo& info) {
  OpArgs in(info, "quantizeWeights");
  QuantizeWeightsArgs args;
  args.input = in.tensor("input");
  args.output = in.output("output");
  args.scales = in.output("scales");
  args.format = readWeightFormat(in, "format");

  in.expect(args.format == WeightFormat::Fp8Block128 || args.format == WeightFormat::Int8 || args.format == WeightFormat::Int4,
            "format must be Fp8Block128, Int8 or Int4");
  in.expectFloat(args.input, "input");
  const size_t rank = args.input.shape.size();
  in.expect(rank == 2 || rank == 3, "input must be [N, K] or [E, N, K]");
  const int64_t rows = args.input.shape[rank - 2], depth = args.input.shape[rank - 1];
  args.groupSize = readWeightGroupSize(in, "groupSize", args.format, depth);
  std::vector<int64_t> lead(args.input.shape.begin(), args.input.shape.end() - 2);
  std::vector<int64_t> scaleShape = lead;
  if (args.format == WeightFormat::Fp8Block128) {
    in.expectDType(args.output, "output", DType::Float8E4M3);
    in.expect(args.output.shape == args.input.shape, "output must have the shape of input");
    scaleShape.insert(scaleShape.end(), {fp8Blocks(rows), fp8Blocks(depth)});
  } else {
    in.expect(args.format != WeightFormat::Int4 || depth % 2 == 0, "Int4 weights need an even K");
    in.expectDType(args.output, "output", DType::UInt8);
    std::vector<int64_t> outputShape = lead;
    outputShape.insert(outputShape.end(), {rows, weightRowBytes(args.format, depth)});
    in.expectShape(args.output, "output", outputShape);
    scaleShape.insert(scaleShape.end(), {rows, weightScaleGroups(args.format, args.groupSize, depth)});
  }
  in.expectDType(args.scales, "scales", DType::Float32);
  in.expectShape(args.scales, "scales", scaleShape);
  in.enqueueOp(args, &Device::quantizeWeights);
}

void AddInt32(const Napi::CallbackInfo& info) {
  OpArgs in(info, "addInt32");
  AddInt32Args args;
  args.input = in.tensor("input");
  args.accumulator = in.inPlace("accumulator");
  in.expectDType(args.input, "input", DType::Int32);
  in.expectDType(args.accumulator, "accumulator", DType::Int32);
  in.expect(args.input.numel() == args.accumulator.numel(), "input and accumulator sizes differ");
  in.enqueueOp(args, &Device::addInt32, false);
}

void ExpertSlots(const Napi::CallbackInfo& info) {
  OpArgs in(info, "expertSlots");
  ExpertSlotsArgs args;
  args.topkIds = in.tensor("topkIds");
  args.replicaOffsets = in.tensor("replicaOffsets");
  args.replicaSlots = in.tensor("replicaSlots");
  args.slotIds = in.output("slotIds");
  in.expectDType(args.topkIds, "topkIds", DType::Int32);
  in.expectDType(args.replicaOffsets, "replicaOffsets", DType::Int32);
  in.expectDType(args.replicaSlots, "replicaSlots", DType::Int32);
  in.expectDType(args.slotIds, "slotIds", DType::Int32);
  in.expectShape(args.topkIds, "topkIds", {-1, -1});
  in.expectShape(args.slotIds, "slotIds", {args.topkIds.dim(0), args.topkIds.dim(1)});
  in.expectShape(args.replicaOffsets, "replicaOffsets", {-1});
  in.expectShape(args.replicaSlots, "replicaSlots", {-1});
  in.expect(args.replicaOffsets.dim(0) >= 2, "replicaOffsets needs an entry per expert and one past the last");
  in.expect(args.replicaSlots.dim(0) >= args.replicaOffsets.dim(0) - 1, "replicaSlots needs a replica per expert at least");
  in.enqueueOp(args, &Device::expertSlots);
}

void FusedMoe(const Napi::CallbackInfo& info) {
  OpArgs in(info, "fusedMoe");
  FusedMoeArgs args;
  args.input = in.tensor("input");
  args.routerWeight = in.tensor("routerWeight");
  args.routerBias = in.optionalTensor("routerBias");
  args.w13 = in.tensor("w13");
  args.w13Bias = in.optionalTensor("w13Bias");
  args.w2 = in.tensor("w2");
  args.w2Bias = in.optionalTensor("w2Bias");
  args.topkIds = in.output("topkIds");
  args.topkWeights = in.output("topkWeights");
  args.expertCounts = in.output("expertCounts");
  args.output = in.output("output");

  in.expectShape(args.input, "input", {-1, -1});
  in.expect(args.input.dtype == DType::BFloat16 || args.input.dtype == DType::Float16, "input must be bfloat16 or float16");
  const DType dtype = args.input.dtype;
  const int64_t tokens = args.input.dim(0), hidden = args.input.dim(1);
  in.expectShape(args.w13, "w13", {-1, -1, hidden});
  in.expectDType(args.w13, "w13", dtype);
  const int64_t experts = args.w13.dim(0), up = args.w13.dim(1);
  in.expectShape(args.routerWeight, "routerWeight", {experts, hidden});
  in.expectDType(args.routerWeight, "routerWeight", dtype);
  expectOptionalBias(in, args.routerBias, "routerBias", {experts});
  readRoutingRule(in, args, experts);
  args.activation = readGemmActivation(in, up);
  in.expect(args.activation.enabled, "activation is required (the first GEMM's)");
  const int64_t intermediate = isGated(args.activation.kind) ? up / 2 : up;
  expectOptionalBias(in, args.w13Bias, "w13Bias", {experts, up});
  in.expectShape(args.w2, "w2", {experts, hidden, intermediate});
  in.expectDType(args.w2, "w2", dtype);
  expectOptionalBias(in, args.w2Bias, "w2Bias", {experts, hidden});
  checkRoutingOutputs(in, args, tokens, experts);
  in.expectShape(args.output, "output", {tokens, hidden});
  in.expectDType(args.output, "output", dtype);
  in.enqueueOp(args, &Device::fusedMoe);
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
  exports.Set("quantizeWeights", Napi::Function::New<QuantizeWeights>(env, "quantizeWeights"));
  exports.Set("addInt32", Napi::Function::New<AddInt32>(env, "addInt32"));
  exports.Set("expertSlots", Napi::Function::New<ExpertSlots>(env, "expertSlots"));
  exports.Set("fusedMoe", Napi::Function::New<FusedMoe>(env, "fusedMoe"));
}

}  // namespace moekit::binding
