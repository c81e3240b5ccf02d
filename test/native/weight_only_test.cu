// The weight-only half of the native CUDA harness (harness.h): Int8, Int4 and MXFP4 packed
// weights (native/core/op_args.h, "The weight-only rule") in the grouped GEMM and linear, and the
// Int8 / Int4 quantizer.
//
// - quantizeWeights Int8 / Int4 (groups of 32, 128, per channel; a partial last group; groups of
//   zeros, with a NaN, with an infinity): bit for bit against the rule written here on the host;
// - grouped GEMM and linear: against a host reference written here, w = q × scale in float32
//   rounded to the input's 16-bit dtype as the contract says the CUDA backend does, then the CPU
//   backend's dense float32 GEMM (bias, activation) on those weights. What differs is summation
//   order and the output's rounding, so the dtype's usual tolerance applies. Odd sizes: K a
//   multiple of 32 but not 128, a partial last group, K and N that only the dense fallback takes,
//   empty experts, 1 to ~300 rows, rows outside the offsets, every activation and gate layout;
//   every scale stage of the decode kernel (group sizes 0, 32, 64, 128, 256) and MXFP4 with
//   e8m0 codes over 80 binades. Results of scales applied after the mma are more exact than
//   the reference's rounded w: inside the dtype's tolerance.
// - the decode kernel's conversions (weight_only.cuh) bit for bit on every Int4 nibble, Int8
//   byte and (e2m1, e8m0 0..255) pair, and its token permutation.
//   Which family runs depends on MOEKIT_GEMM: run the harness once per family (--wq).
// - the mma family's in-loop dequantizing kernel (grouped_gemm_mma_wq.cu) on its own shapes: several
//   row tiles per expert, K a multiple of 32 but not of its 64-value slices, partial column tiles,
//   two scale groups inside one slice (g = 32), empty experts, every activation in both layouts;
//   under MOEKIT_GEMM=mma every 16-bit call whose K is a multiple of 32 must be one it takes.
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#include "core/dtype.h"
#include "cpu/kernels.h"
#include "cuda/check.h"
#include "cuda/divider.h"
#include "cuda/grouped_gemm_paths.h"
#include "cuda/kernels.h"
#include "cuda/weight_only.cuh"
#include "harness.h"

namespace moekit::harness {
namespace {

struct Packed {
  Tensor bytes;   // UInt8 [.., N, weightRowBytes(K)]
  Tensor scales;  // float32 or e8m0 UInt8 [.., N, ceil(K / g)]
  WeightFormat format = WeightFormat::Int8;
  int64_t groupSize = 0;
  int64_t depth = 0;
};

const char* formatName(WeightFormat format) {
  switch (format) {
    case WeightFormat::Int8: return "int8";
    case WeightFormat::Int4: return "int4";
    case WeightFormat::Mxfp4: return "mxfp4";
    default: return "?";
  }
}

std::vector<int64_t> withLast(std::vector<int64_t> shape, int64_t last) {
  shape.back() = last;
  return shape;
}

// ---- The rule on the host --------------------------------------------------------------------------
// Int8 / Int4 quantization of a float tensor [.., N, K] in groups of `groupSize` K values.
Packed quantizeOnHost(const Tensor& weights, WeightFormat format, int64_t groupSize) {
  const int64_t depth = weights.shape.back();
  const int64_t rows = weights.numel() / depth;
  const int64_t width = weightGroupWidth(format, groupSize, depth);
  const int64_t groups = (depth + width - 1) / width;
  const bool int8 = format == WeightFormat::Int8;
  const float maxCode = int8 ? 127.0f : 7.0f;
  const float low = int8 ? -127.0f : -8.0f, high = int8 ? 127.0f : 7.0f;
  Packed packed{Tensor(DType::UInt8, withLast(weights.shape, weightRowBytes(format, depth))),
                Tensor(DType::Float32, withLast(weights.shape, groups)), format, groupSize, depth};
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t g = 0; g < groups; ++g) {
      const int64_t begin = g * width, end = std::min(depth, begin + width);
      float amax = 0.0f;
      bool finite = true;
      for (int64_t k = begin; k < end; ++k) {
        const float w = weights.get(r * depth + k);
        finite = finite && std::isfinite(w);
        amax = std::max(amax, std::fabs(w));
      }
      const float scale = finite ? amax / maxCode : NAN;
      packed.scales.set(r * groups + g, scale);
      for (int64_t k = begin; k < end; ++k) {
        int32_t q = 0;
        if (scale != 0.0f && !std::isnan(scale)) {
          const float scaled = weights.get(r * depth + k) / scale;  // float32 division
          q = static_cast<int32_t>(std::min(std::max(std::nearbyint(scaled), low), high));  // ties to even
        }
        uint8_t& byte = packed.bytes.host[r * weightRowBytes(format, depth) + (int8 ? k : k / 2)];
        if (int8) {
          byte = static_cast<uint8_t>(static_cast<int8_t>(q));
        } else if (k % 2 == 0) {
          byte = static_cast<uint8_t>((byte & 0xF0u) | (static_cast<uint32_t>(q) & 0xFu));
        } else {
          byte = static_cast<uint8_t>((byte & 0x0Fu) | ((static_cast<uint32_t>(q) & 0xFu) << 4));
        }
      }
    }
  }
  return packed;
}

