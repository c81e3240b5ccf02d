// The FP8 half of the native CUDA harness (harness.h): float8_e4m3 activations and FP8
// block-scaled weights (native/core/op_args.h, "Quantized weights and activations") in every op
// that takes them, against the CPU reference backend.
//
// - cast to and from float8_e4m3: bit for bit (round to nearest even, saturation, subnormals);
// - weights quantized at load in 128 × 128 blocks: bit for bit against the rule on the host;
// - permute writing FP8 rows and their scales: bit for bit (the same float operations on both
//   sides: amax / 448, then x / scale rounded once);
// - grouped GEMM and linear with Fp8Block128 weights: float or FP8 input, float or FP8 output
//   (compared after dequantizing), bias, fused activations, odd K and N, empty experts, 1 to 4096
//   rows. Which family runs depends on MOEKIT_GEMM (run the harness once per family);
// - a whole FP8 MoE pass (permute → gate/up GEMM with SwiGLU and FP8 output → down GEMM → combine).
//
// Tolerances (norm-relative, against the CPU's W8A8 results): the quantized operands are the same
// bits on both sides, so what differs is float32 summation order and, on Hopper, the FP8 tensor
// cores' reduced-precision sums inside each 128-wide block of K (about 1e-4): 1e-3 for float32
// outputs, the dtype's rounding for 16-bit ones, and 1.5e-2 (the fixture target) for FP8 outputs,
// where a sum that differs by that much can round to the neighbouring e4m3 value.
#include <cstdint>
#include <vector>

#include "core/dtype.h"
#include "cpu/kernels.h"
#include "cuda/kernels.h"
#include "cuda/quantize.h"
#include "harness.h"

namespace moekit::harness {
namespace {

constexpr int64_t kBlock = kFp8BlockSize;

int64_t blocks(int64_t extent) { return fp8Blocks(extent); }

// ---- The W8A8 rule on the host ---------------------------------------------------------------------
struct Quantized {
  Tensor values;  // Float8E4M3
  Tensor scales;  // float32
};

// The e4m3 value and the scale of one group whose largest magnitude is `amax`.
float groupScale(float amax) { return amax / kFloat8E4M3Max; }
uint8_t quantizeValue(float value, float scale) { return scale == 0.0f ? uint8_t{0} : floatToFloat8e4m3(value / scale); }

// The rows of a [rows, width] float tensor in groups of 128 columns, as activations are quantized.
Quantized quantizeRowsOnHost(const Tensor& source) {
  const int64_t rows = source.shape[0], width = source.shape[1];
  Quantized q{Tensor(DType::Float8E4M3, {rows, width}), Tensor(DType::Float32, {rows, blocks(width)})};
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t g = 0; g < blocks(width); ++g) {
      const int64_t end = std::min(width, (g + 1) * kBlock);
      float amax = 0.0f;
      for (int64_t c = g * kBlock; c < end; ++c) amax = std::max(amax, std::fabs(source.get(r * width + c)));
      const float scale = groupScale(amax);
      q.scales.set(r * blocks(width) + g, scale);
      for (int64_t c = g * kBlock; c < end; ++c) q.values.host[r * width + c] = quantizeValue(source.get(r * width + c), scale);
    }
  }
  return q;
}

// The 128 × 128 blocks of each [N, K] matrix of a [N, K] or [E, N, K] float tensor, as FP8
// checkpoints publish weights: scales [(E,) ceil(N/128), ceil(K/128)].
Quantized quantizeBlocksOnHost(const Tensor& source) {
  const bool grouped = source.shape.size() == 3;
  const int64_t experts = grouped ? source.shape[0] : 1;
  const int64_t rows = source.shape[grouped ? 1 : 0], depth = source.shape[grouped ? 2 : 1];
  std::vector<int64_t> scaleShape = {blocks(rows), blocks(depth)};
  if (grouped) scaleShape.insert(scaleShape.begin(), experts);
  Quantized q{Tensor(DType::Float8E4M3, source.shape), Tensor(DType::Float32, scaleShape)};
  for (int64_t e = 0; e < experts; ++e) {
    for (int64_t rb = 0; rb < blocks(rows); ++rb) {
      for (int64_t kb = 0; kb < blocks(depth); ++kb) {
        const int64_t rowEnd = std::min(rows, (rb + 1) * kBlock), depthEnd = std::min(depth, (kb + 1) * kBlock);
        const auto at = [&](int64_t r, int64_t k) { return (e * rows + r) * depth + k; };
        float amax = 0.0f;
        for (int64_t r = rb * kBlock; r < rowEnd; ++r) {
          for (int64_t k = kb * kBlock; k < depthEnd; ++k) amax = std::max(amax, std::fabs(source.get(at(r, k))));
        }
        const float scale = groupScale(amax);
        q.scales.set((e * blocks(rows) + rb) * blocks(depth) + kb, scale);
        for (int64_t r = rb * kBlock; r < rowEnd; ++r) {
          for (int64_t k = kb * kBlock; k < depthEnd; ++k) q.values.host[at(r, k)] = quantizeValue(source.get(at(r, k)), scale);
        }
      }
    }
  }
  return q;
}

