// The Hopper grouped GEMM for weight-only weights (W8A16 / W4A16: Int8, Int4, MXFP4; the rule in
// native/core/op_args.h): C[rows, N] = A[rows, K] · w_e[N, K]ᵀ with w = q × scale dequantized
// inside the main loop, so the weights are read once, packed, and never written back out in 16
// bits (v1 dequantized the whole E × N × K into scratch first: bench/NOTES.md, wq-v1).
//
// The 16-bit kernel (sm90/kernel.cuh) with converter warpgroups between the copy engine and the
// tensor cores. Five warpgroups per CTA (four with the short tile), one CTA per SM:
//   producer   (warpgroup 0, one thread): TMA copies of each K slice's A box (swizzled, as in
//              the 16-bit kernel) and the matching packed weight bytes (a plain "raw" box) into
//              a ring of stages, counted on the stage's `loaded` barrier;
//   converters (warpgroups 1 and 2, every other stage each): per stage, every 16-byte chunk of
//              the B box (8 K values of one weight row) from its 4 or 8 packed bytes and the row's
//              group scale (ChunkCodec: the weight-only rule's in-loop lines in op_args.h), written
//              where the 128-byte swizzle puts it; then a proxy fence and an arrival on the
//              stage's `converted` barrier;
//   consumers  (warpgroups 3 and 4, or 3 alone): the 16-bit kernel's consume() unchanged: wgmma
//              from the A and B boxes, the fused epilogue, `empty` released per stage.
// The tile is 128 × 128, or 64 × 128 (one consumer) for few rows per expert (sm90/shapes.h,
// WqTileShape; the rule in grouped_gemm_sm90.cu): the converters' registers leave room for
// 64 × 128 float32 accumulator tiles, not 64 × 256 ones.
//
// Tails as in the 16-bit kernel: TMA fills A's and the raw box's parts outside the tensors with
// zeros; the converter writes zeros for K past the end and for rows past the last expert (whose
// scales do not exist), so no product reads a scale out of bounds.
#pragma once

#include "../weight_only.cuh"
#include "kernel.cuh"

namespace moekit::cuda::sm90 {
namespace {

// Registers after setmaxnreg. A tall tile's CTA of five warpgroups starts with 640 × 96, and
// setmaxnreg.inc only hands out what the CTA's own warps gave back (it waits for them otherwise: a
// claim of 136 hung the first two-converter version): the producer's 128 · (96 - 40) let the two
// consumers grow by 28 each, to 120 (a multiple of 8). The converters keep their 96. A short
// tile's CTA of four warpgroups starts with 128 per thread, which its one consumer's 64 × 128
// accumulators fit as they are: it claims nothing.
constexpr uint32_t kWqConsumerRegisters = 120;

constexpr int kFirstConverterWarpgroup = 1;

#if MOEKIT_SM90A_DEVICE

template <class Shape>
struct WqRing {
  uint8_t* stages;      // kStages × (A box, B box, raw box), 1024-byte aligned
  uint64_t* loaded;     // the A box and the raw box of stage s have landed
  uint64_t* converted;  // every warp of stage s's converter has written its part of the B box
  uint64_t* empty;      // every consumer warp has finished reading stage s

