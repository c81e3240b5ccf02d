// The small_m family with weight-only weights (Int8, Int4, MXFP4: W8A16 / W4A16, the rule in
// native/core/op_args.h): decode, where a step's time is the time to read the active experts'
// packed weights once. Included by grouped_gemm_small_m_wq.cu (the dispatch) and by
// bench/native/gemm_small_m_bench.cu (--wq: configurations timed by name).
//
// The decode kernel of grouped_gemm_small_m.cuh with packed weights: each lane streams 16-byte
// vectors of packed weight rows from HBM, turns them in registers into 16-bit mma operands and
// multiplies them with the tokens by mma.sync m16n8k16, swap-AB. The work split (persistent
// blocks over the experts that own rows, items of kColumnTiles × 16 weight rows, warps splitting
// K), the passes of 8 · kMaxTokenGroups rows and the epilogue (bias, fused activation, output dtype:
// finishPass) are that kernel's.
//
// Conversions (weight_only.cuh, "Packed 16-bit decoding"): Marlin's. An Int4 pair costs a shift,
// a LOP3 and an HSUB2 (1.5 instructions per value, against about 4 for q → float32 → × scale →
// 16 bits, which left v1 ALU-bound at a fifth of copy speed); an Int8 pair a PRMT and an HSUB2
// (float16) or two PRMT, two FADD and a PRMT (bfloat16, whose 7-bit mantissa cannot hold a byte);
// an MXFP4 pair two shifts, two LOPs and an HMUL2. They produce pairs of K values (k, k + 4) or
// (k, k + 2) rather than (k, k + 1); the token words of each 8-value span are permuted the same
// way (one PRMT per token pair, shared by every column tile of the item), which an mma allows:
// any one-to-one K mapping shared by both operands (mma_sync.cuh).
//
// K positions: a lane's 16-byte vector holds V consecutive K values (V = 16 for Int8, 32 for Int4
// / MXFP4: kValues); the 4 lanes of a weight row read 64 contiguous bytes, a chunk of 4V values
// (kChunkDepth: 64 or 128). Each mma sums 16 K values, 4 from each lane of a row, so the K terms
// of one chunk are summed by the mmas of that chunk only.
//
// Scales (ScaleStage), and the exact arithmetic:
//   AfterPass (Int8 / Int4, one group per row): the mmas multiply exact q (|q| ≤ 128 is a 16-bit
//     value) by the tokens with float32 accumulation; the pass's sums are multiplied by the
//     row's float32 scale:  out = scale · Σ_k q_k x_k  (float32).
//   AfterChunk (Int8 / Int4, groups a multiple of the chunk: Int4 g128, g256 ...; Int8 g64 ...):
//     each chunk's sums start from zero and are promoted into the running sums as
//     sums = fma(chunkSum, scale of the chunk's group, sums), as the FP8 kernel promotes its
//     block scales:  out = Σ_groups scale_g · Σ_{k in chunk} q_k x_k  (float32).
//   BeforeMma (Int8 / Int4 groups narrower than a chunk: Int4 g32 / g64, Int8 g32; every MXFP4):
//     the decoded pairs are multiplied by the scale before the mma (PairScale): for Int8 / Int4
//     w = rn16(q × rn16(scale)) (one more rounding than the contract's rn16(q × scale)); for
//     MXFP4 w = e2m1 × 2^(s - 127) rounded once, exactly the contract's w.
// So the first two compute w = q × scale without rounding it to 16 bits at all: more exact than
// op_args.h's "rounds w to the input's 16-bit dtype", which the lead's contract wording covers
// (grouped_gemm_small_m_wq.cu's report).
#pragma once

#include <cstdint>

#include "divider.h"
#include "grouped_gemm_small_m.cuh"
#include "per_device.h"
#include "weight_only.cuh"
#include "weight_only.h"

