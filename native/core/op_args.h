// What each op reads and writes. Every backend (native/cpu, native/cuda) implements the same ops
// with the same semantics; these structs are the whole contract between the binding and a backend.
//
// Conventions:
// - A TensorView is a dense, row-major view of memory the op does not own. On the CPU backend the
//   data is host memory; on the CUDA backend it is device memory of the op's device.
// - An optional input is a TensorView whose data is nullptr.
// - The binding (native/binding) has already checked shapes and dtypes against the comments below,
//   so a backend may assume them.
// - Float inputs may be float32, float16 or bfloat16; arithmetic accumulates in float32.
//
// Faults (checks on data, not shapes). The binding can check shapes before an op is enqueued, but
// not the values of index tensors, which may still be computed by earlier work. Every op that
// reads memory through an index it was given (permute's topkIds, combine's sourceToPermuted,
// groupedGemm's expertOffsets, and any gather to come) checks each index where it reads it:
// - An out-of-range index is never dereferenced: the op skips (or clamps) that read, so no input
//   can reach memory outside the op's tensors, fault the device, or poison the CUDA context.
// - The op reports a fault (native/core/faults.h) under its OpIdentity::ticket: the CPU backend
//   throws a NativeError("E_INVALID_ARGUMENT", describeFault(...)); a CUDA kernel writes the
//   fault into its device's FaultRecord, read out when the device next reports idle.
// - The binding (native/binding/op_ledger) then marks the failed op's outputs as poisoned: reading
//   them rejects with the fault, as do the outputs of every later op that read a poisoned tensor.
//   Tensors that the failed op did not write are unaffected.
#pragma once

#include <cstdint>
#include <vector>

#include "dtype.h"
#include "faults.h"

namespace moekit {

struct TensorView {
  void* data = nullptr;
  DType dtype = DType::Float32;
  std::vector<int64_t> shape;

  bool present() const { return data != nullptr; }
  int64_t dim(int axis) const { return shape[static_cast<size_t>(axis)]; }
  int64_t numel() const {
    int64_t count = 1;
    for (int64_t extent : shape) count *= extent;
    return count;
  }
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtypeSize(dtype); }
  template <typename T> T* as() const { return static_cast<T*>(data); }
};

// The most experts an op takes (routing's logits columns, permute's totalExperts, a grouped GEMM's
// weight matrices): far above any model's, and small enough that per-expert offsets, counts and
// loops stay in 32 bits with room to spare. Shared with lib/ops/validate.ts (MAX_EXPERTS).
constexpr int64_t kMaxExperts = int64_t{1} << 16;

// Every op's arguments begin with its identity: which enqueued op this is, so faults found while
// it runs are reported against it (see "Faults" above).
struct OpIdentity {
  uint64_t ticket = 0;                 // set by the binding; 0: not tracked (native tests, benches)
  FaultRecord* faultRecord = nullptr;  // CUDA: where kernels report faults (set by the device)
};

// ---- 1. Routing ----------------------------------------------------------------------------
// Numeric values shared with lib/vocabulary.ts (checked by test/vocabulary.test.ts).
enum class RoutingMethod : int32_t {
  // probabilities = softmax(logits) over all experts; take the top-k; if renormalize, divide the
  // k weights by their sum. (Mixtral, Qwen2/3-MoE.)
  SoftmaxTopK = 0,
  // take the top-k logits; weights = softmax over those k. (TensorRT-LLM's RENORM, gpt-oss.)
  TopKSoftmax = 1,
  // scores = sigmoid(logits); choice = scores + correctionBias (if present). Experts fall into
  // numGroups equal groups; a group's score is the sum of its two highest choice values; only
  // the topkGroups best groups stay eligible. The top-k eligible experts by choice are taken;
  // weights = their (unbiased) scores, divided by their sum (+1e-20) if renormalize, then times
  // scalingFactor. (DeepSeek-V3.) numGroups == 1 means no group limit.
  SigmoidGroupTopK = 2,
};