  __device__ uint8_t* a(int stage) const { return stages + stage * Shape::kStageBytes; }
  __device__ uint8_t* b(int stage) const { return a(stage) + Shape::kABytes; }
  __device__ uint8_t* raw(int stage) const { return b(stage) + Shape::kBBytes; }
  // Where the producer's copies of `stage` go and are counted (produce(): A and the raw box).
  __device__ uint8_t* weightBox(int stage) const { return raw(stage); }
  __device__ uint64_t* landed(int stage) const { return &loaded[stage]; }
  // The consumers' wait: the B box is written, and (for the A box's bytes) the copy has landed.
  __device__ void waitReady(int stage, uint32_t phase) const {
    waitBarrier(&converted[stage], phase);
    waitBarrier(&loaded[stage], phase);
  }
};

// The weight row (of all experts' E × N) behind row r of a tile's B box, or -1 past the last one.
template <class Shape, Pairing pairing>
__device__ __forceinline__ int64_t weightRowOf(const Problem& p, const Tile& tile, int r) {
  const int64_t expertRow = static_cast<int64_t>(tile.expert) * p.cols;
  int64_t row;
  if constexpr (pairing == Pairing::Halves) {
    constexpr int kHalfRows = Shape::kBlockN / 2;
    const int half = r / kHalfRows;  // 0: gate rows, 1: the matching up rows
    row = expertRow + half * (p.cols / 2) + static_cast<int64_t>(tile.columnTile) * kHalfRows + r % kHalfRows;
  } else {
    row = expertRow + static_cast<int64_t>(tile.columnTile) * Shape::kBlockN + r;
  }
  return row < static_cast<int64_t>(p.experts) * p.cols ? row : -1;
}

// One 16-byte chunk of the B box: 8 consecutive K values of one weight row, as 16-bit Elements,
// from 4 packed bytes (Int4, MXFP4: one word) or 8 (Int8: two words) and the row's group scale.
constexpr int kChunkBytes = 16;
constexpr int kChunkValues = 8;
constexpr int kChunkPairs = kChunkValues / 2;

// How a chunk is decoded, and how its scale is held (a 32-bit code, scaleCode / scaleOf below).
//   Packed (Int4 in bfloat16, MXFP4 in both): two values per instruction (weight_only.cuh's
//     Marlin conversions), pairs in K order: a byte permute puts nibbles 2p and 2p + 1 (byte p's
//     low and high nibble) at the bottom of the two halves, where nibblePair() decodes them; then
//     PairScale applies the scale. MXFP4 stays exact (op_args.h's rule); Int4 in bfloat16 is
//     w = rn16(q × rn16(scale)), the rule's in-loop line. About 2 instructions per weight.
//   Float (Int8, and Int4 in float16, whose scales would lose bits as float16 subnormals): each
//     value in float32, w = rn16(q × scale). About 4.5 instructions per weight.
template <WeightFormat kFormat, typename Element>
struct ChunkCodec {
  static constexpr bool kPacked = kFormat == WeightFormat::Mxfp4 || (kFormat == WeightFormat::Int4 && std::is_same_v<Element, BF16>);
  static constexpr int kPackedBytes = kChunkValues / weight_only::kValuesPerByte<kFormat>;
  using Packed = std::conditional_t<kPackedBytes == 8, uint2, uint32_t>;
  using PairScale = weight_only::PairScale<kFormat, Element>;

  // A chunk's scale is loaded as its stored code (scaleCode: a plain load, started a slice ahead)
  // and turned into what decode() multiplies by (scaleOf) only when it is used: a conversion at
  // load time would wait for the load there (wq-v3).
  __device__ static uint32_t scaleCode(const void* scales, int64_t index) {
    if constexpr (kPacked) {
      return PairScale::code(scales, index);
    } else {
      return __float_as_uint(weight_only::Decoder<kFormat>::scale(scales, index));
    }
  }
  __device__ static uint32_t scaleOf(uint32_t code) {
    if constexpr (kPacked) {
      return PairScale::fromCode(code);
    } else {
      return code;
    }
  }