// Random MXFP4 bytes and e8m0 scales 2^-5 .. 2^0 (gpt-oss's checkpoints sit near there; larger
// ones would overflow float16 products under a gated activation).
// e8m0 codes drawn from [lowestScale, lowestScale + scaleCodes).
Packed randomMxfp4(std::vector<int64_t> shape, uint64_t seed, uint32_t lowestScale = 122, uint32_t scaleCodes = 6) {
  const int64_t depth = shape.back();
  Packed packed{Tensor(DType::UInt8, withLast(shape, depth / 2)), Tensor(DType::UInt8, withLast(shape, depth / kMxfp4GroupSize)),
                WeightFormat::Mxfp4, 0, depth};
  for (int64_t i = 0; i < packed.bytes.numel(); ++i) packed.bytes.host[i] = static_cast<uint8_t>(randomBelow(seed, i, 256));
  for (int64_t i = 0; i < packed.scales.numel(); ++i) {
    packed.scales.host[i] = static_cast<uint8_t>(lowestScale + randomBelow(seed + 1, i, scaleCodes));
  }
  return packed;
}

float e2m1(uint32_t nibble) {
  static const float kValues[] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f};
  const float magnitude = kValues[nibble & 7u];
  return (nibble & 8u) != 0 ? -magnitude : magnitude;
}

float roundTo(DType dtype, float value) {
  switch (dtype) {
    case DType::BFloat16: return bfloat16ToFloat(floatToBfloat16(value));
    case DType::Float16: return float16ToFloat(floatToFloat16(value));
    default: return value;
  }
}

// w = q × scale (float32), rounded to `compute` (the input's dtype), as float32 [.., N, K].
Tensor dequantizeOnHost(const Packed& packed, DType compute) {
  const int64_t depth = packed.depth;
  const int64_t rowBytes = weightRowBytes(packed.format, depth);
  const int64_t rows = packed.bytes.numel() / rowBytes;
  const int64_t width = weightGroupWidth(packed.format, packed.groupSize, depth);
  const int64_t groups = (depth + width - 1) / width;
  Tensor dense(DType::Float32, withLast(packed.bytes.shape, depth));
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t k = 0; k < depth; ++k) {
      const uint8_t byte = packed.bytes.host[r * rowBytes + (packed.format == WeightFormat::Int8 ? k : k / 2)];
      const uint32_t nibble = k % 2 == 0 ? byte & 0xFu : byte >> 4;
      float q, scale;
      if (packed.format == WeightFormat::Mxfp4) {
        const uint8_t s = packed.scales.host[r * groups + k / width];
        q = e2m1(nibble);
        scale = s == 255 ? NAN : std::ldexp(1.0f, static_cast<int>(s) - 127);
      } else {
        q = packed.format == WeightFormat::Int8 ? static_cast<float>(static_cast<int8_t>(byte))
                                                : static_cast<float>(static_cast<int32_t>(nibble ^ 8u) - 8);
        scale = packed.scales.get(r * groups + k / width);
      }
      dense.set(r * depth + k, roundTo(compute, q * scale));
    }
  }
  return dense;
}

