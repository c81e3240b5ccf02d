// The Hopper grouped GEMM's kernel: C[rows, N] = A[rows, K] · B_e[N, K]ᵀ per expert e (+ bias, + activation),
// on the copy engine (TMA) and the warpgroup tensor-core instructions (wgmma), sm_90a only.
//
// Both operands are K-major (A = token rows, B = weight rows e·N + n, PyTorch's Linear layout),
// which is wgmma's native "TN" form: TMA copies 64-wide K slices of each into 128-byte-swizzled
// shared memory and wgmma reads them from there through matrix descriptors.
//
// One CTA per SM, three warpgroups:
//   producer   (warpgroup 0, registers released down to kProducerRegisters): one thread walks the
//              CTA's tiles and issues the TMA copies of every K slice into a ring of kStages
//              stages, each guarded by a "full" mbarrier (bytes landed) and an "empty" one
//              (consumers done reading);
//   consumers  (warpgroups 1 and 2, registers raised to kConsumerRegisters): each owns 64 rows of
//              the 128 × blockN tile, runs the wgmmas of every stage into float32 accumulators in
//              registers, then the epilogue for its rows while the producer already fills the
//              ring with the next tile's slices: 16-bit outputs go out through shared memory by
//              TMA stores (sm90/bulk_store.cuh), float32 and interleaved gated ones straight from
//              registers (sm90/epilogue.cuh). That is the
//              Cooperative schedule; under PingPong (sm90/shapes.h) each consumer takes every
//              other tile whole and they take turns at the main loop (consumeAlternate()).
// Gathered rows (GroupedGemmArgs::gatherRows): the whole producer warpgroup copies each row tile by
// index instead of one TMA box (produceGathered()), so the layer needs no permuted copy.
// The grid is persistent over a tile list built on the device from the expert offsets
// (sm90/scheduler.cuh), so the host never reads them and the launch is graph-capturable.
//
// Tails cost nothing in the main loop: TMA fills the parts of a box outside A or B with zeros (the
// K tail, the last rows), and a row tile that reaches into the next expert's rows multiplies them
// too but does not store them. Gated activations are fused: for GateLayout::Halves the producer
// loads the gate rows and the matching up rows of the weights as the two halves of the B stage,
// so one thread holds both products of an output (see the epilogue); for Interleaved, gate and up
// are adjacent columns already.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cstdint>

#include "../async_copy.cuh"
#include "../check.h"
#include "../float_access.cuh"
#include "../per_device.h"
#include "arch.h"
#include "bulk_store.cuh"
#include "epilogue.cuh"
#include "problem.h"
#include "ptx.cuh"
#include "scheduler.cuh"
#include "shapes.h"
#include "tensor_map.h"
#include "wgmma.cuh"

namespace moekit::cuda::sm90 {
namespace {

// ---- Device side --------------------------------------------------------------------------------------
#if MOEKIT_SM90A_DEVICE

constexpr int kWarpsPerWarpgroup = 4;
// Register budget per thread after setmaxnreg: 128 · 40 + 256 · 232 fits the 64K register file.
constexpr uint32_t kProducerRegisters = 40;
constexpr uint32_t kConsumerRegisters = 232;

template <class Shape>
struct Ring {
  uint8_t* stages;  // kStages × (A box, B box), 1024-byte aligned
  uint64_t* full;   // stage s holds the bytes of its next K slice
  uint64_t* empty;  // every consumer warp has finished reading stage s