namespace moekit::cuda::small_m::detail {

// Where the group scales enter the sums (above).
enum class ScaleStage : int32_t { AfterPass, AfterChunk, BeforeMma };

// The problem of the 16-bit kernel (shapes, offsets, epilogue; `weights` are the packed bytes and
// `depth` is K) and the packing.
struct WqProblem {
  StreamProblem base;
  const void* scales;   // [experts, cols, scaleGroups]: float32, or e8m0 bytes (MXFP4)
  int64_t rowBytes;     // bytes per weight row: weightRowBytes(format, depth)
  int64_t groupWidth;   // K values per scale
  int64_t scaleGroups;  // scales per weight row
  Divider groupOf;      // k → its scale group: k / groupWidth
};

// What a 16-byte vector of packed weights holds.
template <WeightFormat kFormat>
struct WqVector {
  static constexpr int kValuesPerWord = weight_only::Decoder<kFormat>::kValuesPerWord;
  static constexpr int kValues = kVectorBytes / 4 * kValuesPerWord;   // V: 16 or 32
  static constexpr int kSpans = kValues / weight_only::kSpanValues;   // 16-byte token vectors: 2 or 4
  static constexpr int kChunkDepth = kLanesPerRow * kValues;          // K per chunk: 64 or 128
  static_assert(kWeightGroupQuantum % kValues == 0, "a vector lies in one scale group");
};

// The stage of a call's scales.
inline ScaleStage scaleStageOf(const PackedWeights& packed) {
  if (packed.format == WeightFormat::Mxfp4) return ScaleStage::BeforeMma;
  const int64_t chunkDepth = packed.format == WeightFormat::Int8 ? WqVector<WeightFormat::Int8>::kChunkDepth
                                                                 : WqVector<WeightFormat::Int4>::kChunkDepth;
  if (packed.groupWidth() >= packed.depth) return ScaleStage::AfterPass;
  return packed.groupWidth() % chunkDepth == 0 ? ScaleStage::AfterChunk : ScaleStage::BeforeMma;
}

__device__ __forceinline__ void wordsOf(const uint4& vector, uint32_t (&words)[4]) {
  words[0] = vector.x;
  words[1] = vector.y;
  words[2] = vector.z;
  words[3] = vector.w;
}

// acc += the products of one 16-byte vector per weight row (both rows of every column tile) with
// the same V K values of every token group: span by span, the tokens loaded and permuted once and
// each tile's two rows decoded (and, BeforeMma, scaled) right before their two mmas.
template <WeightFormat kFormat, typename Element, class Config, ScaleStage kStage, int tokenGroups>
__device__ __forceinline__ void multiplyVector(const uint4 (&packed)[Config::kColumnTiles][2],
                                               const uint32_t (&pairScales)[Config::kColumnTiles][2],
                                               const typename Element::Storage* const (&tokenRows)[tokenGroups],
                                               int64_t depthOffset, bool inside,
                                               float (&acc)[Config::kColumnTiles][tokenGroups][kAccumulators]) {
  using Vector = WqVector<kFormat>;
  using Scale = weight_only::PairScale<kFormat, Element>;
  constexpr int kPairs = weight_only::kSpanPairs;
#pragma unroll
  for (int span = 0; span < Vector::kSpans; ++span) {
    uint32_t tokens[tokenGroups][kPairs];
#pragma unroll
    for (int j = 0; j < tokenGroups; ++j) {
      uint32_t words[4];
      wordsOf(loadCached(tokenRows[j] + depthOffset + span * weight_only::kSpanValues, inside && tokenRows[j] != nullptr),
              words);
      weight_only::tokenPairs<kFormat>(words, tokens[j]);
    }
#pragma unroll
    for (int t = 0; t < Config::kColumnTiles; ++t) {
      uint32_t weights[2][kPairs];  // rows g and g + 8
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        uint32_t words[4];
        wordsOf(packed[t][h], words);
        weight_only::spanPairs<kFormat, Element>(words, span, weights[h]);
        if constexpr (kStage == ScaleStage::BeforeMma) {
#pragma unroll
          for (int p = 0; p < kPairs; ++p) weights[h][p] = Scale::apply(weights[h][p], pairScales[t][h]);
        }
      }
      // mma m takes pairs 2m (K 2c, 2c + 1 of the fragment) and 2m + 1 (K 2c + 8, 2c + 9).
#pragma unroll
      for (int m = 0; m < kPairs / 2; ++m) {
#pragma unroll
        for (int j = 0; j < tokenGroups; ++j) {
          mma16816<Element>(acc[t][j], weights[0][2 * m], weights[1][2 * m], weights[0][2 * m + 1], weights[1][2 * m + 1],
                            tokens[j][2 * m], tokens[j][2 * m + 1]);
        }
      }
    }
  }
}