// ---- quantizeWeights -------------------------------------------------------------------------------------
void testQuantize(DType dtype, WeightFormat format, std::vector<int64_t> shape, int64_t groupSize) {
  Tensor weights = randomTensor(dtype, shape, 61, 0.5f);
  const int64_t depth = shape.back();
  // Special groups in the first rows: all zeros, a NaN, an infinity, and ties: with amax equal to
  // the largest code the scale is 1, so 2.5 and -3.5 are halfway and round to even.
  if (depth >= 4 && weights.numel() / depth >= 4) {
    for (int64_t k = 0; k < depth; ++k) weights.set(k, 0.0f);
    weights.set(depth + depth / 2, NAN);
    weights.set(2 * depth + 1, -INFINITY);
    const float maxCode = format == WeightFormat::Int8 ? 127.0f : 7.0f;
    weights.set(3 * depth, maxCode);        // scale 1 for the group (if it is its amax)
    weights.set(3 * depth + 1, 2.5f);       // → 2 (ties to even)
    weights.set(3 * depth + 2, -3.5f);      // → -4
  }
  const Packed expected = quantizeOnHost(weights, format, groupSize);
  Tensor bytes = sentinelTensor(DType::UInt8, expected.bytes.shape);
  Tensor scales = sentinelTensor(DType::Float32, expected.scales.shape);
  QuantizeWeightsArgs args;
  args.input = weights.deviceView();
  args.format = format;
  args.groupSize = groupSize;
  args.output = bytes.deviceView();
  args.scales = scales.deviceView();
  cuda::quantizeWeights(args, gStream);
  std::string dims;
  for (int64_t extent : shape) dims += (dims.empty() ? "" : "x") + std::to_string(extent);
  const std::string what = describe("%s %s g=%lld", formatName(format), dims.c_str(), static_cast<long long>(groupSize));
  expectSameBytes("wq quantize", dtype, what + " values", bytes.fromDevice(), expected.bytes);
  expectSameBytes("wq quantize", dtype, what + " scales", scales.fromDevice(), expected.scales);
}

// ---- The decode kernel's conversions, bit for bit --------------------------------------------------
// weight_only.cuh's packed decoding (spanPairs, PairScale, tokenPairs) on every Int4 nibble and
// Int8 byte in every position, every e2m1 nibble with every e8m0 code 0..255 (255 NaN; 0 and the
// largest codes make 16-bit subnormals and overflow), and Int scales applied before the mma:
// against rn16(value) computed here (rn16(q × rn16(scale)) for the Int scales, the documented
// extra rounding). The token permutation must put the same K values where the weights' are.
template <WeightFormat kFormat, typename Element>
__global__ void decodeSpansKernel(const uint32_t* packed, const void* scales, bool scaled, int count, uint32_t* pairs,
                                  uint32_t* tokens) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= count) return;
  using Scale = cuda::weight_only::PairScale<kFormat, Element>;
  const uint32_t words[4] = {packed[2 * i], packed[2 * i + 1], 0u, 0u};
  uint32_t out[cuda::weight_only::kSpanPairs];
  cuda::weight_only::spanPairs<kFormat, Element>(words, 0, out);
  if (scaled) {
    const uint32_t scale = Scale::load(scales, i);
    for (uint32_t& pair : out) pair = Scale::apply(pair, scale);
  }
  for (int p = 0; p < cuda::weight_only::kSpanPairs; ++p) pairs[4 * i + p] = out[p];
  if (i == 0) {
    // Token words holding the 16-bit patterns 0..7 in K order.
    const uint32_t tokenWords[4] = {0x00010000u, 0x00030002u, 0x00050004u, 0x00070006u};
    uint32_t permuted[cuda::weight_only::kSpanPairs];
    cuda::weight_only::tokenPairs<kFormat>(tokenWords, permuted);
    for (int p = 0; p < cuda::weight_only::kSpanPairs; ++p) tokens[p] = permuted[p];
  }
}

// The K value (0..7 within the span) of half h of pair p, in weight_only.cuh's pair order.
int spanValueOf(WeightFormat format, int p, int h) {
  if (format != WeightFormat::Int8) return p + 4 * h;
  return p % 2 + 4 * (p / 2) + 2 * h;
}

uint32_t packedValue(WeightFormat format, uint32_t word0, uint32_t word1, int k) {
  if (format == WeightFormat::Int8) return ((k < 4 ? word0 : word1) >> (8 * (k % 4))) & 0xFFu;
  return (word0 >> (4 * k)) & 0xFu;
}

