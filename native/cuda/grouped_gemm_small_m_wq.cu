// The small_m family with weight-only weights (Int8, Int4, MXFP4: W8A16 / W4A16, the rule in
// native/core/op_args.h): decode, where a step's time is the time to read the active experts'
// packed weights once. The Marlin idea on the decode kernel of grouped_gemm_small_m.cuh: each
// lane streams 16-byte vectors of packed weight rows from HBM, dequantizes them in registers
// (weight_only.cuh: q → float32 by bit tricks, × the group scale, rounded to the input's 16-bit
// dtype) and feeds them to mma.sync m16n8k16 with the tokens, swap-AB as in the 16-bit kernel.
// The work split (persistent blocks over the experts that own rows, items of 16 weight rows,
// warps splitting K), the passes of up to 32 rows and the epilogue (bias, fused activation, output
// dtype: finishPass) are that kernel's, shared through the .cuh.
//
// K positions: a lane's 16-byte vector holds V consecutive K values (V = 16 for Int8, 32 for
// Int4 / MXFP4); the 4 lanes of a weight row read 64 contiguous bytes, a "chunk" of 4V values.
// mma q (q < V / 4) of a vector takes the lane's values 4q .. 4q + 3 as its K positions
// {2c, 2c+1, 2c+8, 2c+9} (any one-to-one mapping shared by both operands will do: mma_sync.cuh),
// so the token operand is the same V values of each token row: V / 8 16-byte token vectors per
// weight vector, read from L1/L2 (every column tile of an expert re-reads them).
//
// Scales: a lane's V values always lie in one scale group (groups are multiples of 32 values, or
// a whole row; vectors start at multiples of V ≤ 32), so each weight vector needs one scale per
// weight row, loaded beside it and in flight with it; repeated loads of one group's scale hit L1.
//
// Bytes in flight: a warp issues the loads of kUnroll chunks (2 rows × 16 bytes × kUnroll per
// lane: 4 KB per warp at kUnroll = 4) before it dequantizes the first, as the 16-bit kernel does.
//
// Cost beyond the bytes: about four integer/float operations per weight value to dequantize (a
// byte permute or a shift and mask, a subtraction, the scale multiply, half a pair conversion).
// At 4 TB/s of Int4 an H200 SM must dequantize about 30 values per clock, near its integer
// throughput: if the bench shows this kernel short of copy speed, Marlin's packed 16-bit tricks
// (two values per instruction, the scale in 16 bits) are the next step.
#include <cstdint>

#include "alignment.h"
#include "grouped_gemm_small_m.cuh"
#include "weight_only.cuh"
#include "weight_only.h"