struct RoutingArgs : OpIdentity {
  TensorView logits;          // [T, E] float
  TensorView correctionBias;  // optional [E] float32 (SigmoidGroupTopK only)
  TensorView topkIds;         // out [T, K] int32, best first
  TensorView topkWeights;     // out [T, K] float32
  TensorView expertCounts;    // out [E] int32: how many (token, slot) pairs chose each expert
  RoutingMethod method = RoutingMethod::SoftmaxTopK;
  int32_t topK = 1;
  bool renormalize = false;
  int32_t numGroups = 1;
  int32_t topkGroups = 1;      // SigmoidGroupTopK: topK <= topkGroups * E / numGroups
  float scalingFactor = 1.0f;  // multiplies the final weights (every method)
};
// Ties: among equal values the lower expert id wins (a stable sort, as NumPy/PyTorch on CPU).

// ---- 2. Permute ----------------------------------------------------------------------------
// Gathers each (token t, slot j) pair's input row into expert-sorted order. Rows of one expert are
// contiguous and, within an expert, ordered by the flat pair index t*K + j (stable).
//
// Expert Parallel: only experts [firstExpert, firstExpert + localExpertCount) are local. Pairs
// routed to other experts are dropped: no row, sourceToPermuted = -1. Local expert e (global id
// firstExpert + e) owns rows [offsets[e], offsets[e+1]); rows from offsets[localExpertCount] on
// are unused (left as they were). Without EP, firstExpert = 0 and localExpertCount = totalExperts.
//
// `permuted` is optional: without it only the maps (expertOffsets, sourceToPermuted,
// permutedToSource) are written, for a grouped GEMM that gathers the rows itself (gatherRows).
struct PermuteArgs : OpIdentity {
  TensorView input;             // [T, H] float; or Float8E4M3 with inputScales (rows quantized
                                //   already, as wide EP receives them: copied with their scales)
  TensorView inputScales;       // optional float32 [T, ceil(H/128)], only with a Float8E4M3 input
  TensorView topkIds;           // [T, K] int32, each in [0, totalExperts) (checked: ExpertIdOutOfRange)
  TensorView permuted;          // optional out [T*K, H], dtype of input; or Float8E4M3 with permutedScales:
                                //   each row quantized by the W8A8 rule (see "Quantized weights"),
                                //   or, from a Float8E4M3 input, its row and scales as they are
  TensorView permutedScales;    // optional out float32 [T*K, ceil(H/128)]
  TensorView expertOffsets;     // out [localExpertCount+1] int32
  TensorView sourceToPermuted;  // out [T, K] int32: row of pair (t, j) in `permuted`, or -1 (dropped)
  TensorView permutedToSource;  // out [T*K] int32: flat pair index t*K + j of each used row
  int32_t localExpertCount = 0; // how many experts are local (EP); all of them without EP
  int32_t firstExpert = 0;      // global id of local expert 0
  int32_t totalExperts = 0;     // all experts; ids outside [0, totalExperts) are an error
};

// ---- 2b. Expert slots (balanced Expert Parallel) -----------------------------------------------
// A layer whose experts are placed on slots with replicas of the busy ones (lib/parallel/
// placement.ts) sends each (token t, slot j) pair to one replica of its expert e = topkIds[t, j],
// the tokens of an expert taking its replicas in turn:
//   slotIds[t, j] = replicaSlots[replicaOffsets[e] + t mod (replicaOffsets[e + 1] - replicaOffsets[e])]
// permute() then sorts the pairs by slot (totalExperts = the slot count). An id outside
// [0, experts) is an error (SlotExpertIdOutOfRange); its pair gets slot -1 (dropped by permute).
// The table is the caller's: replicaOffsets increasing strictly from 0 (every expert has a
// replica) to replicaSlots' length, and every slot in [0, the slot count); the library builds it
// from a checked placement.
struct ExpertSlotsArgs : OpIdentity {
  TensorView topkIds;         // [T, K] int32
  TensorView replicaOffsets;  // [experts + 1] int32
  TensorView replicaSlots;    // [replicas] int32
  TensorView slotIds;         // out [T, K] int32
};

