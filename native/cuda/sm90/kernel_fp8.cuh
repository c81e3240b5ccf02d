// The Hopper grouped GEMM with FP8 block-scaled weights (WeightFormat::Fp8Block128, computed W8A8:
// native/core/op_args.h): e4m3 × e4m3 on the FP8 tensor cores, sm_90a only. It is the 16-bit
// kernel (sm90/kernel.cuh: same producer, TMA ring, persistent banded scheduler and epilogue) with
// another consumer:
//
//   - A stage holds one 128-wide block of K (a 128-byte swizzled row is 128 e4m3 values), so all
//     of a stage's products share one activation scale per row and one weight scale per 128 rows
//     of the weights.
//   - wgmma sums FP8 products with limited precision, so a stage's products are summed from zero
//     (m64n128k32, four K steps per stage) into kHalfAccumulators registers, then added into the
//     tile's float32 accumulators times (row scale × weight block scale): DeepGEMM's promotion.
//     The consumer waits for its own wgmmas before promoting; the other consumer warpgroup's
//     wgmmas keep the tensor cores busy meanwhile.
//   - The tile's columns are multiplied in halves of 128 (one wgmma N each), each promoted in
//     turn, so one set of block registers serves the whole tile. A half's 128 weight rows span at
//     most two scale blocks (the up rows of GateLayout::Halves start at N/2, which need not be a
//     multiple of 128); its 16 chunks of 8 columns switch from the first block's scale to the
//     second's at `split`.
//   - Scales come from global memory (L2): a thread's two rows' activation scales and the
//     half's weight scales, read before waiting on the stage so their latency hides behind it.
//
// The epilogue writes float outputs as the 16-bit kernel does, or FP8 outputs quantized in place
// (sm90/epilogue.cuh, storeTileQuantized): the first GEMM of an FP8 layer hands its SwiGLU output
// to the second already quantized.
#pragma once

#include <algorithm>
#include <cstdint>

#include "kernel.cuh"