void testDecodeSpans(WeightFormat format, DType dtype, bool scaled) {
  // Inputs: Int4 / MXFP4 rotate the 16 nibbles through the 8 positions; Int8 the 256 bytes
  // through 8; MXFP4 (scaled) pairs each rotation with every code; Int (scaled) with a few scales.
  const std::vector<float> intScales = {1.0f, 0.0123f, 3.7e-5f, 1000.5f, 7.0e-3f / 7.0f};
  const int rotations = format == WeightFormat::Int8 ? 256 : 16;
  const int scaleCount = !scaled ? 1 : format == WeightFormat::Mxfp4 ? 256 : static_cast<int>(intScales.size());
  const int count = rotations * scaleCount;
  Tensor packed(DType::Int32, {count, 2});
  Tensor scales = format == WeightFormat::Mxfp4 ? Tensor(DType::UInt8, {count}) : Tensor(DType::Float32, {count});
  std::vector<uint32_t> words(2 * count);
  for (int i = 0; i < count; ++i) {
    const uint32_t rotation = i % rotations;
    for (int k = 0; k < 8; ++k) {
      if (format == WeightFormat::Int8) {
        words[2 * i + k / 4] |= ((rotation + k) & 0xFFu) << (8 * (k % 4));
      } else {
        words[2 * i] |= ((rotation + k) & 0xFu) << (4 * k);
      }
    }
    if (format == WeightFormat::Mxfp4) {
      scales.host[i] = static_cast<uint8_t>(i / rotations);
    } else {
      scales.set(i, intScales[i / rotations]);
    }
  }
  std::memcpy(packed.host.data(), words.data(), words.size() * 4);
  Tensor pairs(DType::Int32, {count, 4});
  Tensor tokens(DType::Int32, {4});
  const TensorView packedView = packed.deviceView(), scaleView = scales.deviceView();
  const TensorView pairView = pairs.deviceView(), tokenView = tokens.deviceView();
  constexpr int kThreads = 128;
  const unsigned blocks = static_cast<unsigned>((count + kThreads - 1) / kThreads);
  const auto launch = [&](auto kernel) {
    kernel<<<blocks, kThreads, 0, gStream>>>(packedView.as<uint32_t>(), scaleView.data, scaled, count, pairView.as<uint32_t>(),
                                            tokenView.as<uint32_t>());
    MOEKIT_CHECK_LAUNCH("decodeSpansKernel");
  };
  const bool bf16 = dtype == DType::BFloat16;
  switch (format) {
    case WeightFormat::Int8: bf16 ? launch(decodeSpansKernel<WeightFormat::Int8, cuda::BF16>) : launch(decodeSpansKernel<WeightFormat::Int8, cuda::F16>); break;
    case WeightFormat::Int4: bf16 ? launch(decodeSpansKernel<WeightFormat::Int4, cuda::BF16>) : launch(decodeSpansKernel<WeightFormat::Int4, cuda::F16>); break;
    default: bf16 ? launch(decodeSpansKernel<WeightFormat::Mxfp4, cuda::BF16>) : launch(decodeSpansKernel<WeightFormat::Mxfp4, cuda::F16>); break;
  }
  const Tensor gotPairs = pairs.fromDevice(), gotTokens = tokens.fromDevice();
  const auto bitsOf = [&](float value) -> uint32_t { return bf16 ? floatToBfloat16(value) : floatToFloat16(value); };
  const auto isNaN16 = [&](uint32_t bits) { return bf16 ? (bits & 0x7FFFu) > 0x7F80u : (bits & 0x7FFFu) > 0x7C00u; };
  int64_t mismatches = 0;
  std::string first;
  for (int i = 0; i < count; ++i) {
    for (int p = 0; p < 4; ++p) {
      uint32_t pairBits;
      std::memcpy(&pairBits, gotPairs.host.data() + 4 * (4 * i + p), 4);
      for (int h = 0; h < 2; ++h) {
        const int k = spanValueOf(format, p, h);
        const uint32_t raw = packedValue(format, words[2 * i], words[2 * i + 1], k);
        float expected;
        if (format == WeightFormat::Mxfp4) {
          const int code = scales.host[i];
          const float factor = !scaled ? 1.0f : code == 255 ? NAN : std::ldexp(1.0f, code - 127);
          expected = roundTo(dtype, e2m1(raw) * factor);
        } else {
          const float q = format == WeightFormat::Int8 ? static_cast<float>(static_cast<int8_t>(raw))
                                                       : static_cast<float>(static_cast<int32_t>(raw ^ 8u) - 8);
          expected = scaled ? roundTo(dtype, q * roundTo(dtype, scales.get(i))) : q;
        }
        const uint32_t got = (pairBits >> (16 * h)) & 0xFFFFu;
        const bool same = std::isnan(expected) ? isNaN16(got) : got == bitsOf(expected);
        if (!same && mismatches++ == 0) {
          first = describe(" first: value %d of input %d: got 0x%04x, expected 0x%04x (%g)", k, i, got, bitsOf(expected), expected);
        }
      }
    }
  }
  bool tokensAgree = true;
  for (int p = 0; p < 4; ++p) {
    uint32_t pairBits;
    std::memcpy(&pairBits, gotTokens.host.data() + 4 * p, 4);
    for (int h = 0; h < 2; ++h) tokensAgree = tokensAgree && ((pairBits >> (16 * h)) & 0xFFFFu) == static_cast<uint32_t>(spanValueOf(format, p, h));
  }
  record(mismatches == 0 && tokensAgree,
         describe("wq decode %-5s %-8s %-8s %d values, %lld differ%s; token order %s", formatName(format), dtypeName(dtype),
                  scaled ? "scaled" : "unscaled", count * 8, static_cast<long long>(mismatches), first.c_str(),
                  tokensAgree ? "agrees" : "DIFFERS"));
}