// ---- Activation kinds (used by 3 and 4) ----------------------------------------------------
// Numeric values shared with lib/vocabulary.ts (checked by test/vocabulary.test.ts).
enum class ActivationKind : int32_t {
  SwiGLU = 0,        // silu(gate) * up
  GeGLU = 1,         // gelu_tanh(gate) * up
  GptOssSwiGLU = 2,  // g = min(gate, limit); u = clamp(up, -limit, limit); (u + 1) * g * sigmoid(alpha * g)
  SiLU = 3,          // not gated: silu(x)
  GELU = 4,          // not gated: gelu (erf form)
  ReLU = 5,          // not gated: max(x, 0)
};

// How gate and up columns sit in a gated input of width 2I.
enum class GateLayout : int32_t {
  Halves = 0,       // columns [0, I) are gate, [I, 2I) are up (vLLM's w13)
  Interleaved = 1,  // column 2i is gate i, column 2i+1 is up i (gpt-oss)
};

// Gated kinds read two columns (gate, up) per output column.
constexpr bool isGated(ActivationKind kind) {
  return kind == ActivationKind::SwiGLU || kind == ActivationKind::GeGLU || kind == ActivationKind::GptOssSwiGLU;
}

// ---- Quantized weights and activations (used by 2, 3 and 4) ----------------------------------
// How a GEMM's weights are stored. Numeric values shared with lib/ops/quantized.ts (checked by test/vocabulary.test.ts).
enum class WeightFormat : int32_t {
  // weights hold float values (float32, float16 or bfloat16); activations are not quantized.
  Dense = 0,
  // FP8 block scales, as DeepSeek-V3 and Qwen3-FP8 publish them: weights Float8E4M3 [.., N, K] and
  // weightScales float32 [.., ceil(N/128), ceil(K/128)]; w[n, k] = q[n, k] * scale[n/128, k/128]
  // (blocks at the edges are partial). Computed W8A8 (the rule below).
  Fp8Block128 = 1,
  // Weight-only formats (W8A16 / W4A16: activations are not quantized, see "The weight-only
  // rule" below). Their values are raw bytes (UInt8); a scale covers a group of consecutive K:
  // Int8: weights UInt8 [.., N, K], each byte a two's-complement int8 q in [-127, 127] (-128 is
  //   read as -128); weightScales float32 [.., N, ceil(K/g)] with g = weightGroupSize (0: g = K,
  //   one scale per output channel); w[n, k] = q[n, k] * scale[n, k/g].
  Int8 = 2,
  // Int4: K even; weights UInt8 [.., N, K/2], two values per byte: k even in the low nibble, k
  //   odd in the high one; each nibble a two's-complement int4 q in [-8, 7]. Scales and w as Int8.
  Int4 = 3,
  // MXFP4 as gpt-oss publishes it (OCP microscaling): K % 32 == 0; weights UInt8 [.., N, K/2] packed
  //   as Int4 (low nibble first) but each nibble an e2m1 value: bit 3 the sign, bits 0-2 index
  //   {0, 0.5, 1, 1.5, 2, 3, 4, 6}; weightScales UInt8 [.., N, K/32], e8m0: s means 2^(s - 127),
  //   s = 255 is NaN; w[n, k] = e2m1[n, k] * 2^(scale[n, k/32] - 127). (gpt-oss's
  //   `…_blocks` [E, N, K/32, 16] are these bytes; `…_scales` [E, N, K/32] are the scales.)
  Mxfp4 = 4,
};

// Whether a format is weight-only (activations stay in their float dtype).
constexpr bool isWeightOnly(WeightFormat format) {
  return format == WeightFormat::Int8 || format == WeightFormat::Int4 || format == WeightFormat::Mxfp4;
}