// Where a lane's loads of one pass start: its weight rows (g and g + 8 of each column tile, at the
// lane's 16 bytes of a chunk) and scale rows, K and its own first K within a chunk.
template <int kTiles>
struct WqLane {
  const uint8_t* const (&weightRows)[kTiles][2];
  const int64_t (&scaleRows)[kTiles][2];
  int depth;      // K (< 2^31: supportsWeightOnly)
  int laneDepth;  // the lane's first K within a chunk
};

// One batch of a warp's chunks (first, first + kWarps, ... kUnroll of them): the lane's packed
// vectors and their scale codes (AfterChunk: float32 bits; BeforeMma: Scale's code, converted
// when used; AfterPass: unused).
template <class Config>
struct WqBatch {
  uint4 packed[Config::kUnroll][Config::kColumnTiles][2];
  uint32_t scales[Config::kUnroll][Config::kColumnTiles][2];
};

// Issues a batch's loads: kUnroll × tiles × 2 vectors of 16 bytes (zeros past K) and their scales.
template <WeightFormat kFormat, typename Element, class Config, ScaleStage kStage>
__device__ __forceinline__ void loadBatch(const WqProblem& p, const WqLane<Config::kColumnTiles>& at, int first,
                                          WqBatch<Config>& batch) {
  using Vector = WqVector<kFormat>;
  using Decode = weight_only::Decoder<kFormat>;
  using Scale = weight_only::PairScale<kFormat, Element>;
#pragma unroll
  for (int u = 0; u < Config::kUnroll; ++u) {
    const int chunkDepth = (first + u * Config::kWarps) * Vector::kChunkDepth;  // the chunk's first K
    // K % V == 0 (supports()): the lane's vector is wholly inside K or wholly past it.
    const bool inside = chunkDepth < at.depth - at.laneDepth;
    const bool chunkInside = chunkDepth < at.depth;
    // The scale group: the chunk's (AfterChunk, for every lane of it: a lane past K still holds
    // sums of the others) or the lane's vector's (BeforeMma). Past K the last K's group is read,
    // so that the load stays in bounds, and the scale is replaced by 0 where it is used.
    const int k = kStage == ScaleStage::AfterChunk ? chunkDepth : chunkDepth + at.laneDepth;
    const uint32_t group = p.groupOf.divide(static_cast<uint32_t>(min(k, at.depth - 1)));
#pragma unroll
    for (int t = 0; t < Config::kColumnTiles; ++t) {
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        batch.packed[u][t][h] = loadStreamed(at.weightRows[t][h] + chunkDepth / weight_only::kValuesPerByte<kFormat>, inside);
        if constexpr (kStage == ScaleStage::AfterChunk) {
          const uint32_t code = __float_as_uint(Decode::scale(p.scales, at.scaleRows[t][h] + group));
          batch.scales[u][t][h] = chunkInside ? code : 0u;
        } else if constexpr (kStage == ScaleStage::BeforeMma) {
          batch.scales[u][t][h] = Scale::code(p.scales, at.scaleRows[t][h] + group);
        }
      }
    }
  }
}

// sums += the batch's chunks times the pass's tokens (AfterChunk: each chunk's sums scaled by its
// group's scale as they are added).
template <WeightFormat kFormat, typename Element, class Config, ScaleStage kStage, int tokenGroups>
__device__ __forceinline__ void multiplyBatch(const WqLane<Config::kColumnTiles>& at, int first,
                                              WqBatch<Config>& batch,
                                              const typename Element::Storage* const (&tokenRows)[tokenGroups],
                                              float (&sums)[Config::kColumnTiles][tokenGroups][kAccumulators]) {
  using Vector = WqVector<kFormat>;
  using Scale = weight_only::PairScale<kFormat, Element>;
  constexpr int kTiles = Config::kColumnTiles;
#pragma unroll
  for (int u = 0; u < Config::kUnroll; ++u) {
    const int chunkDepth = (first + u * Config::kWarps) * Vector::kChunkDepth;
    if (chunkDepth >= at.depth) break;  // the rest of the batch lies past K (warp-uniform)
    const bool inside = chunkDepth < at.depth - at.laneDepth;
    if constexpr (kStage == ScaleStage::AfterChunk) {
      float chunkSums[kTiles][tokenGroups][kAccumulators] = {};
      multiplyVector<kFormat, Element, Config, kStage, tokenGroups>(batch.packed[u], batch.scales[u], tokenRows, chunkDepth,
                                                                    inside, chunkSums);
#pragma unroll
      for (int t = 0; t < kTiles; ++t) {
#pragma unroll
        for (int j = 0; j < tokenGroups; ++j) {
#pragma unroll
          for (int i = 0; i < kAccumulators; ++i) {
            // c0, c1: weight row g; c2, c3: row g + 8.
            sums[t][j][i] = fmaf(chunkSums[t][j][i], __uint_as_float(batch.scales[u][t][i / 2]), sums[t][j][i]);
          }
        }
      }
    } else {
      if constexpr (kStage == ScaleStage::BeforeMma) {
        // The codes, converted once they have landed (converting at load time waits for the load);
        // past K the scale is 0, as the weights' and tokens' zeros are.
#pragma unroll
        for (int t = 0; t < kTiles; ++t) {
#pragma unroll
          for (int h = 0; h < 2; ++h) batch.scales[u][t][h] = inside ? Scale::fromCode(batch.scales[u][t][h]) : 0u;
        }
      }
      multiplyVector<kFormat, Element, Config, kStage, tokenGroups>(batch.packed[u], batch.scales[u], tokenRows, chunkDepth,
                                                                    inside, sums);
    }
  }
}