  __device__ static uint4 decode(Packed packed, uint32_t scale) {
    uint32_t pairs[kChunkPairs];
    if constexpr (kPacked) {
      const uint32_t high = packed >> 4;  // byte p's high nibble at the bottom of byte p
#pragma unroll
      for (int p = 0; p < kChunkPairs; ++p) {
        // Result bytes 0 and 1 from byte p of `packed`, bytes 2 and 3 from byte p of `high`.
        const uint32_t selector = (p * 0x11u) | ((4u + p) * 0x11u) << 8;
        const uint32_t nibbles = __byte_perm(packed, high, selector);
        pairs[p] = PairScale::apply(weight_only::nibblePair<kFormat, Element>(nibbles, 0), scale);
      }
    } else {
      using Decode = weight_only::Decoder<kFormat>;
      uint32_t words[kPackedBytes / 4];
      if constexpr (kPackedBytes == 8) {
        words[0] = packed.x;
        words[1] = packed.y;
      } else {
        words[0] = packed;
      }
#pragma unroll
      for (int w = 0; w < kPackedBytes / 4; ++w) {
        weight_only::decodePairs<kFormat, Element>(words[w], __uint_as_float(scale), &pairs[w * Decode::kValuesPerWord / 2]);
      }
    }
    return make_uint4(pairs[0], pairs[1], pairs[2], pairs[3]);
  }
};

// The converter warpgroups' geometry. The converters take turns by stage: warpgroup c converts
// the whole B box of the ring's stages c, c + kConverters, ..., so that kConverters stages are
// converted at once, and every stage's B box is always written by the same threads. Each thread
// converts one weight row of its stages: the row's packed bytes of the K slice in two or four
// 16-byte loads, one or two group scales, and eight 16-byte chunks of B (8 K values each) written
// where the 128-byte swizzle puts them, so a quarter warp's stores (8 rows, one chunk each) cover
// all banks once. (Until wq-v7 a thread converted one chunk of 8 rows and both warpgroups every
// stage: a scale load per row and slice, about 380 instructions per thread and slice, most of
// them addressing; the stages waited for the converters' latency, about 1000 cycles each.)
template <class Shape>
struct ConverterLayout {
  static constexpr int kThreads = kWarpgroupThreads;  // one converter warpgroup per stage, one row per thread
  static constexpr int kChunksPerRow = Shape::kRowBytes / kChunkBytes;
  static constexpr int kPackedChunkBytes = kChunkValues * Shape::kRawRowBytes / Shape::kBlockK;
  static constexpr int kRawVectors = Shape::kRawRowBytes / 16;  // 16-byte loads of a row's packed slice
  static constexpr int kSwizzleRows = kSwizzleAtomBytes / Shape::kRowBytes;  // 8: rows of one 128-byte swizzle atom
  static_assert(Shape::kBlockN == kThreads, "one B row per converter thread");
  static_assert(kPackedChunkBytes == 4 || kPackedChunkBytes == 8, "a chunk packs into one or two words");
  static_assert(Shape::kBlockK == kChunksPerRow * kChunkValues, "a B row of a slice is whole chunks");
};

// The group scales of one K slice of the thread's row: a slice of 64 values spans at most two
// groups (groups are a whole row or a multiple of 32 values: supportsWeightOnlyShape), the group
// of its first value and that of its last.
template <WeightFormat kFormat, typename Element>
struct SliceScales {
  uint32_t first = 0, last = 0;  // scale codes (ChunkCodec::scaleCode); 0 past the last row
  int32_t group = -1;            // the group of the slice's first value; -1 past K