namespace moekit::cuda::small_m {
namespace {

using namespace detail;

// The problem of the 16-bit kernel (shapes, offsets, epilogue; `weights` are the packed bytes and
// `depth` is K) and the packing.
struct WqProblem {
  StreamProblem base;
  const void* scales;   // [experts, cols, scaleGroups]: float32, or e8m0 bytes (MXFP4)
  int64_t rowBytes;     // bytes per weight row: weightRowBytes(format, depth)
  int64_t groupWidth;   // K values per scale
  int64_t scaleGroups;  // scales per weight row
};

// What a 16-byte vector of packed weights holds.
template <WeightFormat kFormat>
struct WqVector {
  static constexpr int kWordsPerVector = kVectorBytes / 4;
  static constexpr int kValuesPerWord = weight_only::Decoder<kFormat>::kValuesPerWord;
  static constexpr int kValues = kWordsPerVector * kValuesPerWord;     // V: 16 or 32
  static constexpr int kPairs = kValues / 2;                           // 16-bit pairs once dequantized
  static constexpr int kTokenValuesPerVector = kVectorBytes / 2;       // 8 16-bit token values
  static constexpr int kTokenVectors = kValues / kTokenValuesPerVector;  // V / 8
  static constexpr int kChunkDepth = kLanesPerRow * kValues;           // K per chunk: 64 or 128
  static_assert(kWeightGroupQuantum % kValues == 0, "a vector lies in one scale group");
};

// kUnroll is deeper than the 16-bit kernel's (there, a chunk is two vectors per lane and row):
// four chunks of one vector keep as many bytes in flight. With 8 warps per item, two (more warps
// share the bytes in flight, and four spill registers under the 256-thread bound). Not yet
// measured: bench/NOTES.md will say.
using WqShortDepthConfig = StreamConfig<2, 1, 4, 4>;
using WqDecodeConfig = StreamConfig<4, 1, 4, 4>;
using WqLongDepthConfig = StreamConfig<8, 1, 2, 4>;

template <typename Body>
void dispatchWqConfig(int64_t depth, Body&& body) {
  if (depth <= kShortDepth) {
    body(WqShortDepthConfig{});
  } else if (depth >= kLongDepth) {
    body(WqLongDepthConfig{});
  } else {
    body(WqDecodeConfig{});
  }
}

// One pass: rows [passBegin, passEnd) of `expert` (at most 8 · tokenGroups) against column tile
// `tile`. Contains __syncthreads(): call from every thread.
template <WeightFormat kFormat, typename Element, class Config, int tokenGroups>
__device__ void wqPass(const WqProblem& p, float* partials, int32_t expert, int64_t tile, int64_t passBegin,
                       int64_t passEnd) {
  static_assert(Config::kColumnTiles == 1, "one 16-row mma tile per item");
  if constexpr (tokenGroups > 1) {
    // Fewer rows than half the groups: the smaller pass loads and multiplies less.
    if (passEnd - passBegin <= kMmaTokens * (tokenGroups / 2)) {
      wqPass<kFormat, Element, Config, tokenGroups / 2>(p, partials, expert, tile, passBegin, passEnd);
      return;
    }
  }
  using Vector = WqVector<kFormat>;
  using Decode = weight_only::Decoder<kFormat>;
  using T = typename Element::Storage;
  const StreamProblem& q = p.base;
  const int warp = threadIdx.x / kWarpSize;
  const int lane = threadIdx.x % kWarpSize;
  const int g = lane / kLanesPerRow;
  const int c = lane % kLanesPerRow;
  const int64_t laneDepth = c * Vector::kValues;  // the lane's first K within a chunk

  // The lane's weight rows g and g + 8 of the tile (or the gate/up pair), their scale rows, and
  // its token rows (nullptr: past the pass).
  int64_t rows[2];
  tileRows(q, tile, g, &rows[0], &rows[1]);
  const uint8_t* weightRows[2];
  int64_t scaleRows[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int64_t row = static_cast<int64_t>(expert) * q.cols + rows[h];
    weightRows[h] = static_cast<const uint8_t*>(q.weights) + row * p.rowBytes + c * kVectorBytes;
    scaleRows[h] = row * p.scaleGroups;
  }
  const T* tokenRows[tokenGroups];
#pragma unroll
  for (int j = 0; j < tokenGroups; ++j) {
    const int64_t row = passBegin + j * kMmaTokens + g;
    tokenRows[j] = row < passEnd ? static_cast<const T*>(q.input) + row * q.depth + laneDepth : nullptr;
  }

  float sums[tokenGroups][kAccumulators] = {};
  const int64_t chunks = (q.depth + Vector::kChunkDepth - 1) / Vector::kChunkDepth;
  for (int64_t first = warp; first < chunks; first += Config::kWarps * Config::kUnroll) {
    // Every chunk's weight bytes and scales first: kUnroll × 2 loads of 16 bytes in flight.
    uint4 packed[Config::kUnroll][2];
    float scales[Config::kUnroll][2];
#pragma unroll
    for (int u = 0; u < Config::kUnroll; ++u) {
      const int64_t chunk = first + u * Config::kWarps;
      const int64_t k = chunk * Vector::kChunkDepth + laneDepth;
      // K % V == 0 (supports()): the lane's vector is wholly inside K or wholly past it.
      const bool inside = k < q.depth;
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        packed[u][h] = loadStreamed(weightRows[h] + chunk * kLanesPerRow * kVectorBytes, inside);
        scales[u][h] = inside ? Decode::scale(p.scales, scaleRows[h] + k / p.groupWidth) : 0.0f;
      }
    }
#pragma unroll
    for (int u = 0; u < Config::kUnroll; ++u) {
      const int64_t k = (first + u * Config::kWarps) * Vector::kChunkDepth + laneDepth;
      const bool inside = k < q.depth;
      if (!__any_sync(kFullWarp, inside)) break;  // the rest of the batch lies past K
      // Dequantized pairs of rows g and g + 8: pair i holds the lane's values 2i, 2i + 1.
      uint32_t pairs[2][Vector::kPairs];
#pragma unroll
      for (int h = 0; h < 2; ++h) {
#pragma unroll
        for (int w = 0; w < Vector::kWordsPerVector; ++w) {
          weight_only::decodePairs<kFormat, Element>(word(packed[u][h], w), scales[u][h],
                                                     &pairs[h][w * Vector::kValuesPerWord / 2]);
        }
      }
#pragma unroll
      for (int j = 0; j < tokenGroups; ++j) {
#pragma unroll
        for (int v = 0; v < Vector::kTokenVectors; ++v) {
          const uint4 token = loadCached(tokenRows[j] + (k - laneDepth) + v * Vector::kTokenValuesPerVector,
                                         inside && tokenRows[j] != nullptr);
#pragma unroll
          for (int half = 0; half < 2; ++half) {
            // mma m = 2v + half: the lane's values 4m .. 4m + 3, i.e. pairs 2m, 2m + 1 and token
            // words 2·half, 2·half + 1 of vector v.
            const int m = 2 * v + half;
            mma16816<Element>(sums[j], pairs[0][2 * m], pairs[1][2 * m], pairs[0][2 * m + 1], pairs[1][2 * m + 1],
                              word(token, 2 * half), word(token, 2 * half + 1));
          }
        }
      }
    }
  }