// q × scale of a [rows, width] FP8 tensor with its row-group scales, as float32.
Tensor dequantizeRows(const Tensor& values, const Tensor& scales) {
  const int64_t rows = values.shape[0], width = values.shape[1];
  Tensor result(DType::Float32, {rows, width});
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < width; ++c) {
      result.set(r * width + c, values.get(r * width + c) * scales.get(r * blocks(width) + c / kBlock));
    }
  }
  return result;
}

double fp8Tolerance(DType output) {
  switch (output) {
    case DType::Float8E4M3: return 1.5e-2;
    case DType::BFloat16: return toleranceFor(DType::BFloat16);
    case DType::Float16: return toleranceFor(DType::Float16);
    default: return 1e-3;
  }
}

// ---- cast ------------------------------------------------------------------------------------------------
// Values across e4m3's range: log-uniform magnitudes from below its smallest subnormal to past
// its largest value, every midpoint between neighbouring e4m3 values (ties round to even), and
// 448, 464 (the midpoint to the next binade: saturates), infinities and signed zeros.
void testCastToFp8(DType from) {
  std::vector<float> values = {0.0f, -0.0f, 448.0f, -448.0f, 464.0f, 480.0f, -1e6f, INFINITY, -INFINITY, 0x1p-10f, 0x1p-11f};
  for (int bits = 0; bits < 0x7e; ++bits) {
    const float low = float8e4m3ToFloat(static_cast<uint8_t>(bits)), high = float8e4m3ToFloat(static_cast<uint8_t>(bits + 1));
    values.push_back((low + high) / 2);
    values.push_back(-(low + high) / 2);
  }
  constexpr int kRandomValues = 4000;
  for (int i = 0; i < kRandomValues; ++i) {
    const float exponent = -12.0f + 22.0f * uniformHash(71, i);  // 2^-12 .. 2^10
    const float sign = uniformHash(72, i) < 0.5f ? -1.0f : 1.0f;
    values.push_back(sign * std::exp2(exponent));
  }
  const int64_t count = static_cast<int64_t>(values.size());
  Tensor input(from, {count});
  for (int64_t i = 0; i < count; ++i) input.set(i, values[i]);
  Tensor output[2] = {Tensor(DType::Float8E4M3, {count}), Tensor(DType::Float8E4M3, {count})};
  for (int side = 0; side < 2; ++side) {
    const bool gpu = side == 1;
    CastArgs args;
    args.input = gpu ? input.deviceView() : input.hostView();
    args.output = gpu ? output[side].deviceView() : output[side].hostView();
    if (gpu) {
      cuda::cast(args, gStream);
    } else {
      cpu::cast(args);
    }
  }
  expectSameBytes("cast", from, describe("%lld values -> float8_e4m3 (ties, saturation, subnormals)", static_cast<long long>(count)),
                  output[1].fromDevice(), output[0]);
}

// Every e4m3 value but the NaNs (0x7f, 0xff), to each float dtype (all exact).
void testCastFromFp8(DType to) {
  constexpr int64_t kRepeats = 5;
  Tensor input(DType::Float8E4M3, {256 * kRepeats});
  int64_t count = 0;
  for (int64_t r = 0; r < kRepeats; ++r) {
    for (int bits = 0; bits < 256; ++bits) {
      if ((bits & 0x7f) != 0x7f) input.host[count++] = static_cast<uint8_t>(bits);
    }
  }
  input.shape = {count};
  input.host.resize(count);
  Tensor output[2] = {Tensor(to, {count}), Tensor(to, {count})};
  for (int side = 0; side < 2; ++side) {
    const bool gpu = side == 1;
    CastArgs args;
    args.input = gpu ? input.deviceView() : input.hostView();
    args.output = gpu ? output[side].deviceView() : output[side].hostView();
    if (gpu) {
      cuda::cast(args, gStream);
    } else {
      cpu::cast(args);
    }
  }
  expectSameBytes("cast", DType::Float8E4M3, describe("every e4m3 value -> %s", dtypeName(to)), output[1].fromDevice(), output[0]);
}