  __device__ uint8_t* a(int stage) const { return stages + stage * Shape::kStageBytes; }
  __device__ uint8_t* b(int stage) const { return a(stage) + Shape::kABytes; }
  // Where the producer's copies of `stage` go and are counted (produce()).
  __device__ uint8_t* weightBox(int stage) const { return b(stage); }
  __device__ uint64_t* landed(int stage) const { return &full[stage]; }
  // Blocks until both operand boxes of `stage` have landed (the consumers' wait).
  __device__ void waitReady(int stage, uint32_t phase) const { waitBarrier(&full[stage], phase); }
};

// Walks the ring: stage index and the parity of the barrier phase expected there.
template <class Shape>
struct RingPosition {
  int stage = 0;
  uint32_t phase = 0;
  __device__ void advance() {
    if (++stage == Shape::kStages) {
      stage = 0;
      phase ^= 1;
    }
  }
  // Moves past `count` stages read by someone else (each wrap of the ring flips the phase).
  __device__ void skip(int32_t count) {
    const int32_t ahead = stage + count;
    phase ^= static_cast<uint32_t>(ahead / Shape::kStages) & 1;
    stage = ahead % Shape::kStages;
  }
};

__device__ __forceinline__ int32_t depthSlices(const Problem& p, int blockK) { return (p.depth + blockK - 1) / blockK; }

// The weight box of K slice `slice` of `tile` by TMA into `weights`, counted on `landed`: a gated
// Halves tile reads its gate rows and the matching up rows as the box's two halves.
template <class Shape, Pairing pairing>
__device__ __forceinline__ void loadWeightBox(uint8_t* weights, const CUtensorMap* weightMap, const Problem& p,
                                              const Tile& tile, int32_t slice, uint64_t* landed) {
  const int32_t expertRow = tile.expert * p.cols;
  const int32_t k = slice * Shape::kWeightSliceWidth;
  if constexpr (pairing == Pairing::Halves) {
    constexpr int kHalfRows = Shape::kBlockN / 2;
    const int32_t gateRow = expertRow + tile.columnTile * kHalfRows;
    loadTile2d(weights, weightMap, k, gateRow, landed);
    loadTile2d(weights + Shape::kWeightBoxBytes / 2, weightMap, k, gateRow + p.cols / 2, landed);
  } else {
    loadTile2d(weights, weightMap, k, expertRow + tile.columnTile * Shape::kBlockN, landed);
  }
}

// The producer's loop, shared by every sm90 kernel: for each K slice of each of the CTA's tiles, once
// the consumers have released the stage, the A box and the weight box(es) by TMA, counted on the
// stage's landed() barrier. The ring says where the weight box goes (the B box, or the weight-only
// kernel's raw box); the shape says its bytes (kWeightBoxBytes, kLoadedBytes) and the width of a
// K slice in the weight map's inner coordinate (kWeightSliceWidth: elements, or packed bytes).
template <class Shape, Pairing pairing, class StageRing>
__device__ void produce(const CUtensorMap* inputMap, const CUtensorMap* weightMap, const Problem& p,
                        const TileScheduler<Shape::kBlockM>& scheduler, const StageRing& ring) {
  prefetchTensorMap(inputMap);
  prefetchTensorMap(weightMap);
  const int32_t slices = depthSlices(p, Shape::kBlockK);
  const int32_t tiles = scheduler.tileCount();
  RingPosition<Shape> position;
  for (int32_t index = blockIdx.x; index < tiles; index += gridDim.x) {
    const Tile tile = scheduler.locate(index);
    for (int32_t slice = 0; slice < slices; ++slice) {
      waitBarrier(&ring.empty[position.stage], position.phase ^ 1);
      uint64_t* landed = ring.landed(position.stage);
      arriveExpectBytes(landed, Shape::kLoadedBytes);
      loadTile2d(ring.a(position.stage), inputMap, slice * Shape::kBlockK, tile.rowStart, landed);
      loadWeightBox<Shape, pairing>(ring.weightBox(position.stage), weightMap, p, tile, slice, landed);
      position.advance();
    }
  }
}

// ---- The gathering producer -------------------------------------------------------------------------
// With gathered rows (Problem::gather; the 16-bit kernel only) no TMA box holds a row tile, so the
// whole producer warpgroup copies each tile's rows by index with cp.async, 16 bytes per copy, into
// the A box in the layout TMA's 128-byte swizzle gives it (16-byte chunk c of row r at chunk
// c ^ (r mod 8)), while its thread 0 still loads the weight box by TMA. A stage is full once the
// weight bytes have landed and each gathering thread's copies have: the full barriers expect
// kGatherThreads more arrivals (arriveOnAsyncCopies). Rows past the expert's end, and K past the
// depth, are zero-filled as TMA would fill them.
constexpr int kGatherThreads = kWarpgroupThreads;
constexpr int kCopyBytes = 16;    // one cp.async
constexpr int kSectorBytes = 32;  // what L2 hands an SM at a time
constexpr int kSwizzleRows = 8;   // rows of a 128-byte swizzle atom

// Which copies each gathering thread makes: two lanes share a row, so each warp-wide copy reads
// whole 32-byte sectors of 16 rows, and a thread keeps only kRowsPerThread source rows in
// registers (the producer runs on kProducerRegisters).
template <class Shape>
struct GatherLayout {
  static constexpr int kLanesPerRow = kSectorBytes / kCopyBytes;
  static constexpr int kChunksPerRow = Shape::kRowBytes / kCopyBytes;
  static constexpr int kChunksPerThread = kChunksPerRow / kLanesPerRow;
  static constexpr int kRowsPerPass = kGatherThreads / kLanesPerRow;  // rows the warpgroup copies at once
  static constexpr int kRowsPerThread = Shape::kBlockM / kRowsPerPass;
  static constexpr int kChunkElements = kCopyBytes / Shape::kElementBytes;
  static_assert(kRowsPerPass % kSwizzleRows == 0, "a thread's rows share their place in the swizzle atom");
  static_assert(Shape::kBlockM % kRowsPerPass == 0, "whole passes per row tile");
};

template <class Shape, Pairing pairing, class StageRing>
__device__ void produceGathered(const CUtensorMap* weightMap, const Problem& p, const TileScheduler<Shape::kBlockM>& scheduler,
                                const StageRing& ring) {
  using Layout = GatherLayout<Shape>;
  const int thread = threadIdx.x % kGatherThreads;
  if (thread == 0) prefetchTensorMap(weightMap);
  const int firstChunk = thread % Layout::kLanesPerRow;  // then every kLanesPerRow-th chunk
  const int firstRow = thread / Layout::kLanesPerRow;
  const int swizzle = firstRow % kSwizzleRows;
  const auto* input = static_cast<const uint8_t*>(p.input);
  const int64_t rowBytes = static_cast<int64_t>(p.depth) * Shape::kElementBytes;
  const int32_t slices = depthSlices(p, Shape::kBlockK);
  const int32_t tiles = scheduler.tileCount();
  RingPosition<Shape> position;
  for (int32_t index = blockIdx.x; index < tiles; index += gridDim.x) {
    const Tile tile = scheduler.locate(index);
    // The input row of each of this thread's rows of the tile, or -1 (zeros).
    int32_t sources[Layout::kRowsPerThread];
#pragma unroll
    for (int i = 0; i < Layout::kRowsPerThread; ++i) {
      const int32_t row = tile.rowStart + firstRow + i * Layout::kRowsPerPass;
      sources[i] = row < tile.rowEnd ? static_cast<int32_t>(p.gather.source(row)) : -1;
    }
    for (int32_t slice = 0; slice < slices; ++slice) {
      waitBarrier(&ring.empty[position.stage], position.phase ^ 1);
      uint64_t* landed = ring.landed(position.stage);
      if (thread == 0) {
        arriveExpectBytes(landed, Shape::kWeightBoxBytes);
        loadWeightBox<Shape, pairing>(ring.weightBox(position.stage), weightMap, p, tile, slice, landed);
      }
      const uint32_t box = sharedAddress(ring.a(position.stage)) + firstRow * Shape::kRowBytes;
#pragma unroll
      for (int i = 0; i < Layout::kRowsPerThread; ++i) {
        const uint8_t* rowStart = input + max(sources[i], 0) * rowBytes;
        const uint32_t rowBox = box + i * Layout::kRowsPerPass * Shape::kRowBytes;
#pragma unroll
        for (int j = 0; j < Layout::kChunksPerThread; ++j) {
          const int chunk = firstChunk + j * Layout::kLanesPerRow;
          const int32_t k = slice * Shape::kBlockK + chunk * Layout::kChunkElements;
          const bool valid = sources[i] >= 0 && k < p.depth;
          copyAsync16(rowBox + (chunk ^ swizzle) * kCopyBytes, valid ? rowStart + k * Shape::kElementBytes : input, valid);
        }
      }
      arriveOnAsyncCopies(landed);
      position.advance();
    }
  }
}

// The two barriers per stage. `copiers`: threads that also arrive on each full barrier when their
// cp.async copies land (produceGathered()); a producer of TMA copies alone has none.
template <class Shape>
__device__ void initStageBarriers(uint64_t* fullBarriers, uint64_t* emptyBarriers, uint32_t copiers = 0) {
  for (int stage = 0; stage < Shape::kStages; ++stage) {
    initBarrier(&fullBarriers[stage], 1 + copiers);  // the producer's arrive; the bytes are counted apart
    initBarrier(&emptyBarriers[stage], Shape::kStageReaders * kWarpsPerWarpgroup);
  }
}

// The start every sm90 kernel shares: the ring's stages at the first 1024-byte boundary of dynamic
// shared memory (128-byte swizzling needs it), the expert tile table built by warp 0, the stage
// barriers initialized by one thread of warp 1 (initBarriers), all visible before any warp goes on.
template <int blockM, class InitBarriers>
__device__ uint8_t* startCta(uint8_t* dynamicShared, ExpertTiles& expertTiles, const Problem& p, InitBarriers initBarriers) {
  const int warp = threadIdx.x / detail::kWarpSize;
  const int lane = threadIdx.x % detail::kWarpSize;
  if (warp == 0) buildExpertTiles<blockM>(expertTiles, p.offsets, p.experts, p.rows, p.columnTiles, p.faults, lane);
  if (warp == 1 && lane == 0) {
    initBarriers();
    fenceBarrierInit();
  }
  __syncthreads();
  const uintptr_t base = reinterpret_cast<uintptr_t>(dynamicShared);
  return reinterpret_cast<uint8_t*>((base + kSwizzleAlignment - 1) / kSwizzleAlignment * kSwizzleAlignment);
}

// Tells the producer this warp is done with `stage` (the empty barrier counts consumer warps).
__device__ __forceinline__ void releaseStage(uint64_t* empty, int stage) {
  if (threadIdx.x % detail::kWarpSize == 0) arrive(&empty[stage]);
}

// Called once a slice's wgmmas are committed: the previous slice's stage goes back to the producer
// as soon as its wgmmas have finished (this slice's keep running), and the position moves on.
template <class Shape>
__device__ __forceinline__ void passOnPreviousStage(uint64_t* empty, RingPosition<Shape>& position, int& previousStage,
                                                    int32_t slice) {
  if (slice > 0) {
    wgmmaWaitGroup<1>();
    releaseStage(empty, previousStage);
  }
  previousStage = position.stage;
  position.advance();
}

// The epilogue of 64 rows of `tile`, its rows 64 · rowHalf on: float32 and interleaved gated
// outputs from registers (sm90/epilogue.cuh), the others by TMA stores where `staging` is present
// (sm90/bulk_store.cuh).
template <typename Element, int blockN, Pairing pairing>
__device__ __forceinline__ void storeRows(const Problem& p, const Tile& tile, int rowHalf, const float (&acc)[blockN / 2],
                                          OutputStaging& staging) {
  if (p.outputDType == DType::Float32) {
    storeTileActivated<pairing, blockN, float>(p, tile, rowHalf, acc);
    return;
  }
  if constexpr (pairing != Pairing::Interleaved) {
    if (staging.present()) {
      bulkStoreRowsActivated<pairing, blockN, Element>(p, tile, tile.rowStart + rowHalf * kConsumerRows, acc, staging);
      return;
    }
  }
  storeTileActivated<pairing, blockN, typename Element::Storage>(p, tile, rowHalf, acc);
}

// The consumer warpgroups' loop, shared with the weight-only kernel (sm90/kernel_wq.cuh): any ring
// with a(), b(), waitReady() and `empty` barriers counted in consumer warps. 16-bit outputs go
// through `staging` where it is present (storeRows()).
template <typename Element, class Shape, Pairing pairing, class StageRing>
__device__ void consume(int consumer, const Problem& p, const TileScheduler<Shape::kBlockM>& scheduler, const StageRing& ring,
                        OutputStaging staging = {}) {
  constexpr int kSteps = Shape::kBlockK / Shape::kStepK;
  constexpr uint32_t kStepBytes = Shape::kStepK * Shape::kElementBytes;
  const int32_t slices = depthSlices(p, Shape::kBlockK);
  const int32_t tiles = scheduler.tileCount();
  float acc[Shape::kAccumulators] = {};
  RingPosition<Shape> position;
  for (int32_t index = blockIdx.x; index < tiles; index += gridDim.x) {
    const Tile tile = scheduler.locate(index);
    int previousStage = 0;
    for (int32_t slice = 0; slice < slices; ++slice) {
      ring.waitReady(position.stage, position.phase);
      if (p.gather.present()) fenceAsyncShared();  // rows copied by cp.async (generic proxy) → wgmma
      const uint64_t descA = matrixDescriptor(ring.a(position.stage) + consumer * Shape::kConsumerABytes);
      const uint64_t descB = matrixDescriptor(ring.b(position.stage));
      wgmmaFence();
      fenceAccumulators(acc);
#pragma unroll
      for (int step = 0; step < kSteps; ++step) {
        wgmmaAsync<Shape::kBlockN, Element>(acc, advanceDescriptor(descA, step * kStepBytes),
                                            advanceDescriptor(descB, step * kStepBytes), slice > 0 || step > 0);
      }
      wgmmaCommitGroup();
      passOnPreviousStage(ring.empty, position, previousStage, slice);
    }
    wgmmaWaitGroup<0>();
    fenceAccumulators(acc);
    releaseStage(ring.empty, previousStage);
    storeRows<Element, Shape::kBlockN, pairing>(p, tile, consumer, acc, staging);
  }
  staging.drain();
}

// Ping-pong turns (Schedule::PingPong): consumer c waits at named barrier kFirstTurnBarrier + c
// before each main loop but its first tile's, and the other consumer arrives there when its own
// main loop is done. Besides overlapping each epilogue with the other consumer's main loop, the
// turns keep the ring's parity waits sound: a consumer waits on a stage only once every earlier
// phase of it has completed (a parity wait cannot tell a phase from the one two before it).
constexpr uint32_t kFirstTurnBarrier = 1;  // named barrier 0 is __syncthreads()
constexpr uint32_t kTurnThreads = 2 * kWarpgroupThreads;
// Then one barrier per consumer for its store pipeline (sm90/bulk_store.cuh).
constexpr uint32_t kFirstStoreBarrier = kFirstTurnBarrier + kDefaultConsumers;

// The ping-pong consumer: tiles `consumer`, `consumer` + 2, ... of the CTA's sequence, whole (its
// 128 rows as two m64 wgmmas per K step into two accumulator halves), skipping the other
// consumer's stages in the ring. Any pairing: a 128-column gated tile holds its outputs' gate and
// up products in each half, as the cooperative kernel's do.
template <typename Element, class Shape, Pairing pairing, class StageRing>
__device__ void consumeAlternate(int consumer, const Problem& p, const TileScheduler<Shape::kBlockM>& scheduler,
                                 const StageRing& ring, OutputStaging staging) {
  constexpr int kSteps = Shape::kBlockK / Shape::kStepK;
  constexpr uint32_t kStepBytes = Shape::kStepK * Shape::kElementBytes;
  constexpr int kHalves = Shape::kBlockM / kConsumerRows;
  const int32_t slices = depthSlices(p, Shape::kBlockK);
  const int32_t tiles = scheduler.tileCount();
  const int32_t stride = static_cast<int32_t>(gridDim.x);
  float acc[kHalves][Shape::kAccumulators];
  RingPosition<Shape> position;
  position.skip(consumer * slices);
  for (int32_t index = blockIdx.x + consumer * stride; index < tiles; index += Shape::kConsumers * stride) {
    const Tile tile = scheduler.locate(index);
    if (index >= stride) syncNamedBarrier(kFirstTurnBarrier + consumer, kTurnThreads);
    int previousStage = 0;
    for (int32_t slice = 0; slice < slices; ++slice) {
      ring.waitReady(position.stage, position.phase);
      if (p.gather.present()) fenceAsyncShared();  // rows copied by cp.async (generic proxy) → wgmma
      const uint64_t descA = matrixDescriptor(ring.a(position.stage));
      const uint64_t descB = matrixDescriptor(ring.b(position.stage));
      wgmmaFence();
#pragma unroll
      for (int half = 0; half < kHalves; ++half) fenceAccumulators(acc[half]);
#pragma unroll
      for (int step = 0; step < kSteps; ++step) {
#pragma unroll
        for (int half = 0; half < kHalves; ++half) {
          wgmmaAsync<Shape::kBlockN, Element>(acc[half], advanceDescriptor(descA, half * Shape::kConsumerABytes + step * kStepBytes),
                                              advanceDescriptor(descB, step * kStepBytes), slice > 0 || step > 0);
        }
      }
      wgmmaCommitGroup();
      passOnPreviousStage(ring.empty, position, previousStage, slice);
    }
    wgmmaWaitGroup<0>();
#pragma unroll
    for (int half = 0; half < kHalves; ++half) fenceAccumulators(acc[half]);
    releaseStage(ring.empty, previousStage);
    // The other consumer's turn, if the CTA has a next tile; then its stages are skipped here.
    if (index + stride < tiles) arriveNamedBarrier(kFirstTurnBarrier + (1 - consumer), kTurnThreads);
    position.skip(slices);

#pragma unroll
    for (int half = 0; half < kHalves; ++half) storeRows<Element, Shape::kBlockN, pairing>(p, tile, half, acc[half], staging);
  }
  staging.drain();
}

// Consumer `consumer`'s output staging, after the ring (sm90/shapes.h), if the outputs go by TMA.
template <class Shape>
__device__ OutputStaging outputStaging(const Problem& p, const CUtensorMap* outputMap, const CUtensorMap* outputGroupMap,
                                       uint8_t* stages, int consumer) {
  OutputStaging staging;
  if (!p.bulkStores) return staging;
  staging.map = outputMap;
  staging.groupMap = outputGroupMap;
  staging.boxes = stages + Shape::kStages * Shape::kStageBytes + consumer * kStoreBuffers * kStoreBoxBytes;
  staging.barrier = kFirstStoreBarrier + consumer;
  return staging;
}

#endif  // MOEKIT_SM90A_DEVICE

template <typename Element, class Shape, Pairing pairing>
__global__ void __launch_bounds__(Shape::kThreads, 1)
    groupedGemmKernel(const __grid_constant__ CUtensorMap inputMap, const __grid_constant__ CUtensorMap weightMap,
                      const __grid_constant__ CUtensorMap outputMap, const __grid_constant__ CUtensorMap outputGroupMap,
                      const Problem p) {
#if MOEKIT_SM90A_DEVICE
  extern __shared__ uint8_t dynamicShared[];
  __shared__ uint64_t fullBarriers[Shape::kStages];
  __shared__ uint64_t emptyBarriers[Shape::kStages];
  __shared__ ExpertTiles expertTiles;
  const uint32_t copiers = p.gather.present() ? kGatherThreads : 0;
  uint8_t* const stages = startCta<Shape::kBlockM>(dynamicShared, expertTiles, p,
                                                   [&] { initStageBarriers<Shape>(fullBarriers, emptyBarriers, copiers); });
  const Ring<Shape> ring{stages, fullBarriers, emptyBarriers};

  const TileScheduler<Shape::kBlockM> scheduler(expertTiles, p.experts, p.columnTiles, p.bandRowTiles);
  const int warpgroup = threadIdx.x / kWarpgroupThreads;
  if (warpgroup == 0) {
    releaseRegisters<kProducerRegisters>();
    if (p.gather.present()) {
      produceGathered<Shape, pairing>(&weightMap, p, scheduler, ring);
    } else if (threadIdx.x == 0) {
      produce<Shape, pairing>(&inputMap, &weightMap, p, scheduler, ring);
    }
  } else {
    claimRegisters<kConsumerRegisters>();
    const int consumer = warpgroup - 1;
    const OutputStaging staging = outputStaging<Shape>(p, &outputMap, &outputGroupMap, stages, consumer);
    if constexpr (Shape::kSchedule == Schedule::PingPong) {
      consumeAlternate<Element, Shape, pairing>(consumer, p, scheduler, ring, staging);
    } else {
      consume<Element, Shape, pairing>(consumer, p, scheduler, ring, staging);
    }
  }
#endif
}

// ---- Launch ------------------------------------------------------------------------------------------------
// Raises a kernel's dynamic shared-memory limit, once per device. Every instantiation of the
// kernel has the same function type, so the caller keys the cache: one `raised` per instantiation.
template <typename Kernel>
void allowSharedMemory(Kernel kernel, int bytes, PerDevice<bool>& raised) {
  raised.get([&](int) {
    MOEKIT_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes));
    return true;
  });
}