  constexpr int kWarpStride = tokenGroups * kAccumulators * kWarpSize;
#pragma unroll
  for (int j = 0; j < tokenGroups; ++j) {
#pragma unroll
    for (int r = 0; r < kAccumulators; ++r) partials[warp * kWarpStride + (j * kAccumulators + r) * kWarpSize + lane] = sums[j][r];
  }
  __syncthreads();
  finishPass<Config, tokenGroups>(q, partials, expert, tile, passBegin, passEnd);
  __syncthreads();  // partials are rewritten by the next pass
}

template <WeightFormat kFormat, typename Element, class Config>
__global__ void __launch_bounds__(Config::kThreads) wqStreamKernel(WqProblem p) {
  __shared__ int32_t active[kMaxExperts];
  __shared__ float partials[Config::kWarps * Config::kMaxTokenGroups * kAccumulators * kWarpSize];

  const int activeExperts = listActiveExperts<Config>(p.base, active);
  const int64_t items = activeExperts * p.base.itemsPerExpert;
  for (int64_t item = blockIdx.x; item < items; item += gridDim.x) {
    const int32_t expert = active[item / p.base.itemsPerExpert];
    const int64_t tile = item % p.base.itemsPerExpert;
    int64_t begin, end;
    expertRows(p.base, expert, &begin, &end);
    for (int64_t passBegin = begin; passBegin < end; passBegin += Config::kRowsPerPass) {
      wqPass<kFormat, Element, Config, Config::kMaxTokenGroups>(p, partials, expert, tile, passBegin,
                                                                 min(passBegin + Config::kRowsPerPass, end));
    }
  }
}

// Resident blocks of one instantiation on the current device, queried once per device.
template <WeightFormat kFormat, typename Element, class Config>
int64_t wqResidentBlocks() {
  static PerDevice<int64_t> cached;
  return cached.get([](int device) {
    int multiprocessors = 0;
    int perMultiprocessor = 0;
    MOEKIT_CUDA_CHECK(cudaDeviceGetAttribute(&multiprocessors, cudaDevAttrMultiProcessorCount, device));
    MOEKIT_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&perMultiprocessor, wqStreamKernel<kFormat, Element, Config>,
                                                                    Config::kThreads, 0));
    return static_cast<int64_t>(multiprocessors) * std::max(perMultiprocessor, 1);
  });
}