// ---- GEMMs -------------------------------------------------------------------------------------------------
struct WqCase {
  GemmCase shape;
  WeightFormat format;
  int64_t groupSize;  // Int8 / Int4 (0: per channel)
  bool wideScales = false;  // MXFP4: e8m0 codes over [90, 170) (2^-37 .. 2^42) instead of [122, 128)
};

Packed makeWeights(const WqCase& wq, std::vector<int64_t> shape) {
  constexpr uint32_t kWideLowest = 90, kWideCodes = 80;
  if (wq.format == WeightFormat::Mxfp4 && wq.wideScales) return randomMxfp4(std::move(shape), 71, kWideLowest, kWideCodes);
  if (wq.format == WeightFormat::Mxfp4) return randomMxfp4(std::move(shape), 71);
  return quantizeOnHost(randomTensor(DType::Float32, std::move(shape), 72, 0.1f), wq.format, wq.groupSize);
}

bool familyForced(const char* family) {
  const char* forced = std::getenv("MOEKIT_GEMM");
  return forced != nullptr && std::string(forced) == family;
}

// Which calls the sm90 in-loop kernel must take (grouped_gemm_sm90.cu, supportsWeightOnly), from
// the shape alone: a 16-bit input, K at least one 64-value slice and whole 16-byte packed rows,
// N a multiple of 16, groups a whole row or a multiple of 8 values. Bases come from the pool.
bool sm90TakesInLoop(DType dtype, const GemmCase& c, const WqCase& wq) {
  const int64_t rowBytes = weightRowBytes(wq.format, c.depth);
  const int64_t groupWidth = weightGroupWidth(wq.format, wq.groupSize, c.depth);
  return (dtype == DType::BFloat16 || dtype == DType::Float16) && c.depth >= 64 && c.depth % 8 == 0 && rowBytes % 16 == 0 &&
         c.cols % 16 == 0 && (groupWidth >= c.depth || groupWidth % 8 == 0);
}

// The GPU side takes the packed weights, the CPU reference their dense dequantized copy.
template <class Args, class View>
void setWeights(Args& args, bool gpu, const View& view, Packed& packed, Tensor& dense, const WqCase& wq) {
  auto& weights = [&]() -> TensorView& {
    if constexpr (std::is_same_v<Args, GroupedGemmArgs>) return args.weights; else return args.weight;
  }();
  if (!gpu) {
    weights = view(dense);
    return;
  }
  weights = view(packed.bytes);
  args.weightScales = view(packed.scales);
  args.weightFormat = wq.format;
  args.weightGroupSize = wq.groupSize;
}

// Under a forced family, whether it takes the call in its own loop exactly where the shape says it
// should (else the call quietly goes the dequantize-first way and the in-loop kernel goes untested).
void recordRoute(const char* family, bool taken, bool expected, const WqCase& wq, const GemmCase& c) {
  record(taken == expected, describe("wq route  %s %s K=%lld N=%lld g=%lld: %s (expected %s)", family, formatName(wq.format),
                                     static_cast<long long>(c.depth), static_cast<long long>(c.cols),
                                     static_cast<long long>(wq.groupSize), taken ? "in-loop kernel" : "dequantize first",
                                     expected ? "in-loop kernel" : "dequantize first"));
}