namespace moekit::cuda::sm90 {
namespace {

#if MOEKIT_SM90A_DEVICE

// The weight-scale rows of one half of a tile: chunks [0, split) use `low`, the rest `high`.
struct HalfScales {
  const float* low;   // [depthBlocks] of the weight block holding the half's first row
  const float* high;  // of the next block (clamped; the same as low when split == 16)
  int split;
};

// The first weight row (within the expert) of half `half` of column tile `columnTile`.
template <class Shape, Pairing pairing>
__device__ __forceinline__ int32_t halfFirstRow(const Problem& p, int32_t columnTile, int half) {
  if constexpr (pairing == Pairing::Halves) {
    // Gate rows, then the matching up rows (the producer loads them as the stage's two halves).
    return (half == 0 ? 0 : p.cols / 2) + columnTile * (Shape::kBlockN / 2);
  } else {
    return columnTile * Shape::kBlockN + half * Shape::kHalfN;
  }
}

template <class Shape, Pairing pairing>
__device__ HalfScales halfScales(const Problem& p, const Tile& tile, int half) {
  constexpr int kChunkRows = 8;  // accumulator columns per chunk (wgmma.cuh)
  constexpr int kBlock = static_cast<int>(kFp8BlockSize);
  const int32_t firstRow = halfFirstRow<Shape, pairing>(p, tile.columnTile, half);
  // A tail tile's rows may run past the expert's (their products are never stored): clamp.
  const int32_t block = min(firstRow / kBlock, p.colBlocks - 1);
  const int32_t next = min(block + 1, p.colBlocks - 1);
  const float* expertScales = p.weightScales + static_cast<int64_t>(tile.expert) * p.colBlocks * p.depthBlocks;
  return HalfScales{expertScales + static_cast<int64_t>(block) * p.depthBlocks,
                    expertScales + static_cast<int64_t>(next) * p.depthBlocks,
                    (kBlock - firstRow % kBlock) / kChunkRows};
}

// acc[chunk c of the half] += partial[c] × rowScale × (weight scale of c's block).
template <class Shape>
__device__ __forceinline__ void promote(float* acc, const float (&partial)[Shape::kHalfAccumulators], float rowScale0,
                                        float rowScale1, float lowScale, float highScale, int split) {
  constexpr int kChunkRegisters = 4;  // rows r, r + 8 × two adjacent columns (wgmma.cuh)
#pragma unroll
  for (int chunk = 0; chunk < Shape::kHalfAccumulators / kChunkRegisters; ++chunk) {
    const float weightScale = chunk < split ? lowScale : highScale;
    const float factor0 = rowScale0 * weightScale;
    const float factor1 = rowScale1 * weightScale;
    float* sums = acc + chunk * kChunkRegisters;
    const float* block = partial + chunk * kChunkRegisters;
    sums[0] = fmaf(block[0], factor0, sums[0]);
    sums[1] = fmaf(block[1], factor0, sums[1]);
    sums[2] = fmaf(block[2], factor1, sums[2]);
    sums[3] = fmaf(block[3], factor1, sums[3]);
  }
}

template <class Shape, Pairing pairing>
__device__ void consumeFp8(int consumer, const Problem& p, const TileScheduler<Shape::kBlockM>& scheduler,
                           const Ring<Shape>& ring) {
  static_assert(pairing != Pairing::Halves || Shape::kHalves == 2, "gate and up halves are the two wgmma halves");
  constexpr int kSteps = Shape::kBlockK / Shape::kStepK;
  constexpr uint32_t kStepBytes = Shape::kStepK * Shape::kElementBytes;
  constexpr int kWarpRows = 16;
  constexpr int kLaneGroup = 4;
  constexpr int kSecondRowOffset = 8;
  const int32_t slices = depthSlices(p, Shape::kBlockK);
  const int32_t tiles = scheduler.tileCount();
  const int warp = (threadIdx.x / detail::kWarpSize) % (kConsumerRows / kWarpRows);
  const int lane = threadIdx.x % detail::kWarpSize;
  float acc[Shape::kAccumulators];
  float partial[Shape::kHalfAccumulators];
  RingPosition<Shape> position;
  for (int32_t index = blockIdx.x; index < tiles; index += gridDim.x) {
    const Tile tile = scheduler.locate(index);
    // The thread's rows (wgmma.cuh's layout): their activation scales, or none past the input.
    const int32_t row0 = tile.rowStart + consumer * kConsumerRows + warp * kWarpRows + lane / kLaneGroup;
    const int32_t row1 = row0 + kSecondRowOffset;
    const float* rowScales0 = row0 < p.rows ? p.inputScales + static_cast<int64_t>(row0) * p.depthBlocks : nullptr;
    const float* rowScales1 = row1 < p.rows ? p.inputScales + static_cast<int64_t>(row1) * p.depthBlocks : nullptr;
    HalfScales halves[Shape::kHalves];
#pragma unroll
    for (int half = 0; half < Shape::kHalves; ++half) halves[half] = halfScales<Shape, pairing>(p, tile, half);
#pragma unroll
    for (int i = 0; i < Shape::kAccumulators; ++i) acc[i] = 0.0f;

    for (int32_t slice = 0; slice < slices; ++slice) {
      const float rowScale0 = rowScales0 != nullptr ? rowScales0[slice] : 0.0f;
      const float rowScale1 = rowScales1 != nullptr ? rowScales1[slice] : 0.0f;
      float lowScales[Shape::kHalves], highScales[Shape::kHalves];
#pragma unroll
      for (int half = 0; half < Shape::kHalves; ++half) {
        lowScales[half] = halves[half].low[slice];
        highScales[half] = halves[half].high[slice];
      }
      waitBarrier(&ring.full[position.stage], position.phase);
      const uint64_t descA = matrixDescriptor(ring.a(position.stage) + consumer * Shape::kConsumerABytes);
#pragma unroll
      for (int half = 0; half < Shape::kHalves; ++half) {
        const uint64_t descB = matrixDescriptor(ring.b(position.stage) + half * Shape::kHalfBBytes);
        wgmmaFence();
        fenceAccumulators(partial);
#pragma unroll
        for (int step = 0; step < kSteps; ++step) {
          wgmmaFp8Async(partial, advanceDescriptor(descA, step * kStepBytes), advanceDescriptor(descB, step * kStepBytes), step > 0);
        }
        wgmmaCommitGroup();
        wgmmaWaitGroup<0>();
        fenceAccumulators(partial);
        if (half == Shape::kHalves - 1) releaseStage(ring.empty, position.stage);
        promote<Shape>(acc + half * Shape::kHalfAccumulators, partial, rowScale0, rowScale1, lowScales[half], highScales[half],
                       halves[half].split);
      }
      position.advance();
    }

    switch (p.outputDType) {
      case DType::Float8E4M3: storeTileQuantizedActivated<pairing, Shape::kBlockN>(p, tile, consumer, acc); break;
      case DType::BFloat16: storeTileActivated<pairing, Shape::kBlockN, __nv_bfloat16>(p, tile, consumer, acc); break;
      case DType::Float16: storeTileActivated<pairing, Shape::kBlockN, __half>(p, tile, consumer, acc); break;
      default: storeTileActivated<pairing, Shape::kBlockN, float>(p, tile, consumer, acc); break;
    }
  }
}

#endif  // MOEKIT_SM90A_DEVICE

template <class Shape, Pairing pairing>
__global__ void __launch_bounds__(Shape::kThreads, 1)
    groupedGemmFp8Kernel(const __grid_constant__ CUtensorMap inputMap, const __grid_constant__ CUtensorMap weightMap,
                         const Problem p) {
#if MOEKIT_SM90A_DEVICE
  extern __shared__ uint8_t dynamicShared[];
  __shared__ uint64_t fullBarriers[Shape::kStages];
  __shared__ uint64_t emptyBarriers[Shape::kStages];
  __shared__ ExpertTiles expertTiles;
  uint8_t* const stages = startCta<Shape::kBlockM>(dynamicShared, expertTiles, p, [&] { initStageBarriers<Shape>(fullBarriers, emptyBarriers); });
  const Ring<Shape> ring{stages, fullBarriers, emptyBarriers};

  const TileScheduler<Shape::kBlockM> scheduler(expertTiles, p.experts, p.columnTiles, p.bandRowTiles);
  const int warpgroup = threadIdx.x / kWarpgroupThreads;
  if (warpgroup == 0) {
    releaseRegisters<kProducerRegisters>();
    if (threadIdx.x == 0) produce<Shape, pairing>(&inputMap, &weightMap, p, scheduler, ring);
  } else {
    claimRegisters<kConsumerRegisters>();
    consumeFp8<Shape, pairing>(warpgroup - 1, p, scheduler, ring);
  }
#endif
}

template <class Shape, Pairing pairing>
void launchFp8Gemm(const GroupedGemmArgs& args, const uint8_t* input, const float* inputScales, cudaStream_t stream,
                   int32_t bandRowTiles) {
  Problem p = problemOf<Shape>(args, pairing, bandRowTiles);
  p.inputScales = inputScales;
  p.weightScales = args.weightScales.as<float>();
  p.outputScales = args.outputScales.present() ? args.outputScales.as<float>() : nullptr;
  p.depthBlocks = static_cast<int32_t>(fp8Blocks(p.depth));
  p.colBlocks = static_cast<int32_t>(fp8Blocks(p.cols));
  p.outputBlocks = static_cast<int32_t>(fp8Blocks(p.outputCols));
  // A gated Halves tile reads its gate rows and its up rows as two boxes of half the tile.
  const uint32_t weightBoxRows = pairing == Pairing::Halves ? Shape::kBlockN / 2 : Shape::kBlockN;
  const CUtensorMap inputMap = operandTensorMap(input, DType::Float8E4M3, p.rows, p.depth, Shape::kBlockM, Shape::kBlockK);
  const CUtensorMap weightMap = operandTensorMap(args.weights.data, DType::Float8E4M3, static_cast<int64_t>(p.experts) * p.cols,
                                                 p.depth, weightBoxRows, Shape::kBlockK);
  const auto kernel = groupedGemmFp8Kernel<Shape, pairing>;
  static PerDevice<bool> sharedMemoryAllowed;
  allowSharedMemory(kernel, Shape::kDynamicSharedBytes, sharedMemoryAllowed);
  const int64_t blocks = std::max<int64_t>(
      std::min<int64_t>(deviceMultiprocessors(), tileBound(args, Shape::kBlockM, Shape::kBlockN)), 1);
  kernel<<<static_cast<unsigned>(blocks), Shape::kThreads, Shape::kDynamicSharedBytes, stream>>>(inputMap, weightMap, p);
  MOEKIT_CHECK_LAUNCH("sm90 groupedGemmFp8Kernel");
}

}  // namespace

template <class Shape>
void launchFp8Shape(const GroupedGemmArgs& args, const uint8_t* input, const float* inputScales, cudaStream_t stream,
                    int32_t bandRowTiles) {
  const Pairing pairing = pairingOf(args);
  if constexpr (Shape::kHalves == 2) {
    switch (pairing) {
      case Pairing::Halves: launchFp8Gemm<Shape, Pairing::Halves>(args, input, inputScales, stream, bandRowTiles); return;
      case Pairing::Interleaved: launchFp8Gemm<Shape, Pairing::Interleaved>(args, input, inputScales, stream, bandRowTiles); return;
      default: break;
    }
  } else if (pairing != Pairing::Plain) {
    // Gate and up must be the two wgmma halves, and a tile's outputs a whole FP8 scale group.
    throw NativeError("E_INVALID_ARGUMENT", "sm90 FP8 grouped GEMM: gated activations take the wide tile");
  }
  launchFp8Gemm<Shape, Pairing::Plain>(args, input, inputScales, stream, bandRowTiles);
}

}  // namespace moekit::cuda::sm90