  // The scales of the slice of `width` values from k.
  __device__ void load(const Problem& p, int64_t scaleRow, int32_t k, int32_t width) {
    using Codec = ChunkCodec<kFormat, Element>;
    group = k < p.depth ? static_cast<int32_t>(p.groupOf.divide(k)) : -1;
    first = last = 0;
    if (group < 0 || scaleRow < 0) return;
    const int32_t lastGroup = static_cast<int32_t>(p.groupOf.divide(min(k + width - 1, p.depth - 1)));
    first = Codec::scaleCode(p.groupScales, scaleRow + group);
    last = lastGroup == group ? first : Codec::scaleCode(p.groupScales, scaleRow + lastGroup);
  }
};

// Converts one K slice of the thread's row into stage `position` with the scales in `use`, after
// starting the loads of the scales of `next` (this converter's next slice of the tile, if any)
// into `fill` (they land while this slice is converted; an exposed load per slice cost the first
// version of this kernel most of its time). Where that slice lies in the same groups (per-row
// scales, groups wider than the converters' stride) `fill` is a copy.
template <WeightFormat kFormat, typename Element, class Shape>
__device__ __forceinline__ void convertSlice(const Problem& p, const WqRing<Shape>& ring, const RingPosition<Shape>& position,
                                             int row, int64_t scaleRow, int32_t slice, int32_t next, int32_t slices,
                                             const SliceScales<kFormat, Element>& use, SliceScales<kFormat, Element>& fill) {
  using Layout = ConverterLayout<Shape>;
  using Codec = ChunkCodec<kFormat, Element>;
  static_assert(Codec::kPackedBytes == Layout::kPackedChunkBytes, "the raw box holds one codec chunk per B chunk");
  const int32_t nextK = next * Shape::kBlockK;
  const int32_t nextGroup = nextK < p.depth ? static_cast<int32_t>(p.groupOf.divide(nextK)) : -1;
  if (nextGroup == use.group && p.groupOf.divide(min(nextK + Shape::kBlockK - 1, p.depth - 1)) == static_cast<uint32_t>(use.group)) {
    fill = use;
  } else if (next < slices) {
    fill.load(p, scaleRow, nextK, Shape::kBlockK);
  }
  // Which chunks take the second scale, and which lie inside K and a real row (the others' bytes
  // are TMA's zero fill; their scale is 0, so they decode to zero whatever the stored scales).
  const int32_t k = slice * Shape::kBlockK;
  const int32_t secondFrom = use.group < 0 ? 0 : static_cast<int32_t>((int64_t{use.group} + 1) * p.groupWidth - k) / kChunkValues;
  const int32_t inside = scaleRow < 0 ? 0 : min(max(p.depth - k, 0) / kChunkValues, Layout::kChunksPerRow);
  waitBarrier(&ring.loaded[position.stage], position.phase);
  const uint32_t raw = sharedAddress(ring.raw(position.stage)) + row * Shape::kRawRowBytes;
  uint32_t words[Layout::kRawVectors * 4];
#pragma unroll
  for (int v = 0; v < Layout::kRawVectors; ++v) {
    const uint4 vector = loadShared128(raw + v * 16);
    words[4 * v] = vector.x;
    words[4 * v + 1] = vector.y;
    words[4 * v + 2] = vector.z;
    words[4 * v + 3] = vector.w;
  }
  const uint32_t b = sharedAddress(ring.b(position.stage)) + row * Shape::kRowBytes;
  const uint32_t firstScale = Codec::scaleOf(use.first);
  const uint32_t lastScale = Codec::scaleOf(use.last);
#pragma unroll
  for (int chunk = 0; chunk < Layout::kChunksPerRow; ++chunk) {
    typename Codec::Packed packed;
    if constexpr (Layout::kPackedChunkBytes == 8) {
      packed = make_uint2(words[2 * chunk], words[2 * chunk + 1]);
    } else {
      packed = words[chunk];
    }
    const uint32_t scale = chunk >= inside ? 0u : chunk >= secondFrom ? lastScale : firstScale;
    const int swizzled = chunk ^ (row % Layout::kSwizzleRows);
    storeShared128(b + swizzled * kChunkBytes, Codec::decode(packed, scale));
  }
  fenceAsyncShared();
  __syncwarp();
  if (threadIdx.x % detail::kWarpSize == 0) arrive(&ring.converted[position.stage]);
}

// The ring as one converter walks it: the position of the CTA's next slice, and whose turn it is.
template <class Shape>
struct ConverterTurns {
  RingPosition<Shape> position;
  int converter;  // 0 .. kConverters - 1