template <WeightFormat kFormat, typename Element>
void launchWq(const GroupedGemmArgs& args, cudaStream_t stream) {
  const PackedWeights packed = PackedWeights::of(args);
  dispatchWqConfig(packed.depth, [&](auto config) {
    using Config = decltype(config);
    WqProblem p{};
    p.base = problemOf<Config>(args, args.output.data, args.output.dtype);
    p.base.input = args.input.data;
    p.base.weightScales = nullptr;  // the FP8 field; weight-only scales are p.scales
    p.base.depth = packed.depth;    // K, not the packed row's bytes
    p.scales = args.weightScales.data;
    p.rowBytes = weightRowBytes(kFormat, packed.depth);
    p.groupWidth = packed.groupWidth();
    p.scaleGroups = packed.scaleGroups();
    if (p.base.rows == 0 || p.base.cols == 0 || p.base.experts == 0) return;
    const int64_t maxItems = std::min<int64_t>(p.base.experts, p.base.rows) * p.base.itemsPerExpert;
    const int64_t blocks = std::max<int64_t>(std::min(maxItems, wqResidentBlocks<kFormat, Element, Config>()), 1);
    wqStreamKernel<kFormat, Element, Config><<<static_cast<unsigned>(blocks), Config::kThreads, 0, stream>>>(p);
    MOEKIT_CHECK_LAUNCH("wqStreamKernel");
  });
}

}  // namespace

bool supportsWeightOnly(const GroupedGemmArgs& args) {
  if (!isWeightOnly(args.weightFormat)) return false;
  const DType dtype = args.input.dtype;
  if (dtype != DType::BFloat16 && dtype != DType::Float16) return false;
  if (args.weights.dtype != DType::UInt8 || !isComputeFloat(args.output.dtype)) return false;
  if (args.bias.present() && !isComputeFloat(args.bias.dtype)) return false;
  const DType scaleDType = args.weightFormat == WeightFormat::Mxfp4 ? DType::UInt8 : DType::Float32;
  if (args.weightScales.dtype != scaleDType) return false;
  if (args.weights.dim(0) > kMaxExperts) return false;
  const PackedWeights packed = PackedWeights::of(args);
  const int64_t values = args.weightFormat == WeightFormat::Int8 ? WqVector<WeightFormat::Int8>::kValues
                                                                 : WqVector<WeightFormat::Int4>::kValues;
  // Whole 16-byte vectors along K (rows of packed bytes and of tokens stay 16-byte aligned), each
  // in one scale group; whole 16-row mma tiles (and so whole gate/up pairs) along N.
  if (packed.depth % values != 0) return false;
  if (packed.groupWidth() < packed.depth && packed.groupWidth() % values != 0) return false;
  if (args.weights.dim(2) != weightRowBytes(args.weightFormat, packed.depth)) return false;
  if (!aligned16(args.input.data) || !aligned16(args.weights.data)) return false;
  if (args.weights.dim(1) % kMmaRows != 0) return false;
  return computeCapability() >= 80;
}

void weightOnlyGroupedGemm(const GroupedGemmArgs& args, cudaStream_t stream) {
  weight_only::dispatchFormat(args.weightFormat, [&](auto format) {
    constexpr WeightFormat kFormat = decltype(format)::value;
    if (args.input.dtype == DType::BFloat16) {
      launchWq<kFormat, BF16>(args, stream);
    } else {
      launchWq<kFormat, F16>(args, stream);
    }
  });
}

}  // namespace moekit::cuda::small_m