// Weight-only group sizes: Int8 and Int4 take weightGroupSize 0 (per output channel) or a
// positive multiple of kWeightGroupQuantum; MXFP4's group is fixed at kMxfp4GroupSize (it takes
// weightGroupSize 0 or kMxfp4GroupSize, and reads either as kMxfp4GroupSize).
constexpr int64_t kWeightGroupQuantum = 32;
constexpr int64_t kMxfp4GroupSize = 32;
// The K values one scale covers, for a weight-only format with weightGroupSize `groupSize`.
inline int64_t weightGroupWidth(WeightFormat format, int64_t groupSize, int64_t depth) {
  if (format == WeightFormat::Mxfp4) return kMxfp4GroupSize;
  return groupSize == 0 ? depth : groupSize;
}
// How many scales a row of K values has (ceil(K / group width); none when K is 0).
inline int64_t weightScaleGroups(WeightFormat format, int64_t groupSize, int64_t depth) {
  if (depth == 0) return 0;
  const int64_t width = weightGroupWidth(format, groupSize, depth);
  return (depth + width - 1) / width;
}
// Bytes per row of K values in a weight-only format (Int8: K; Int4 and MXFP4: K/2), and back:
// the weights' last extent says K.
inline int64_t weightRowBytes(WeightFormat format, int64_t depth) {
  return format == WeightFormat::Int8 ? depth : depth / 2;
}
inline int64_t weightDepth(WeightFormat format, int64_t rowBytes) {
  return format == WeightFormat::Int8 ? rowBytes : rowBytes * 2;
}

// The weight-only rule (TensorRT-LLM's weight-only GEMMs, transformers' MXFP4 dequantization):
//   output[r, n] = sum_k x[r, k] * w[n, k]   (+ bias, activation: as for dense weights)
// with w the dequantized weight above, x the float input as given, float32 accumulation. The
// CUDA backend multiplies in the input's 16-bit dtype (rn16: rounding to it), as TensorRT-LLM does:
// - MXFP4: w = rn16(e2m1 · 2^(s − 127)), exact unless it overflows.
// - Int8 / Int4 on the decode path (small_m) with one scale per row, or groups a multiple of 64
//   (Int8) or 128 (Int4): q (exact in 16 bits) times x, accumulated in float32, times the scale in
//   float32, so w is never rounded. Narrower groups there: w = rn16(q · rn16(scale)).
// - The Hopper in-loop kernel (sm90), Int4 in bfloat16: w = rn16(q · rn16(scale)), two values per
//   instruction (at most one bfloat16 ulp from the line below; bfloat16 keeps float32's exponent
//   range, so no scale loses bits as a subnormal). Int8, and Int4 in float16, as below.
// - Other paths: w = rn16(q · scale), the product taken in float32.
// Inputs and outputs are float (no inputScales / outputScales).
//
// Quantizing float weights to Int8 / Int4 (QuantizeWeightsArgs), per group of one output row's
// g consecutive K values (the last group may be shorter), as ../shared/fixtures/hf-moe-quant:
//   amax = max |w| over the group;  scale = amax / 127 (Int8) or amax / 7 (Int4), float32;
//   q = clamp(roundHalfEven(w / scale), -127, 127) (Int8) or (-8, 7) (Int4), w / scale in float32;
//   a group whose scale is 0 has q = 0; a group holding a NaN or an infinity gets scale NaN and
//   q = 0, so its dequantized weights are NaN and results computed from them show it.
// MXFP4 is only read (as published), never produced.

// The block edge of FP8 weight scales and the group width of FP8 activation scales.
constexpr int64_t kFp8BlockSize = 128;
inline int64_t fp8Blocks(int64_t extent) { return (extent + kFp8BlockSize - 1) / kFp8BlockSize; }

// The W8A8 rule (DeepSeek-V3's inference code, vLLM, SGLang). A GEMM with Fp8Block128 weights
// first quantizes its float input: per row, per group g of 128 consecutive channels
// [128g, 128g + 128) (the last group may be shorter):
//   amax = max |x| over the group;  scale = amax / 448;
//   q = e4m3(x / scale), rounded to nearest even, saturating to ±448 (floatToFloat8e4m3);
//   a group whose scale is 0 (amax 0, or so small that amax / 448 underflows) has q = 0;
//   a NaN takes no part in amax and stays NaN (in a group of scale 0 too); an infinity makes
//   the scale infinite, so its whole group becomes NaN (x' = q * scale).
// and computes with x' = q * scale (exactly representable products), accumulating in float32:
//   output[r, n] = sum_k x'[r, k] * w[n, k]   (+ bias, activation: as for dense weights).
// The input may also arrive already quantized, as Float8E4M3 with inputScales float32
// [M, ceil(K/128)] (x' = q * scale), and an output may leave quantized the same way: Float8E4M3
// with outputScales [M, ceil(width/128)], the float result quantized by the rule. These let the
// producer of an activation (permute, the first GEMM's epilogue) hand it over in FP8: the results
// are the same as quantizing inside the GEMM.