// ---- Weights quantized at load (cuda::quantizeWeightBlocks) -------------------------------------------
// Against the host's rule (quantizeBlocksOnHost), bit for bit; a block of zeros has scale 0.
void testQuantizeWeights(DType dtype, std::vector<int64_t> shape) {
  Tensor weights = randomTensor(dtype, shape, 91, 0.2f);
  const int64_t cols = shape.back();
  for (int64_t c = 0; c < std::min<int64_t>(kBlock, cols); ++c) {
    for (int64_t r = 0; r < std::min<int64_t>(kBlock, shape[shape.size() - 2]); ++r) weights.set(r * cols + c, 0.0f);
  }
  const Quantized expected = quantizeBlocksOnHost(weights);
  Tensor values = sentinelTensor(DType::Float8E4M3, shape);
  Tensor scales = sentinelTensor(DType::Float32, expected.scales.shape);
  cuda::quantizeWeightBlocks(weights.deviceView(), values.deviceView(), scales.deviceView(), gStream);
  std::string dims;
  for (int64_t extent : shape) dims += (dims.empty() ? "" : "x") + std::to_string(extent);
  expectSameBytes("quantizeWeights", dtype, dims + " values", values.fromDevice(), expected.values);
  expectSameBytes("quantizeWeights", dtype, dims + " scales", scales.fromDevice(), expected.scales);
}

// ---- permute ---------------------------------------------------------------------------------------------
struct Fp8PermuteCase {
  int64_t tokens;
  int64_t hidden;
  int32_t totalExperts;
  int32_t topK;
  int32_t firstExpert;
  int32_t localExperts;
};

// inputType a float dtype: the rows are quantized on the way; Float8E4M3: FP8 rows that carry their
// scales (quantized here), which permute copies with them (wide EP's owner).
void testPermuteFp8(DType inputType, const Fp8PermuteCase& c) {
  const int64_t pairs = c.tokens * c.topK;
  const bool fp8Input = inputType == DType::Float8E4M3;
  Tensor input = randomTensor(fp8Input ? DType::Float32 : inputType, {c.tokens, c.hidden}, 4, 3.0f);
  // A group of zeros (scale 0, q 0) and a group with one large value among small ones.
  if (c.tokens > 0) {
    for (int64_t col = 0; col < std::min<int64_t>(kBlock, c.hidden); ++col) input.set(col, 0.0f);
    if (c.tokens > 1) input.set(c.hidden, 1000.0f);
  }
  Tensor inputScales;
  if (fp8Input) {
    Quantized q = quantizeRowsOnHost(input);
    input = std::move(q.values);
    inputScales = std::move(q.scales);
  }
  Tensor ids = makeIds(c.tokens, c.topK, c.totalExperts, IdPattern::Distinct, 11);
  Tensor permuted[2] = {sentinelTensor(DType::Float8E4M3, {pairs, c.hidden}), sentinelTensor(DType::Float8E4M3, {pairs, c.hidden})};
  Tensor scales[2] = {sentinelTensor(DType::Float32, {pairs, blocks(c.hidden)}), sentinelTensor(DType::Float32, {pairs, blocks(c.hidden)})};
  Tensor offsets[2] = {Tensor(DType::Int32, {c.localExperts + 1}), Tensor(DType::Int32, {c.localExperts + 1})};
  Tensor toPermuted[2] = {Tensor(DType::Int32, {c.tokens, c.topK}), Tensor(DType::Int32, {c.tokens, c.topK})};
  Tensor toSource[2] = {sentinelTensor(DType::Int32, {pairs}), sentinelTensor(DType::Int32, {pairs})};
  for (int side = 0; side < 2; ++side) {
    const bool gpu = side == 1;
    const auto view = [&](Tensor& t) { return gpu ? t.deviceView() : t.hostView(); };
    PermuteArgs args;
    args.input = view(input);
    if (fp8Input) args.inputScales = view(inputScales);
    args.topkIds = view(ids);
    args.permuted = view(permuted[side]);
    args.permutedScales = view(scales[side]);
    args.expertOffsets = view(offsets[side]);
    args.sourceToPermuted = view(toPermuted[side]);
    args.permutedToSource = view(toSource[side]);
    args.localExpertCount = c.localExperts;
    args.firstExpert = c.firstExpert;
    args.totalExperts = c.totalExperts;
    if (gpu) {
      cuda::permute(args, gStream);
    } else {
      cpu::permute(args);
    }
  }
  const std::string what = describe("T=%lld H=%lld E=%d K=%d local [%d, %d) -> float8_e4m3", static_cast<long long>(c.tokens),
                                    static_cast<long long>(c.hidden), c.totalExperts, c.topK, c.firstExpert,
                                    c.firstExpert + c.localExperts);
  expectSameBytes("permute.offsets", inputType, what, offsets[1].fromDevice(), offsets[0]);
  expectSameBytes("permute.srcToPerm", inputType, what, toPermuted[1].fromDevice(), toPermuted[0]);
  expectSameBytes("permute.permToSrc", inputType, what, toSource[1].fromDevice(), toSource[0]);
  expectSameBytes("permute.fp8rows", inputType, what, permuted[1].fromDevice(), permuted[0]);
  expectSameBytes("permute.scales", inputType, what, scales[1].fromDevice(), scales[0]);
}