// One pass: rows [passBegin, passEnd) of `expert` (at most 8 · tokenGroups) against the item's
// column tiles. Contains __syncthreads(): call from every thread.
template <WeightFormat kFormat, typename Element, class Config, ScaleStage kStage, int tokenGroups>
__device__ void wqPass(const WqProblem& p, float* partials, int32_t expert, int64_t firstTile, int64_t passBegin,
                       int64_t passEnd) {
  if constexpr (tokenGroups > 1) {
    // Fewer rows than half the groups: the smaller pass loads and multiplies less.
    if (passEnd - passBegin <= kMmaTokens * (tokenGroups / 2)) {
      wqPass<kFormat, Element, Config, kStage, tokenGroups / 2>(p, partials, expert, firstTile, passBegin, passEnd);
      return;
    }
  }
  using Vector = WqVector<kFormat>;
  using Decode = weight_only::Decoder<kFormat>;
  using T = typename Element::Storage;
  constexpr int kTiles = Config::kColumnTiles;
  const StreamProblem& q = p.base;
  const int warp = threadIdx.x / kWarpSize;
  const int lane = threadIdx.x % kWarpSize;
  const int g = lane / kLanesPerRow;
  const int c = lane % kLanesPerRow;
  const int64_t laneDepth = c * Vector::kValues;  // the lane's first K within a chunk

  // The lane's weight rows g and g + 8 of each tile (or gate/up pairs) and their scale rows; its
  // token rows (nullptr: past the pass).
  const uint8_t* weightRows[kTiles][2];
  int64_t scaleRows[kTiles][2];
#pragma unroll
  for (int t = 0; t < kTiles; ++t) {
    int64_t rows[2];
    tileRows(q, firstTile + t, g, &rows[0], &rows[1]);
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int64_t row = static_cast<int64_t>(expert) * q.cols + rows[h];
      weightRows[t][h] = static_cast<const uint8_t*>(q.weights) + row * p.rowBytes + c * kVectorBytes;
      scaleRows[t][h] = row * p.scaleGroups;
    }
  }
  const T* tokenRows[tokenGroups];