  __device__ bool mine() const { return position.stage % Shape::kConverters == converter; }
  // Slices from the current one to this converter's next stage after it.
  __device__ int32_t untilNext() const {
    RingPosition<Shape> ahead = position;
    int32_t steps = 0;
    do {
      ahead.advance();
      ++steps;
    } while (ahead.stage % Shape::kConverters != converter);
    return steps;
  }
  // Moves on from slice `slice` to `target` of a tile of `slices`, stopping at the tile's end.
  __device__ void walk(int32_t& slice, int32_t target, int32_t slices) {
    for (; slice < target && slice < slices; ++slice) position.advance();
  }
};

// A converter thread: its row of the slices of every tile that land in its stages, two at a time
// so that the two sets of scales trade places (use / fill) without register copies that would
// wait for loads in flight.
template <WeightFormat kFormat, typename Element, class Shape, Pairing pairing>
__device__ void convert(const Problem& p, const TileScheduler<Shape::kBlockM>& scheduler, const WqRing<Shape>& ring) {
  const int row = threadIdx.x % kWarpgroupThreads;  // the thread's row of every B box it converts
  const int32_t slices = depthSlices(p, Shape::kBlockK);
  const int32_t tiles = scheduler.tileCount();
  ConverterTurns<Shape> turns{RingPosition<Shape>{}, static_cast<int>(threadIdx.x / kWarpgroupThreads) - kFirstConverterWarpgroup};
  for (int32_t index = blockIdx.x; index < tiles; index += gridDim.x) {
    int32_t slice = 0;
    while (slice < slices && !turns.mine()) turns.walk(slice, slice + 1, slices);
    if (slice == slices) continue;  // none of the tile's slices is this converter's
    const int64_t weightRow = weightRowOf<Shape, pairing>(p, scheduler.locate(index), row);
    const int64_t scaleRow = weightRow < 0 ? -1 : weightRow * p.scaleGroups;  // -1: past the last row
    SliceScales<kFormat, Element> even, odd;
    even.load(p, scaleRow, slice * Shape::kBlockK, Shape::kBlockK);
    while (slice < slices) {
      int32_t next = slice + turns.untilNext();
      convertSlice<kFormat, Element, Shape>(p, ring, turns.position, row, scaleRow, slice, next, slices, even, odd);
      turns.walk(slice, next, slices);
      if (slice == slices) break;
      next = slice + turns.untilNext();
      convertSlice<kFormat, Element, Shape>(p, ring, turns.position, row, scaleRow, slice, next, slices, odd, even);
      turns.walk(slice, next, slices);
    }
  }
}

#endif  // MOEKIT_SM90A_DEVICE

template <typename Element, WeightFormat kFormat, class Shape, Pairing pairing>
__global__ void __launch_bounds__(Shape::kThreads, 1)
    groupedGemmWqKernel(const __grid_constant__ CUtensorMap inputMap, const __grid_constant__ CUtensorMap packedMap,
                        const Problem p) {
#if MOEKIT_SM90A_DEVICE
  extern __shared__ uint8_t dynamicShared[];
  __shared__ uint64_t loadedBarriers[Shape::kStages];
  __shared__ uint64_t convertedBarriers[Shape::kStages];
  __shared__ uint64_t emptyBarriers[Shape::kStages];
  __shared__ ExpertTiles expertTiles;
  uint8_t* const stages = startCta<Shape::kBlockM>(dynamicShared, expertTiles, p, [&] {
    initStageBarriers<Shape>(loadedBarriers, emptyBarriers);
    // One converter warpgroup converts each stage (ConverterLayout).
    for (int stage = 0; stage < Shape::kStages; ++stage) initBarrier(&convertedBarriers[stage], kWarpsPerWarpgroup);
  });
  const WqRing<Shape> ring{stages, loadedBarriers, convertedBarriers, emptyBarriers};

  const TileScheduler<Shape::kBlockM> scheduler(expertTiles, p.experts, p.columnTiles, p.bandRowTiles);
  const int warpgroup = threadIdx.x / kWarpgroupThreads;
  if (warpgroup == 0) {
    releaseRegisters<kProducerRegisters>();
    if (threadIdx.x == 0) produce<Shape, pairing>(&inputMap, &packedMap, p, scheduler, ring);
  } else if (warpgroup < kFirstConverterWarpgroup + Shape::kConverters) {
    convert<kFormat, Element, Shape, pairing>(p, scheduler, ring);
  } else {
    if constexpr (Shape::kConsumers == kDefaultConsumers) claimRegisters<kWqConsumerRegisters>();
    consume<Element, Shape, pairing>(warpgroup - kFirstConverterWarpgroup - Shape::kConverters, p, scheduler, ring);
  }
#endif
}

// The tile of a call: its height as asked (grouped_gemm_sm90.cu), its raw box by the format's bits.
template <WeightFormat kFormat, bool kShort>
using WqShapeOf = std::conditional_t<kFormat == WeightFormat::Int8, std::conditional_t<kShort, WqByteShortTile, WqByteTile>,
                                     std::conditional_t<kShort, WqNibbleShortTile, WqNibbleTile>>;

template <typename Element, WeightFormat kFormat, class Shape, Pairing pairing>
void launchWqGemm(const GroupedGemmArgs& args, cudaStream_t stream, int32_t bandRowTiles) {
  Problem p = problemOf<Shape>(args, pairing, bandRowTiles);
  const int64_t depth = args.input.dim(1);  // the packed weights' last extent is bytes, not K
  p.depth = static_cast<int32_t>(depth);
  p.groupScales = args.weightScales.data;
  p.scaleGroups = static_cast<int32_t>(weightScaleGroups(kFormat, args.weightGroupSize, depth));
  p.groupWidth = static_cast<int32_t>(weightGroupWidth(kFormat, args.weightGroupSize, depth));
  p.groupOf = Divider::of(static_cast<uint32_t>(p.groupWidth));
  const uint32_t weightBoxRows = pairing == Pairing::Halves ? Shape::kBlockN / 2 : Shape::kBlockN;
  const CUtensorMap inputMap = operandTensorMap(args.input.data, args.input.dtype, p.rows, depth, Shape::kBlockM, Shape::kBlockK);
  const CUtensorMap packedMap = packedTensorMap(args.weights.data, static_cast<int64_t>(p.experts) * p.cols,
                                                weightRowBytes(kFormat, depth), weightBoxRows, Shape::kRawRowBytes);
  const auto kernel = groupedGemmWqKernel<Element, kFormat, Shape, pairing>;
  static PerDevice<bool> sharedMemoryAllowed;
  allowSharedMemory(kernel, Shape::kDynamicSharedBytes, sharedMemoryAllowed);
  const int64_t blocks = std::max<int64_t>(
      std::min<int64_t>(deviceMultiprocessors(), tileBound(args, Shape::kBlockM, Shape::kBlockN)), 1);
  kernel<<<static_cast<unsigned>(blocks), Shape::kThreads, Shape::kDynamicSharedBytes, stream>>>(inputMap, packedMap, p);
  MOEKIT_CHECK_LAUNCH("sm90 groupedGemmWqKernel");
}

template <typename Element, WeightFormat kFormat, bool kShort>
void launchWqHeight(const GroupedGemmArgs& args, cudaStream_t stream, int32_t bandRowTiles) {
  using Shape = WqShapeOf<kFormat, kShort>;
  switch (pairingOf(args)) {
    case Pairing::Halves: launchWqGemm<Element, kFormat, Shape, Pairing::Halves>(args, stream, bandRowTiles); return;
    case Pairing::Interleaved: launchWqGemm<Element, kFormat, Shape, Pairing::Interleaved>(args, stream, bandRowTiles); return;
    default: launchWqGemm<Element, kFormat, Shape, Pairing::Plain>(args, stream, bandRowTiles); return;
  }
}

template <typename Element, WeightFormat kFormat>
void launchWqFormat(const GroupedGemmArgs& args, cudaStream_t stream, bool shortTile, int32_t bandRowTiles) {
  if (shortTile) {
    launchWqHeight<Element, kFormat, true>(args, stream, bandRowTiles);
  } else {
    launchWqHeight<Element, kFormat, false>(args, stream, bandRowTiles);
  }
}

}  // namespace

template <typename Element>
void launchWqShape(const GroupedGemmArgs& args, cudaStream_t stream, bool shortTile, int32_t bandRowTiles) {
  weight_only::dispatchFormat(args.weightFormat, [&](auto format) {
    launchWqFormat<Element, decltype(format)::value>(args, stream, shortTile, bandRowTiles);
  });
}

}  // namespace moekit::cuda::sm90