// ---- Grouped GEMM and linear ---------------------------------------------------------------------------
struct Fp8GemmCase {
  GemmCase shape;
  DType input;   // a float dtype (quantized by the op) or Float8E4M3 (quantized here, with scales)
  DType output;  // a float dtype or Float8E4M3 (with scales)
};

void testGemmFp8(const Fp8GemmCase& fp8Case) {
  const GemmCase& c = fp8Case.shape;
  const bool grouped = c.experts > 0;
  const bool fp8Input = fp8Case.input == DType::Float8E4M3;
  const bool fp8Output = fp8Case.output == DType::Float8E4M3;
  Tensor input = randomTensor(fp8Input ? DType::Float32 : fp8Case.input, {c.rows, c.depth}, 21, 1.0f);
  Tensor inputScales;
  if (fp8Input) {
    Quantized q = quantizeRowsOnHost(input);
    input = std::move(q.values);
    inputScales = std::move(q.scales);
  }
  Quantized weights = quantizeBlocksOnHost(grouped ? randomTensor(DType::Float32, {c.experts, c.cols, c.depth}, 22, 0.1f)
                                                   : randomTensor(DType::Float32, {c.cols, c.depth}, 22, 0.1f));
  Tensor bias = grouped ? randomTensor(DType::BFloat16, {c.experts, c.cols}, 23, 1.0f) : randomTensor(DType::BFloat16, {c.cols}, 23, 1.0f);
  Tensor offsets = grouped ? makeOffsets(c.rows, c.experts, c.lead, c.tail, 24) : Tensor();
  const int64_t outCols = caseOutputCols(c);
  Tensor output[2] = {sentinelTensor(fp8Case.output, {c.rows, outCols}), sentinelTensor(fp8Case.output, {c.rows, outCols})};
  Tensor outputScales[2] = {sentinelTensor(DType::Float32, {c.rows, blocks(outCols)}),
                            sentinelTensor(DType::Float32, {c.rows, blocks(outCols)})};
  for (int side = 0; side < 2; ++side) {
    const bool gpu = side == 1;
    const auto view = [&](Tensor& t) { return gpu ? t.deviceView() : t.hostView(); };
    if (grouped) {
      GroupedGemmArgs args;
      args.input = view(input);
      if (fp8Input) args.inputScales = view(inputScales);
      args.weights = view(weights.values);
      args.weightScales = view(weights.scales);
      args.weightFormat = WeightFormat::Fp8Block128;
      setCaseArgs(args, c, view(bias), view(offsets), view(output[side]));
      if (fp8Output) args.outputScales = view(outputScales[side]);
      runOn(gpu, args);
    } else {
      LinearArgs args;
      args.input = view(input);
      if (fp8Input) args.inputScales = view(inputScales);
      args.weight = view(weights.values);
      args.weightScales = view(weights.scales);
      args.weightFormat = WeightFormat::Fp8Block128;
      setCaseArgs(args, c, view(bias), view(output[side]));
      if (fp8Output) args.outputScales = view(outputScales[side]);
      runOn(gpu, args);
    }
  }
  const std::string what = describe("%s M=%lld K=%lld N=%lld E=%d%s%s%s in %s out %s", grouped ? "grouped" : "linear",
                                    static_cast<long long>(c.rows), static_cast<long long>(c.depth), static_cast<long long>(c.cols),
                                    c.experts, c.bias ? " bias" : "", activationLabel(c).c_str(), rowsHintLabel(c).c_str(),
                                    dtypeName(fp8Case.input), dtypeName(fp8Case.output));
  const std::string op = grouped ? "fp8 groupedGemm" : "fp8 linear";
  if (fp8Output) {
    expectClose(op, fp8Case.input, what, dequantizeRows(output[1].fromDevice(), outputScales[1].fromDevice()),
                dequantizeRows(output[0], outputScales[0]), fp8Tolerance(DType::Float8E4M3));
  } else {
    expectClose(op, fp8Case.input, what, output[1].fromDevice(), output[0], fp8Tolerance(fp8Case.output));
  }
}