// ---- 3. Grouped GEMM -----------------------------------------------------------------------
// For each expert e and each row r in [offsets[e], offsets[e+1]):
//   output[r, n] = sum_k input[r, k] * weights[e, n, k]  (+ bias[e, n])
// Weights use PyTorch's Linear layout (out_features x in_features), one matrix per expert.
// expertOffsets lives on the op's device (never read by the host on the CUDA backend).
// Rows outside [offsets[0], offsets[E]) are left untouched.
//
// Gathered rows (optional): with `gatherRows` [M] int32, row r of the product reads input row
//   source(r) = gatherRows[r] / gatherDivisor   (integer division; input is then [T, K], any T)
// in place of input row r, so `input[r, k]` above reads `input[source(r), k]`. The layer passes
// permute's permutedToSource with gatherDivisor = topK (the pair index t*K + j names token t): the
// expert-sorted rows are then read where they are instead of being copied first. gatherRows[r] is
// read only for rows r inside an expert's range; a value outside [0, T * gatherDivisor) is a fault
// (GatherRowOutOfRange) and that row reads zeros. Not with inputScales (FP8 rows are permuted
// with their scales). M, the row count, is the output's: gatherRows' length, or the input's rows.
//
// With `activation.enabled`, the activation runs on the float32 products (after the bias) before
// anything is rounded, and only its result is written: output is [M, N/2] for gated kinds (gate
// and up columns picked by `activation.layout` within the N products) and [M, N] otherwise. The
// CUDA backend fuses it into the GEMM's epilogue where it can.
struct GemmActivation {
  bool enabled = false;
  ActivationKind kind = ActivationKind::SwiGLU;
  GateLayout layout = GateLayout::Halves;
  float alpha = 1.702f;  // GptOssSwiGLU only
  float limit = 7.0f;    // GptOssSwiGLU only
};

struct GroupedGemmArgs : OpIdentity {
  TensorView input;          // [M, K] float ([T, K] with gatherRows); Fp8Block128 also takes
                             // Float8E4M3 with inputScales
  TensorView inputScales;    // optional float32 [M, ceil(K/128)]: input is quantized (W8A8 rule)
  TensorView gatherRows;     // optional [M] int32: row r reads input row gatherRows[r] / gatherDivisor
  int32_t gatherDivisor = 1; // >= 1
  TensorView weights;        // [E, N, K] float (Dense), Float8E4M3 (Fp8Block128), or UInt8 bytes
                             // [E, N, weightRowBytes(K)] (weight-only formats)
  TensorView weightScales;   // Fp8Block128: float32 [E, ceil(N/128), ceil(K/128)]; weight-only:
                             // [E, N, ceil(K/g)], float32 (Int8, Int4) or UInt8 e8m0 (Mxfp4)
  WeightFormat weightFormat = WeightFormat::Dense;
  int64_t weightGroupSize = 0;  // Int8 / Int4: K values per scale (0: per output channel)
  TensorView bias;           // optional [E, N] float
  TensorView expertOffsets;  // [E+1] int32, non-decreasing, offsets[0] >= 0, offsets[E] <= M (checked:
                             // ExpertOffsetOutOfRange; offending offsets are clamped into range)
  TensorView output;         // out [M, N] (or [M, N/2] gated): float32 or the dtype of a float input
                             // (any float with FP8 weights); Fp8Block128 also writes Float8E4M3
                             // with outputScales
  TensorView outputScales;   // optional out float32 [M, ceil(width/128)] (W8A8 rule)
  GemmActivation activation;
  // A bound on rows per expert when the caller knows one (0: unknown). The layer passes its token
  // count (a token visits an expert at most once). It only picks a kernel: results never depend
  // on it, and rows beyond it are still computed.
  int64_t maxRowsPerExpert = 0;
};