#pragma unroll
  for (int j = 0; j < tokenGroups; ++j) {
    const int64_t row = passBegin + j * kMmaTokens + g;
    tokenRows[j] = row < passEnd ? static_cast<const T*>(q.input) + row * q.depth + laneDepth : nullptr;
  }
  float rowScales[kTiles][2];  // AfterPass: loaded now, in flight with the first chunks
  if constexpr (kStage == ScaleStage::AfterPass) {
#pragma unroll
    for (int t = 0; t < kTiles; ++t) {
#pragma unroll
      for (int h = 0; h < 2; ++h) rowScales[t][h] = Decode::scale(p.scales, scaleRows[t][h]);
    }
  }

  float sums[kTiles][tokenGroups][kAccumulators] = {};
  // K, and every K offset below, fits 31 bits (supportsWeightOnly): 32-bit arithmetic, and a
  // chunk's scale group by the launch's multiply-shift divider instead of a division per chunk
  // (wq-v6: the division and 64-bit compares were a third of the loop's instructions).
  const WqLane<kTiles> at{weightRows, scaleRows, static_cast<int>(q.depth), static_cast<int>(laneDepth)};
  const int chunks = (at.depth + Vector::kChunkDepth - 1) / Vector::kChunkDepth;
  // A batch's loads all go out before its first mma. (wq-v6 tried software pipelining, the next
  // batch's loads in flight during this one's mmas: the registers it takes cost more occupancy
  // than it gained, 3-10% slower on the configurations below.)
  for (int first = warp; first < chunks; first += Config::kWarps * Config::kUnroll) {
    WqBatch<Config> batch;
    loadBatch<kFormat, Element, Config, kStage>(p, at, first, batch);
    multiplyBatch<kFormat, Element, Config, kStage, tokenGroups>(at, first, batch, tokenRows, sums);
  }
  if constexpr (kStage == ScaleStage::AfterPass) {
#pragma unroll
    for (int t = 0; t < kTiles; ++t) {
#pragma unroll
      for (int j = 0; j < tokenGroups; ++j) {
#pragma unroll
        for (int i = 0; i < kAccumulators; ++i) sums[t][j][i] *= rowScales[t][i / 2];
      }
    }
  }

  reduceAndFinishPass<Config, tokenGroups>(q, partials, sums, expert, firstTile, passBegin, passEnd);
}

template <WeightFormat kFormat, typename Element, class Config, ScaleStage kStage>
__global__ void __launch_bounds__(Config::kThreads, Config::kMinBlocks) wqStreamKernel(WqProblem p) {
  __shared__ int32_t active[kMaxExperts];
  __shared__ float partials[Config::kWarps * Config::kColumnTiles * Config::kMaxTokenGroups * kAccumulators * kWarpSize];

  const int activeExperts = listActiveExperts<Config>(p.base, active);
  const int64_t items = activeExperts * p.base.itemsPerExpert;
  for (int64_t item = blockIdx.x; item < items; item += gridDim.x) {
    const int32_t expert = active[item / p.base.itemsPerExpert];
    const int64_t firstTile = (item % p.base.itemsPerExpert) * Config::kColumnTiles;
    int64_t begin, end;
    expertRows(p.base, expert, &begin, &end);
    for (int64_t passBegin = begin; passBegin < end; passBegin += Config::kRowsPerPass) {
      wqPass<kFormat, Element, Config, kStage, Config::kMaxTokenGroups>(p, partials, expert, firstTile, passBegin,
                                                                         min(passBegin + Config::kRowsPerPass, end));
    }
  }
}

// Resident blocks of one instantiation on the current device, queried once per device.
template <WeightFormat kFormat, typename Element, class Config, ScaleStage kStage>
int64_t wqResidentBlocks() {
  static PerDevice<int64_t> cached;
  return cached.get([](int device) {
    int multiprocessors = 0;
    int perMultiprocessor = 0;
    MOEKIT_CUDA_CHECK(cudaDeviceGetAttribute(&multiprocessors, cudaDevAttrMultiProcessorCount, device));
    MOEKIT_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(
        &perMultiprocessor, wqStreamKernel<kFormat, Element, Config, kStage>, Config::kThreads, 0));
    return static_cast<int64_t>(multiprocessors) * std::max(perMultiprocessor, 1);
  });
}

// Calls body(std::integral_constant<ScaleStage, stage>{}) for the call's stage (MXFP4: BeforeMma only).
template <WeightFormat kFormat, typename Body>
void dispatchScaleStage(ScaleStage stage, Body&& body) {
  using Stage = ScaleStage;
  if constexpr (kFormat == WeightFormat::Mxfp4) {
    body(std::integral_constant<Stage, Stage::BeforeMma>{});
  } else if (stage == Stage::AfterPass) {
    body(std::integral_constant<Stage, Stage::AfterPass>{});
  } else if (stage == Stage::AfterChunk) {
    body(std::integral_constant<Stage, Stage::AfterChunk>{});
  } else {
    body(std::integral_constant<Stage, Stage::BeforeMma>{});
  }
}