// ---- A whole FP8 MoE pass --------------------------------------------------------------------------------
// permute (bf16 tokens → FP8 rows) → gate/up GEMM (SwiGLU fused, FP8 output) → down GEMM (bf16
// output) → combine, as a layer with FP8 experts runs it, with the layer's decode hint.
struct Fp8LayerCase {
  int64_t tokens;
  int64_t hidden;
  int64_t inter;
  int32_t experts;
  int32_t topK;
};

void testFp8Layer(const Fp8LayerCase& c) {
  const int64_t pairs = c.tokens * c.topK, H = c.hidden, I = c.inter, E = c.experts;
  Tensor x = randomTensor(DType::BFloat16, {c.tokens, H}, 81, 1.0f);
  Tensor ids = makeIds(c.tokens, c.topK, c.experts, IdPattern::Distinct, 82);
  Tensor topkWeights = randomTensor(DType::Float32, {c.tokens, c.topK}, 83, 1.0f);
  Quantized w13 = quantizeBlocksOnHost(randomTensor(DType::Float32, {E, 2 * I, H}, 84, 0.05f));
  Quantized w2 = quantizeBlocksOnHost(randomTensor(DType::Float32, {E, H, I}, 85, 0.05f));
  struct Side {
    Tensor permuted, permutedScales, offsets, toPermuted, toSource, middle, middleScales, down, output;
  };
  Side sides[2];
  for (Side& s : sides) {
    s.permuted = Tensor(DType::Float8E4M3, {pairs, H});
    s.permutedScales = Tensor(DType::Float32, {pairs, blocks(H)});
    s.offsets = Tensor(DType::Int32, {E + 1});
    s.toPermuted = Tensor(DType::Int32, {c.tokens, c.topK});
    s.toSource = Tensor(DType::Int32, {pairs});
    s.middle = Tensor(DType::Float8E4M3, {pairs, I});
    s.middleScales = Tensor(DType::Float32, {pairs, blocks(I)});
    s.down = Tensor(DType::BFloat16, {pairs, H});
    s.output = Tensor(DType::Float32, {c.tokens, H});
  }
  for (int side = 0; side < 2; ++side) {
    const bool gpu = side == 1;
    Side& s = sides[side];
    const auto view = [&](Tensor& t) { return gpu ? t.deviceView() : t.hostView(); };
    PermuteArgs permute;
    permute.input = view(x);
    permute.topkIds = view(ids);
    permute.permuted = view(s.permuted);
    permute.permutedScales = view(s.permutedScales);
    permute.expertOffsets = view(s.offsets);
    permute.sourceToPermuted = view(s.toPermuted);
    permute.permutedToSource = view(s.toSource);
    permute.localExpertCount = permute.totalExperts = c.experts;
    GroupedGemmArgs up;
    up.input = permute.permuted;
    up.inputScales = permute.permutedScales;
    up.weights = view(w13.values);
    up.weightScales = view(w13.scales);
    up.weightFormat = WeightFormat::Fp8Block128;
    up.expertOffsets = permute.expertOffsets;
    up.output = view(s.middle);
    up.outputScales = view(s.middleScales);
    up.activation.enabled = true;
    up.activation.kind = ActivationKind::SwiGLU;
    up.maxRowsPerExpert = c.tokens;
    GroupedGemmArgs down;
    down.input = up.output;
    down.inputScales = up.outputScales;
    down.weights = view(w2.values);
    down.weightScales = view(w2.scales);
    down.weightFormat = WeightFormat::Fp8Block128;
    down.expertOffsets = permute.expertOffsets;
    down.output = view(s.down);
    down.maxRowsPerExpert = c.tokens;
    CombineArgs combine;
    combine.expertOutput = down.output;
    combine.topkWeights = view(topkWeights);
    combine.sourceToPermuted = permute.sourceToPermuted;
    combine.output = view(s.output);
    if (gpu) {
      cuda::permute(permute, gStream);
      cuda::groupedGemm(up, gStream);
      cuda::groupedGemm(down, gStream);
      cuda::combine(combine, gStream);
    } else {
      cpu::permute(permute);
      cpu::groupedGemm(up);
      cpu::groupedGemm(down);
      cpu::combine(combine);
    }
  }
  const std::string what = describe("T=%lld H=%lld I=%lld E=%d K=%d bf16 tokens, FP8 experts", static_cast<long long>(c.tokens),
                                    static_cast<long long>(H), static_cast<long long>(I), c.experts, c.topK);
  expectClose("fp8 layer.mid", DType::BFloat16, what,
              dequantizeRows(sides[1].middle.fromDevice(), sides[1].middleScales.fromDevice()),
              dequantizeRows(sides[0].middle, sides[0].middleScales), fp8Tolerance(DType::Float8E4M3));
  expectClose("fp8 layer.out", DType::BFloat16, what, sides[1].output.fromDevice(), sides[0].output, fp8Tolerance(DType::Float8E4M3));
}