// The product's row count M: gatherRows' length when the rows are gathered, else the input's.
inline int64_t gemmRows(const GroupedGemmArgs& args) {
  return args.gatherRows.present() ? args.gatherRows.dim(0) : args.input.dim(0);
}

// Dense projection: output[m, n] = sum_k input[m, k] * weight[n, k] (+ bias[n]). Quantized weights
// and activations as for the grouped GEMM (one expert owning every row).
struct LinearArgs : OpIdentity {
  TensorView input;         // [M, K] float; Fp8Block128 also takes Float8E4M3 with inputScales
  TensorView inputScales;   // optional float32 [M, ceil(K/128)]
  TensorView weight;        // [N, K] float (Dense), Float8E4M3 (Fp8Block128), or UInt8 bytes
                            // [N, weightRowBytes(K)] (weight-only formats)
  TensorView weightScales;  // Fp8Block128: float32 [ceil(N/128), ceil(K/128)]; weight-only:
                            // [N, ceil(K/g)] as for the grouped GEMM
  WeightFormat weightFormat = WeightFormat::Dense;
  int64_t weightGroupSize = 0;  // Int8 / Int4: K values per scale (0: per output channel)
  TensorView bias;          // optional [N] float
  TensorView output;        // out [M, N]: float32 or the dtype of a float input; Fp8Block128 also
                            // writes Float8E4M3 with outputScales
  TensorView outputScales;  // optional out float32 [M, ceil(N/128)]
};

struct ActivationArgs : OpIdentity {
  TensorView input;   // [M, 2I] for gated kinds, [M, I] otherwise; float
  TensorView output;  // out [M, I], float (any float dtype)
  ActivationKind kind = ActivationKind::SwiGLU;
  GateLayout layout = GateLayout::Halves;
  float alpha = 1.702f;  // GptOssSwiGLU only
  float limit = 7.0f;    // GptOssSwiGLU only
};

// ---- 5. Combine (unpermute) ----------------------------------------------------------------
// output[t, h] = sum_j topkWeights[t, j] * expertOutput[sourceToPermuted[t, j], h]   (j in order 0..K-1,
//                                                         pairs with sourceToPermuted = -1 skipped)
//              + sharedScale(t) * shared[t, h]                                      (if shared present)
// where sharedScale(t) = sigmoid(sharedGateLogits[t, 0]) if present, else 1.
// Deterministic: a fixed summation order, no atomics.
struct CombineArgs : OpIdentity {
  TensorView expertOutput;      // [T*K, H] float, expert-sorted rows
  TensorView topkWeights;       // [T, K] float32
  TensorView sourceToPermuted;  // [T, K] int32, each in [-1, T*K) (checked: SourceRowOutOfRange)
  TensorView shared;            // optional [T, H] float
  TensorView sharedGateLogits;  // optional [T, 1] float32
  TensorView output;            // out [T, H] float (any float dtype)
};