template <class Shape>
Problem problemOf(const GroupedGemmArgs& args, Pairing pairing, int32_t bandRowTiles) {
  const GemmActivation& act = args.activation;
  Problem p{};
  p.bias = args.bias.present() ? args.bias.data : nullptr;
  p.biasDType = args.bias.dtype;
  p.output = args.output.data;
  p.outputDType = args.output.dtype;
  p.offsets = args.expertOffsets.as<int32_t>();
  p.faults = FaultSink::of(args);
  p.gather = RowGather::of(args);
  p.input = args.input.data;
  p.experts = static_cast<int32_t>(args.weights.dim(0));
  p.rows = static_cast<int32_t>(gemmRows(args));
  p.cols = static_cast<int32_t>(args.weights.dim(1));
  p.depth = static_cast<int32_t>(args.weights.dim(2));
  p.outputCols = pairing == Pairing::Plain ? p.cols : p.cols / 2;
  p.columnTiles = static_cast<int32_t>(columnTilesOf(p.cols, Shape::kBlockN, pairing));
  p.bandRowTiles = bandRowTiles;
  p.activate = act.enabled;
  p.kind = act.kind;
  p.alpha = act.alpha;
  p.limit = act.limit;
  return p;
}

template <typename Element, class Shape, Pairing pairing>
void launchGemm(const GroupedGemmArgs& args, cudaStream_t stream, int32_t bandRowTiles) {
  Problem p = problemOf<Shape>(args, pairing, bandRowTiles);
  // The copy engine stores 16-bit outputs in fragment layout (sm90/bulk_store.cuh); float32 ones
  // and interleaved gated ones go from registers.
  p.bulkStores = args.output.dtype != DType::Float32 && bulkStoresEnabled(pairing);
  const DType dtype = args.input.dtype;
  // A gated Halves tile reads its gate rows and its up rows as two boxes of half the tile.
  const uint32_t weightBoxRows = pairing == Pairing::Halves ? Shape::kBlockN / 2 : Shape::kBlockN;
  // Unused when the rows are gathered (produceGathered()), but made from the input as it is.
  const CUtensorMap inputMap = operandTensorMap(args.input.data, dtype, args.input.dim(0), p.depth, Shape::kBlockM, Shape::kBlockK);
  const CUtensorMap weightMap = operandTensorMap(args.weights.data, dtype, static_cast<int64_t>(p.experts) * p.cols,
                                                 p.depth, weightBoxRows, Shape::kBlockK);
  // Unused (the input's map in their place) unless the outputs go by TMA stores.
  const auto outputMapOf = [&](uint32_t boxRows) {
    return p.bulkStores ? outputTensorMap(args.output.data, args.output.dtype, p.rows, p.outputCols, boxRows, kStoreColumns) : inputMap;
  };
  const CUtensorMap outputMap = outputMapOf(kConsumerRows), outputGroupMap = outputMapOf(kStoreRowGroup);
  const auto kernel = groupedGemmKernel<Element, Shape, pairing>;
  static PerDevice<bool> sharedMemoryAllowed;
  allowSharedMemory(kernel, Shape::kDynamicSharedBytes, sharedMemoryAllowed);
  const int64_t blocks = std::max<int64_t>(
      std::min<int64_t>(deviceMultiprocessors(), tileBound(args, Shape::kBlockM, Shape::kBlockN)), 1);
  kernel<<<static_cast<unsigned>(blocks), Shape::kThreads, Shape::kDynamicSharedBytes, stream>>>(inputMap, weightMap, outputMap,
                                                                                                outputGroupMap, p);
  MOEKIT_CHECK_LAUNCH("sm90 groupedGemmKernel");
}

}  // namespace

template <typename Element, class Shape>
void launchShape(const GroupedGemmArgs& args, cudaStream_t stream, int32_t bandRowTiles) {
  switch (pairingOf(args)) {
    case Pairing::Halves: launchGemm<Element, Shape, Pairing::Halves>(args, stream, bandRowTiles); return;
    case Pairing::Interleaved: launchGemm<Element, Shape, Pairing::Interleaved>(args, stream, bandRowTiles); return;
    default: launchGemm<Element, Shape, Pairing::Plain>(args, stream, bandRowTiles); return;
  }
}

}  // namespace moekit::cuda::sm90