// Whether this build's CPU backend computes FP8 (the reference every check below compares with).
// One without it refuses Fp8Block128 weights with E_DTYPE, and would write bfloat16 rows into an
// FP8 permute output, so its absence skips those checks, saying so, rather than running them.
bool cpuHasFp8Reference(std::string* why) {
  constexpr int64_t kSide = 16;
  Tensor input = randomTensor(DType::Float32, {1, kSide}, 1, 1.0f);
  Quantized weights = quantizeBlocksOnHost(randomTensor(DType::Float32, {1, kSide, kSide}, 2, 1.0f));
  Tensor offsets(DType::Int32, {2});
  offsets.ints()[1] = 1;
  Tensor output(DType::Float32, {1, kSide});
  GroupedGemmArgs args;
  args.input = input.hostView();
  args.weights = weights.values.hostView();
  args.weightScales = weights.scales.hostView();
  args.weightFormat = WeightFormat::Fp8Block128;
  args.expertOffsets = offsets.hostView();
  args.output = output.hostView();
  try {
    cpu::groupedGemm(args);
    return true;
  } catch (const NativeError& error) {
    *why = error.code() + ": " + error.what();
    return false;
  }
}

}  // namespace

void runFp8Tests() {
  for (DType dtype : kFloatDTypes) {
    testCastToFp8(dtype);
    testCastFromFp8(dtype);
  }
  testCastFromFp8(DType::Float8E4M3);  // same dtype: a copy
  for (DType dtype : kFloatDTypes) {
    testQuantizeWeights(dtype, {3, 300, 200});  // partial blocks on both edges
    testQuantizeWeights(dtype, {256, 384});
  }

  std::string why;
  if (!cpuHasFp8Reference(&why)) {
    std::printf("SKIP  FP8 permute, grouped GEMM, linear and layer checks: this build's CPU backend has no FP8 "
                "reference (%s)\n", why.c_str());
    return;
  }

  const Fp8PermuteCase permuteCases[] = {
      {1, 384, 8, 2, 0, 8},                              // decode, one-block sort
      {257, 200, 16, 4, 0, 16},                          // H not a multiple of 128 (or of 4: scalar loads)
      {300, 516, 16, 4, 4, 8},                           // expert parallel, H % 128 = 4
      {gQuick ? 600 : 3000, 1024, 64, 8, 0, 64},         // general sort
      {0, 256, 8, 2, 0, 8},                              // no tokens
  };
  for (DType dtype : kFloatDTypes) {
    for (const Fp8PermuteCase& c : permuteCases) testPermuteFp8(dtype, c);
  }
  for (const Fp8PermuteCase& c : permuteCases) testPermuteFp8(DType::Float8E4M3, c);

  const DType fp8 = DType::Float8E4M3;
  const int64_t bigRows = gQuick ? 512 : 4096;
  const Fp8GemmCase gemmCases[] = {
      // Decode (small_m on its own): 1 token × top-8, 16 tokens, two passes over one expert's rows.
      {{8, 512, 768, 8, false, 0, 0, kSwiGLU, GateLayout::Halves, 1}, fp8, fp8},
      {{8, 384, 512, 8, false, 0, 0, -1, GateLayout::Halves, 1}, fp8, DType::BFloat16},
      {{64, 512, 768, 8, false, 0, 2, kSwiGLU, GateLayout::Halves, 16}, fp8, fp8},
      {{64, 384, 512, 8, true, 0, 0, -1, GateLayout::Halves, 16}, fp8, DType::Float32},
      {{70, 256, 64, 2, false, 0, 0, -1, GateLayout::Halves, 64}, DType::BFloat16, DType::Float32},
      {{24, 208, 96, 4, false, 2, 0, kSwiGLU, GateLayout::Interleaved, 8}, DType::Float16, fp8},  // K = 13 · 16
      {{16, 2048, 256, 8, false, 0, 0, -1, GateLayout::Halves, 2}, fp8, DType::BFloat16},       // long K
      // Prefill (sm90 on Hopper): the wide tile's fused, quantized SwiGLU; the narrow tile.
      {{bigRows, 1024, 1536, 8, false, 0, 0, kSwiGLU}, fp8, fp8},
      {{bigRows, 768, 1024, 8, false, 0, 0}, fp8, DType::BFloat16},
      {{3000, 256, 384, 8, true, 5, 9, kSwiGLU}, DType::Float32, fp8},  // up rows start mid-block (N/2 = 192)
      {{3000, 320, 400, 8, true, 0, 0, kSwiGLU}, fp8, DType::BFloat16},  // K = 2.5 blocks, N/2 = 200
      {{1500, 336, 336, 6, true, 2, 2, kGptOss, GateLayout::Interleaved}, fp8, fp8},  // 168 outputs: a partial group
      {{1500, 128, 400, 5, true, 0, 0, kGeGLU, GateLayout::Interleaved}, DType::BFloat16, DType::BFloat16},
      {{1500, 128, 272, 5, true, 0, 0, kSiLU}, DType::BFloat16, fp8},  // plain activation, groups of 128 + 16
      {{1500, 128, 272, 5, false, 0, 0}, fp8, DType::Float16},
      {{2000, 256, 256, 64, false, 7, 5}, fp8, DType::Float32},  // many experts, expert 1 empty; narrow tile
      {{gQuick ? 1000 : 4000, 128, 128, 200, true, 0, 0, kSwiGLU}, fp8, fp8},  // 200 experts of ~20 rows
      {{100, 256, 512, 2, true, 3, 3, kSwiGLU}, fp8, DType::BFloat16},  // fewer rows than a tile
      {{1, 256, 256, 8, false, 0, 0}, fp8, DType::Float32},            // one row in all
      // Shapes only the mma family takes (K not a multiple of 16, N not of 16).
      {{300, 200, 72, 4, true, 0, 0}, DType::Float32, DType::Float32},
      {{257, 100, 36, 3, true, 1, 1, kSwiGLU}, DType::BFloat16, fp8},
      {{1028, 136, 100, 8, false, 3, 5, kGeGLU}, fp8, DType::BFloat16},
      // Linear (one expert, no offsets): decode through small_m, prefill through sm90, odd shapes.
      {{1, 512, 384, 0, true, 0, 0}, fp8, DType::Float32},
      {{16, 7168, 256, 0, false, 0, 0}, DType::BFloat16, DType::BFloat16},
      {{1000, 512, 384, 0, true, 0, 0}, fp8, DType::BFloat16},
      {{bigRows, 256, 128, 0, false, 0, 0}, fp8, fp8},
      {{300, 200, 72, 0, false, 0, 0}, DType::Float32, fp8},
  };
  for (const Fp8GemmCase& c : gemmCases) testGemmFp8(c);

  const Fp8LayerCase layerCases[] = {
      {1, 512, 384, 8, 2},      // Mixtral-like decode
      {16, 256, 320, 16, 4},    // I not a multiple of 128
      {300, 1024, 1536, 8, 2},  // prefill, few experts
      {gQuick ? 256 : 2048, 512, 256, 64, 8},  // fine-grained experts
  };
  for (const Fp8LayerCase& c : layerCases) testFp8Layer(c);
}

}  // namespace moekit::harness