// A weight-only call (supportsWeightOnly()) on configuration Config: N must fill whole items.
template <WeightFormat kFormat, typename Element, class Config>
void launchWq(const GroupedGemmArgs& args, cudaStream_t stream) {
  const PackedWeights packed = PackedWeights::of(args);
  WqProblem p{};
  p.base = problemOf<Config>(args, args.output.data, args.output.dtype);
  p.base.input = args.input.data;
  p.base.weightScales = nullptr;  // the FP8 field; weight-only scales are p.scales
  p.base.depth = packed.depth;    // K, not the packed row's bytes
  p.scales = args.weightScales.data;
  p.rowBytes = weightRowBytes(kFormat, packed.depth);
  p.groupWidth = packed.groupWidth();
  p.scaleGroups = packed.scaleGroups();
  p.groupOf = Divider::of(static_cast<uint32_t>(std::max<int64_t>(p.groupWidth, 1)));
  if (p.base.rows == 0 || p.base.cols == 0 || p.base.experts == 0) return;
  if (p.base.cols % (kMmaRows * Config::kColumnTiles) != 0) {
    throw NativeError("E_INVALID_ARGUMENT", "small_m weight-only GEMM: " + std::to_string(p.base.cols) +
                                                " columns do not fill whole column tiles");
  }
  dispatchScaleStage<kFormat>(scaleStageOf(packed), [&](auto stage) {
    constexpr ScaleStage kStage = decltype(stage)::value;
    const int64_t maxItems = std::min<int64_t>(p.base.experts, p.base.rows) * p.base.itemsPerExpert;
    const int64_t blocks = std::max<int64_t>(std::min(maxItems, wqResidentBlocks<kFormat, Element, Config, kStage>()), 1);
    wqStreamKernel<kFormat, Element, Config, kStage><<<static_cast<unsigned>(blocks), Config::kThreads, 0, stream>>>(p);
    MOEKIT_CHECK_LAUNCH("wqStreamKernel");
  });
}

// The configurations, from `gemm_small_m_bench --wq` on an H200 (bench/NOTES.md, wq-v6: 1 and 16
// tokens on the three models, every format, against 4/8-warp, 1-4 chunk and 2/4-group variants):
// - Single: one column tile, two warps splitting K, four chunks per batch, passes of 16 rows, and
//   registers capped for 8 blocks per multiprocessor (16 warps: a batch's loads are long, and
//   more warps hide them better than more registers per warp). Calls of fewer than 16 rows (one
//   token, up to top-8), every MXFP4 call up to 16 rows per expert on average, and N that does
//   not fill two-tile items.
// - Pair: two column tiles sharing each token load and its permutation, two chunks per batch:
//   Int4 and Int8 from 16 rows (4-11% faster than Single at 16 tokens; 10% slower at one).
// - Wide: Single with four warps splitting K (two chunks per batch, registers capped for 4 blocks),
//   for calls of fewer items than half of Single's resident blocks, which would leave most warp
//   slots empty: one token's GEMM2 on Mixtral (512 items, 7.7 warps per multiprocessor under
//   Single) is 22% faster; Qwen3-30B-A3B's 768 and 1024 items are not.
// - Deep: passes of 32 rows, for more than 16 rows per expert on average (Single's and Pair's
//   16-row passes would stream the weights three or four times up to small_m's 64 rows).
using WqSingleConfig = StreamConfig<2, 1, 4, 2, 8>;
using WqWideConfig = StreamConfig<4, 1, 2, 2, 4>;
using WqPairConfig = StreamConfig<2, 2, 2, 2>;
using WqDeepConfig = StreamConfig<2, 1, 4, 4>;

// Calls body(Config{}) with the configuration of a call of `rows` rows over `experts` experts and
// `cols` output columns.
template <WeightFormat kFormat, typename Body>
void dispatchWqConfig(int64_t rows, int64_t experts, int64_t cols, Body&& body) {
  static_assert(WqPairConfig::kRowsPerPass == WqSingleConfig::kRowsPerPass, "one pass depth below Deep");
  if (rows > WqSingleConfig::kRowsPerPass * std::max<int64_t>(experts, 1)) {
    body(WqDeepConfig{});
    return;
  }
  if constexpr (kFormat != WeightFormat::Mxfp4) {
    if (rows >= kMmaRows && cols % (kMmaRows * WqPairConfig::kColumnTiles) == 0) {
      body(WqPairConfig{});
      return;
    }
  }
  // Items: 16-row column tiles of the experts that can own rows.
  const int64_t items = std::min(experts, rows) * (cols / kMmaRows);
  if (2 * items < int64_t{deviceMultiprocessors()} * WqSingleConfig::kMinBlocks) {
    body(WqWideConfig{});
  } else {
    body(WqSingleConfig{});
  }
}

}  // namespace moekit::cuda::small_m::detail