void checkRoute(const GroupedGemmArgs& args, DType dtype, const GemmCase& c, const WqCase& wq) {
  if (familyForced("sm90") && cuda::computeCapability() == 90) {
    recordRoute("sm90", cuda::sm90::supportsWeightOnly(args), sm90TakesInLoop(dtype, c, wq), wq, c);
  }
  if (familyForced("mma")) {
    // The in-loop kernel's shapes (supports()): a 16-bit input and whole 32-value K quanta
    // (every group size here is per channel or a multiple of 32; bases come from the pool).
    const bool inLoop = (dtype == DType::BFloat16 || dtype == DType::Float16) && c.depth % 32 == 0;
    recordRoute("mma", cuda::mma::supportsWeightOnly(args), inLoop, wq, c);
  }
}

void testGemmWq(DType dtype, DType outputDType, const WqCase& wq) {
  const GemmCase& c = wq.shape;
  const bool grouped = c.experts > 0;
  Tensor input = randomTensor(dtype, {c.rows, c.depth}, 73, 1.0f);
  Packed packed = makeWeights(wq, grouped ? std::vector<int64_t>{c.experts, c.cols, c.depth} : std::vector<int64_t>{c.cols, c.depth});
  Tensor dense = dequantizeOnHost(packed, dtype);
  Tensor bias = grouped ? randomTensor(DType::BFloat16, {c.experts, c.cols}, 74, 1.0f) : randomTensor(DType::BFloat16, {c.cols}, 74, 1.0f);
  Tensor offsets = grouped ? makeOffsets(c.rows, c.experts, c.lead, c.tail, 75) : Tensor();
  const int64_t outCols = caseOutputCols(c);
  Tensor output[2] = {sentinelTensor(outputDType, {c.rows, outCols}), sentinelTensor(outputDType, {c.rows, outCols})};
  for (int side = 0; side < 2; ++side) {
    const bool gpu = side == 1;
    const auto view = [&](Tensor& t) { return gpu ? t.deviceView() : t.hostView(); };
    if (grouped) {
      GroupedGemmArgs args;
      args.input = view(input);
      setWeights(args, gpu, view, packed, dense, wq);
      setCaseArgs(args, c, view(bias), view(offsets), view(output[side]));
      if (gpu) checkRoute(args, dtype, c, wq);
      runOn(gpu, args);
    } else {
      LinearArgs args;
      args.input = view(input);
      setWeights(args, gpu, view, packed, dense, wq);
      setCaseArgs(args, c, view(bias), view(output[side]));
      runOn(gpu, args);
    }
  }
  const std::string hint = rowsHintLabel(c) + (wq.wideScales ? " wide e8m0" : "");
  const std::string what = describe("%s %s g=%lld M=%lld K=%lld N=%lld E=%d%s%s%s out %s", grouped ? "grouped" : "linear",
                                    formatName(wq.format), static_cast<long long>(wq.groupSize), static_cast<long long>(c.rows),
                                    static_cast<long long>(c.depth), static_cast<long long>(c.cols), c.experts, c.bias ? " bias" : "",
                                    activationLabel(c).c_str(), hint.c_str(), dtypeName(outputDType));
  expectClose(grouped ? "wq groupedGemm" : "wq linear", dtype, what, output[1].fromDevice(), output[0],
              toleranceFor(leastPrecise({dtype, outputDType})));
}

// The sm90 converter's group index (cuda/divider.h): floor(n / d) by multiply and shift, against
// the division, for group widths from 1 to past any K, numerators on both sides of each multiple
// and at the top of the range (n < 2^31).
void testDivider() {
  int64_t checked = 0, wrong = 0;
  const auto check = [&](uint32_t d, int64_t n) {
    if (n < 0 || n >= (int64_t{1} << 31)) return;
    ++checked;
    if (cuda::Divider::of(d).divide(static_cast<uint32_t>(n)) != static_cast<uint32_t>(n / d)) ++wrong;
  };
  std::vector<uint32_t> divisors;
  for (uint32_t d = 1; d <= 1024; ++d) divisors.push_back(d);
  for (uint32_t d : {4095u, 4096u, 7168u, 14336u, 65537u, (1u << 20) + 1, (1u << 30) - 1, 1u << 30, (1u << 31) - 1, 1u << 31}) divisors.push_back(d);
  for (uint32_t d : divisors) {
    const int64_t top = (int64_t{1} << 31) - 1;
    for (int64_t multiple : {int64_t{0}, int64_t{1}, int64_t{2}, int64_t{1000}, top / d - 1, top / d}) {
      for (int64_t delta = -2; delta <= 2; ++delta) check(d, multiple * d + delta);
    }
    check(d, top);
  }
  record(wrong == 0, describe("divider: %lld of %lld quotients wrong", static_cast<long long>(wrong), static_cast<long long>(checked)));
}

}  // namespace