// ---- 6. Fused MoE (a whole routed layer in one op, for decode) ------------------------------
// The routed path of an MoE layer as one op, for a few tokens (a decode step), where the separate
// ops' launches cost more than their work. Its results are those of the ops in sequence:
//   logits  = linear(input, routerWeight, routerBias) in float32            [T, E]
//   routing(logits; method, topK, ...) → topkIds, topkWeights, expertCounts (as RoutingArgs)
//   for each pair p = t*K + j with expert e = topkIds[t, j]:
//     hidden[p] = activation(input[t] · w13[e]ᵀ + w13Bias[e]), rounded to the input dtype
//     rows[p]   = hidden[p] · w2[e]ᵀ + w2Bias[e], rounded to the input dtype
//   output  = combine(rows, topkWeights, the identity map), rounded to the input dtype
// that is, the layer's linear → routing → permute → groupedGemm (activation) → groupedGemm →
// combine, with every pair's expert local (no Expert Parallel, no placement) and no shared expert.
// A backend may sum each dot product's terms in another order than the separate ops do (as any
// two GEMM kernels may), so results agree with theirs up to float32 rounding of those sums; the
// CUDA kernel's router sums in the order of the skinny linear, which linear() takes for so few
// rows, so it chooses the same experts. Results are deterministic. Dense 16-bit weights only (float16 or bfloat16, the
// input's dtype); activation.enabled is required (gated kinds take w13 [E, 2I, H]).
struct FusedMoeArgs : OpIdentity {
  TensorView input;           // [T, H] float16 or bfloat16
  TensorView routerWeight;    // [E, H], input's dtype
  TensorView routerBias;      // optional [E] float
  TensorView correctionBias;  // optional [E] float32 (SigmoidGroupTopK only)
  RoutingMethod method = RoutingMethod::SoftmaxTopK;
  int32_t topK = 1;
  bool renormalize = false;
  int32_t numGroups = 1;
  int32_t topkGroups = 1;
  float scalingFactor = 1.0f;
  TensorView w13;             // [E, N, H], input's dtype: N = 2I (gated) or I
  TensorView w13Bias;         // optional [E, N] float
  GemmActivation activation;  // enabled
  TensorView w2;              // [E, H, I], input's dtype
  TensorView w2Bias;          // optional [E, H] float
  TensorView topkIds;         // out [T, K] int32
  TensorView topkWeights;     // out [T, K] float32
  TensorView expertCounts;    // out [E] int32
  TensorView output;          // out [T, H], input's dtype
};

// ---- Utilities -----------------------------------------------------------------------------
// Quantizes float weights into a quantized WeightFormat, as a loader does with a 16-bit checkpoint
// (TensorRT-LLM's FP8 path; the published FP8 checkpoints were made the same way).
// Fp8Block128: for each [N, K] matrix and each of its 128×128 blocks (partial at the edges):
//   amax = max |w| over the block;  scale = amax / 448 (float32);
//   q = e4m3(w / scale), rounded to nearest even, saturating; a block whose scale is 0 has q = 0.
// so that w ≈ q * scale, the layout Fp8Block128 weights are read in.
// Int8 / Int4: the rule under "The weight-only rule" above, groups of groupSize K values.
struct QuantizeWeightsArgs : OpIdentity {
  TensorView input;   // [N, K] or [E, N, K] float
  WeightFormat format = WeightFormat::Fp8Block128;  // Fp8Block128, Int8 or Int4
  int64_t groupSize = 0;  // Int8 / Int4: as GroupedGemmArgs::weightGroupSize
  TensorView output;  // out: Float8E4M3 in the shape of input (Fp8Block128), or UInt8
                      // [.., N, weightRowBytes(K)] (Int8, Int4)
  TensorView scales;  // out float32 [.., ceil(N/128), ceil(K/128)] (Fp8Block128) or [.., N, ceil(K/g)]
};

// Elementwise conversion between float dtypes, Float8E4M3 included (to it: round to nearest even,
// saturating to ±448), or a copy of int32 or uint8.
struct CastArgs : OpIdentity {
  TensorView input;   // any shape
  TensorView output;  // same numel
};

// Adds int32 counts into an accumulator on the device: accumulator[i] += input[i], wrapping in
// two's complement. It lets a caller total routing's expertCounts over many forwards without
// reading them back to the host in between (lib/serve/layer_stats.ts).
struct AddInt32Args : OpIdentity {
  TensorView input;        // any shape, Int32
  TensorView accumulator;  // in/out, Int32, same numel as input
};

// Fills output with uniform values in [-scale, scale) from a counter-based generator, so the same
// seed gives the same values on every backend up to the output dtype's rounding:
// value(i) = scale * (2 * u(seed, i) - 1), u from moekit::uniformHash (native/core/random.h).
struct FillRandomArgs : OpIdentity {
  TensorView output;  // float
  uint64_t seed = 0;
  float scale = 1.0f;
};

}  // namespace moekit