void runWeightOnlyTests() {
  std::printf("\n---- weight-only (int8 / int4 / mxfp4) ----\n");
  testDivider();
  for (DType dtype : kFloatDTypes) {
    testQuantize(dtype, WeightFormat::Int8, {8, 256}, 0);
    testQuantize(dtype, WeightFormat::Int8, {3, 16, 160}, 128);  // partial last group
    testQuantize(dtype, WeightFormat::Int4, {3, 16, 160}, 128);
    testQuantize(dtype, WeightFormat::Int4, {24, 96}, 32);
    testQuantize(dtype, WeightFormat::Int4, {5, 50}, 0);  // per channel, K not a multiple of 32
  }
  if (!gQuick) testQuantize(DType::BFloat16, WeightFormat::Int4, {8, 1024, 4096}, 128);

  for (DType dtype : {DType::BFloat16, DType::Float16}) {
    for (WeightFormat format : {WeightFormat::Int8, WeightFormat::Int4, WeightFormat::Mxfp4}) {
      testDecodeSpans(format, dtype, false);
      testDecodeSpans(format, dtype, true);
    }
  }

  // {rows, K, N, E, bias, lead, tail, activation, layout, maxRowsPerExpert}
  const std::vector<GemmCase> shapes = {
      {1, 256, 64, 4, true, 0, 0, -1, GateLayout::Halves, 1},              // one decode row
      {4, 256, 128, 8, false, 0, 0, kSwiGLU, GateLayout::Halves, 1},        // decode, Mixtral-like
      {7, 96, 48, 3, true, 1, 1, -1, GateLayout::Halves, 0},               // K a multiple of 32, not 128
      {37, 160, 80, 8, true, 2, 3, kGeGLU, GateLayout::Halves, 0},          // partial last group (g = 128)
      {40, 288, 272, 4, true, 0, 0, kGptOss, GateLayout::Interleaved, 16},  // gpt-oss style, 17 column tiles
      {300, 192, 96, 4, false, 0, 5, kSiLU, GateLayout::Halves, 0},         // ~300 rows: dense fallback in auto
      {70, 128, 64, 2, true, 0, 0, kGELU, GateLayout::Halves, 64},          // several passes of 32 rows
      {9, 64, 40, 3, true, 0, 0, kReLU, GateLayout::Halves, 0},             // N not a multiple of 16: dense fallback
      {12, 224, 96, 3, true, 0, 1, kSwiGLU, GateLayout::Halves, 16},        // K = 7 × 32; N = 3 mma tiles: one-tile items
      {16, 416, 64, 4, true, 1, 0, -1, GateLayout::Halves, 16},            // K = 13 × 32; two-tile items, a partial chunk
      {5, 256, 64, 0, true, 0, 0},                                          // linear
      {130, 128, 32, 0, false, 0, 0},                                       // linear, more rows
  };
  // small_m's scale stages (grouped_gemm_small_m_wq.cuh): per channel (after the pass), groups a
  // multiple of the chunk (after each chunk: Int8 g64 / g128, Int4 g128 / g256), narrower groups
  // (before the mma: Int8 g32, Int4 g32 / g64) and MXFP4 (before, exact).
  const std::vector<std::pair<WeightFormat, int64_t>> formats = {
      {WeightFormat::Int8, 0},  {WeightFormat::Int8, 32},   {WeightFormat::Int8, 64},  {WeightFormat::Int8, 128},
      {WeightFormat::Int4, 32}, {WeightFormat::Int4, 64},   {WeightFormat::Int4, 128}, {WeightFormat::Int4, 256},
      {WeightFormat::Int4, 0},  {WeightFormat::Mxfp4, 0}};
  for (DType dtype : {DType::BFloat16, DType::Float16}) {
    for (const auto& [format, groupSize] : formats) {
      for (const GemmCase& shape : shapes) testGemmWq(dtype, dtype, WqCase{shape, format, groupSize});
    }
    testGemmWq(dtype, DType::Float32, WqCase{shapes[1], WeightFormat::Int4, 128});
  }
  // Wide e8m0 scales reach 2^42: bfloat16 inputs only (the weights are rounded to the input's
  // dtype, and float16's would be ±inf), with float32 outputs (bfloat16 ones would lose the range).
  testGemmWq(DType::BFloat16, DType::Float32, WqCase{shapes[1], WeightFormat::Mxfp4, 0, true});
  testGemmWq(DType::BFloat16, DType::Float32, WqCase{shapes[9], WeightFormat::Mxfp4, 0, true});
  // The mma family's in-loop kernel (and, under other families, more of the same): 128-row tiles,
  // 64-value K slices, 128-column tiles. {rows, K, N, E, bias, lead, tail, activation, layout}
  const std::vector<GemmCase> mmaShapes = {
      {600, 352, 384, 3, true, 7, 9, -1},                                    // 2+ row tiles per expert, K = 5.5 slices, expert 1 empty
      {260, 96, 200, 5, true, 0, 0, kSwiGLU, GateLayout::Interleaved},       // partial column tile, K = 1.5 slices
      {129, 224, 136, 2, false, 0, 3, kGeGLU, GateLayout::Interleaved},      // one row past a tile; 136 = 128 + 8 columns
      {3, 64, 24, 8, true, 0, 0, kGptOss, GateLayout::Halves},                // fewer rows than experts: most are empty
      {150, 160, 264, 3, true, 2, 0, kGptOss, GateLayout::Interleaved},      // partial last group (g = 128)
      {140, 128, 72, 2, true, 0, 0, kSwiGLU, GateLayout::Halves},
      {131, 192, 40, 4, false, 0, 0, kGeGLU, GateLayout::Halves},
      {90, 288, 136, 3, true, 0, 0, kSiLU},
      {200, 64, 130, 2, true, 1, 1, kGELU},                                   // N not a multiple of 8
      {33, 32, 96, 1, true, 0, 0, kReLU},                                     // K = 32: half a slice
      {520, 320, 288, 3, true, 3, 5, kSwiGLU, GateLayout::Halves},            // sm90: gate/up halves over 3 column tiles
  };
  for (DType dtype : {DType::BFloat16, DType::Float16}) {
    for (const auto& [format, groupSize] : formats) {
      for (const GemmCase& shape : mmaShapes) testGemmWq(dtype, dtype, WqCase{shape, format, groupSize});
    }
    testGemmWq(dtype, DType::Float32, WqCase{mmaShapes[0], WeightFormat::Mxfp4, 0});
    testGemmWq(dtype, DType::Float32, WqCase{mmaShapes[4], WeightFormat::Int4, 32});
  }
  // Shapes only the dense fallback takes: K not a multiple of a 16-byte vector.
  testGemmWq(DType::BFloat16, DType::BFloat16, WqCase{{6, 40, 32, 2, true, 0, 0}, WeightFormat::Int8, 0});
  testGemmWq(DType::BFloat16, DType::BFloat16, WqCase{{6, 50, 32, 2, true, 0, 0}, WeightFormat::Int4, 0});
  testGemmWq(DType::BFloat16, DType::BFloat16, WqCase{{6, 96, 32, 2, true, 0, 0, kSwiGLU}, WeightFormat::Mxfp4, 0});
  // float32 input: dequantized to float32 (SIMT path).
  testGemmWq(DType::Float32, DType::Float32, WqCase{shapes[3], WeightFormat::Int4, 32});
  if (!gQuick) {
    // Real sizes: Mixtral's gate/up at decode and prefill, gpt-oss-20b's MXFP4 down projection.
    testGemmWq(DType::BFloat16, DType::BFloat16, WqCase{{16, 4096, 1024, 8, false, 0, 0, kSwiGLU, GateLayout::Halves, 16}, WeightFormat::Int4, 128});
    testGemmWq(DType::BFloat16, DType::BFloat16, WqCase{{1024, 1024, 512, 8, false, 0, 0, kSwiGLU}, WeightFormat::Int8, 0});
    testGemmWq(DType::BFloat16, DType::BFloat16, WqCase{{8, 2880, 2880, 4, true, 0, 0, -1, GateLayout::Halves, 8}, WeightFormat::Mxfp4, 0});
  }
}

}  // namespace moekit::harness
