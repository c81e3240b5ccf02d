// Permutation on the GPU: a stable counting sort of (token, slot) pairs by local expert, then a
// gather.
//
//   1. countChunks:    the pairs in chunks of 1024 in flat order t*K + j, one block each: the
//                      chunk's histogram of local expert ids (shared-memory atomics: exact), kept
//                      per (expert, chunk) and added into expertOffsets[1..E]; pairs of other
//                      ranks' experts get sourceToPermuted = -1 (dropped).
//   2. scanOffsets:    one block turns the counts into offsets, in place; chunkBases, one block per
//                      expert, turns its per-chunk counts into the row each chunk's first pair of
//                      it goes to (offset + the earlier chunks' counts).
//   3. rankChunks:     each chunk's block ranks its pairs in flat order from those rows (warps in
//                      turn, peers within a warp by __match_any_sync), so rows within an expert
//                      keep the flat order (stable) without any ordering-dependent atomics.
//                      Layers of more local experts than a block's shared memory counts (over
//                      ChunkSort::kMaxExperts) take countExperts and rankAndScatter instead: one
//                      block per expert walks every pair.
//   4. gatherRows:     (only when `permuted` is given) one warp per used row (below offsets[E], read on the device) copies its
//                      token's input row; rows past it are left as they were. When `permuted` is
//                      Float8E4M3, gatherQuantizeRows quantizes the row on the way instead (the
//                      W8A8 rule, quantize.cuh), writing its scales into permutedScales, so the
//                      first GEMM reads FP8 rows without a quantizing pass of its own. FP8
//                      rows that come with their scales (inputScales) are copied with them.
//
// Decode batches (at most FewPairs::kMaxPairs pairs and kMaxExperts local experts) do steps 1-3 in
// one block instead (sortFewPairs): the launches above cost more than the work at that size,
// and in a CUDA-graph replay each node adds its own latency. The smallest of them (at most
// SortGatherLaunch::kMaxPairs pairs, rows copied as they are) take one launch for all four steps
// (sortAndGatherKernel): every block sorts the few pairs itself in shared memory, so it knows
// every row's source without waiting for another block, block 0 writes the maps and offsets, and
// each warp then copies one row.
//
// Expert ids outside [0, totalExperts) are dropped like remote experts' pairs, so every write stays
// in bounds, and reported as a fault (faults.cuh) that poisons the op's outputs.
#include <cstdint>

#include "alignment.h"
#include "check.h"
#include "faults.cuh"
#include "flat_launch.h"
#include "float_access.cuh"
#include "kernels.h"
#include "quantize.cuh"
#include "row_copy.cuh"
#include "scratch.h"

namespace moekit::cuda {
namespace {

constexpr int kWarpSize = 32;
constexpr unsigned kFullWarp = 0xffffffffu;

struct ScanLaunch {
  static constexpr int kThreads = 1024;
};
struct RankLaunch {
  static constexpr int kThreads = 256;
  static constexpr int kPairsPerThread = 4;
  static constexpr int kPairsPerChunk = kThreads * kPairsPerThread;
};
struct GatherLaunch {
  static constexpr int kRowsPerBlock = 8;  // one warp per row
  static constexpr int kThreads = kRowsPerBlock * kWarpSize;
};
struct SortGatherLaunch {
  static constexpr int kThreads = 256;        // one thread per pair while sorting, one warp per row after
  static constexpr int kMaxPairs = kThreads;  // a decode step of up to 32 tokens of top-8
  static constexpr int kRowsPerBlock = kThreads / kWarpSize;
};

constexpr int32_t kDropped = -1;

// Which experts are local: global ids [first, first + count) of [0, total).
struct LocalExperts {
  int32_t first;
  int32_t count;
  int32_t total;

  // Reports an id outside [0, total) (it is then dropped: outside [first, first + count) too).
  __device__ void checkId(int32_t id, int64_t pair, const FaultSink& faults) const {
    if (id < 0 || id >= total) reportFault(faults, FaultKind::ExpertIdOutOfRange, id, pair, total);
  }

  // The local index of global expert `id`, or kDropped.
  __device__ int32_t localIndex(int32_t id) const {
    const int32_t local = id - first;  // ids and ranges are int32: no overflow past them below
    return id >= first && local < count ? local : kDropped;
  }
};

// Inclusive prefix sum over the block (blockDim.x a multiple of 32, at most 1024). `warpTotals`
// holds 32 ints of shared memory. Returns this thread's inclusive sum; *blockTotal gets the sum of
// all threads. Contains __syncthreads(): every thread of the block must call it.
__device__ int blockInclusiveScan(int value, int* warpTotals, int* blockTotal) {
  const int lane = threadIdx.x % kWarpSize;
  const int warp = threadIdx.x / kWarpSize;
  const int warps = blockDim.x / kWarpSize;
  for (int offset = 1; offset < kWarpSize; offset *= 2) {
    const int neighbour = __shfl_up_sync(kFullWarp, value, offset);
    if (lane >= offset) value += neighbour;
  }
  if (lane == kWarpSize - 1) warpTotals[warp] = value;
  __syncthreads();
  if (warp == 0) {
    int total = lane < warps ? warpTotals[lane] : 0;
    for (int offset = 1; offset < kWarpSize; offset *= 2) {
      const int neighbour = __shfl_up_sync(kFullWarp, total, offset);
      if (lane >= offset) total += neighbour;
    }
    warpTotals[lane] = total;  // now inclusive over warps
  }
  __syncthreads();
  const int result = value + (warp > 0 ? warpTotals[warp - 1] : 0);
  *blockTotal = warpTotals[warps - 1];
  __syncthreads();  // warpTotals may be reused by the caller's next scan
  return result;
}

// offsets[e + 1] += number of pairs of local expert e (offsets zeroed beforehand); dropped pairs
// are marked in sourceToPermuted.
__global__ void countExpertsKernel(const int32_t* ids, int64_t pairs, LocalExperts experts, int32_t* offsets,
                                   int32_t* sourceToPermuted, FaultSink faults) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < pairs;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    experts.checkId(ids[i], i, faults);
    const int32_t local = experts.localIndex(ids[i]);
    if (local == kDropped) {
      sourceToPermuted[i] = kDropped;
    } else {
      atomicAdd(offsets + local + 1, 1);
    }
  }
}

// In place: offsets[1..E] hold counts; afterwards offsets[e] = sum of counts below e.
__global__ void scanOffsetsKernel(int32_t* offsets, int32_t experts) {
  __shared__ int warpTotals[kWarpSize];
  int carry = 0;
  for (int32_t begin = 1; begin <= experts; begin += blockDim.x) {
    const int32_t e = begin + threadIdx.x;
    const int count = e <= experts ? offsets[e] : 0;
    int chunkTotal;
    const int inclusive = blockInclusiveScan(count, warpTotals, &chunkTotal);
    if (e <= experts) offsets[e] = carry + inclusive;
    carry += chunkTotal;
  }
  if (threadIdx.x == 0) offsets[0] = 0;
}

// Block e ranks the pairs of local expert e in flat order and writes both maps. Each thread owns
// kPairsPerThread consecutive pairs of a chunk, so a prefix sum over threads preserves the order.
__global__ void rankAndScatterKernel(const int32_t* ids, int64_t pairs, LocalExperts experts, const int32_t* offsets,
                                     int32_t* sourceToPermuted, int32_t* permutedToSource) {
  __shared__ int warpTotals[kWarpSize];
  const int32_t expert = blockIdx.x;
  int64_t nextRow = offsets[expert];
  for (int64_t chunk = 0; chunk < pairs; chunk += RankLaunch::kPairsPerChunk) {
    const int64_t first = chunk + static_cast<int64_t>(threadIdx.x) * RankLaunch::kPairsPerThread;
    bool mine[RankLaunch::kPairsPerThread];
    int count = 0;
    for (int i = 0; i < RankLaunch::kPairsPerThread; ++i) {
      const int64_t pair = first + i;
      mine[i] = false;
      if (pair < pairs) mine[i] = experts.localIndex(ids[pair]) == expert;
      count += mine[i];
    }
    // Most chunks hold none of a given expert's pairs when E is large: skip their scan.
    if (__syncthreads_or(count) == 0) continue;
    int chunkTotal;
    const int inclusive = blockInclusiveScan(count, warpTotals, &chunkTotal);
    int64_t row = nextRow + inclusive - count;
    for (int i = 0; i < RankLaunch::kPairsPerThread; ++i) {
      if (!mine[i]) continue;
      sourceToPermuted[first + i] = static_cast<int32_t>(row);
      permutedToSource[row] = static_cast<int32_t>(first + i);
      ++row;
    }
    nextRow += chunkTotal;
  }
}

struct FewPairs {
  static constexpr int kMaxPairs = 1024;  // one thread per pair, one block
  static constexpr int kMaxExperts = 1024;
};

// The general sort's chunks: one block of one thread per pair, as a decode batch's sort.
struct ChunkSort {
  static constexpr int kPairsPerChunk = FewPairs::kMaxPairs;
  static constexpr int kMaxExperts = FewPairs::kMaxExperts;  // counted in shared memory
};

// Thread i of the block holds the pair `pair` of local expert `local` (kDropped: none), the block's
// pairs in flat order by thread. Writes each pair's row, nextRow[local] + the number of earlier
// pairs of its expert in the block, into both maps (sourceToPermuted only where given), and
// advances nextRow past the block's pairs. Within a warp the earlier peers come from
// __match_any_sync; the warps take turns, so the order stays the flat pair order (stable).
// Contains __syncthreads(): every thread of the block must call it.
__device__ void rankInOrder(int32_t local, int64_t pair, int* nextRow, int32_t* sourceToPermuted, int32_t* permutedToSource) {
  const int lane = threadIdx.x % kWarpSize;
  const int warp = threadIdx.x / kWarpSize;
  const unsigned peers = __match_any_sync(kFullWarp, local);
  const unsigned lowerLanes = (1u << lane) - 1u;
  for (int turn = 0; turn < static_cast<int>(blockDim.x / kWarpSize); ++turn) {
    if (turn == warp && local != kDropped) {
      const int row = nextRow[local] + __popc(peers & lowerLanes);
      if (sourceToPermuted != nullptr) sourceToPermuted[pair] = row;
      permutedToSource[row] = static_cast<int32_t>(pair);
    }
    __syncwarp();
    // The lowest lane of each group of peers advances its expert past the group's rows.
    if (turn == warp && local != kDropped && (peers & lowerLanes) == 0) nextRow[local] += __popc(peers);
    __syncthreads();
  }
}

// Step 1 by chunks (ChunkSort::kPairsPerChunk threads, block c = chunk c): chunkCounts[e * chunks +
// c] = the chunk's pairs of local expert e, also added into offsets[e + 1] (zeroed beforehand);
// dropped pairs are marked in sourceToPermuted and bad ids reported.
__global__ void __launch_bounds__(ChunkSort::kPairsPerChunk)
countChunksKernel(const int32_t* ids, int64_t pairs, LocalExperts experts, int64_t chunks, int32_t* chunkCounts,
                  int32_t* offsets, int32_t* sourceToPermuted, FaultSink faults) {
  __shared__ int counts[ChunkSort::kMaxExperts];
  for (int e = threadIdx.x; e < experts.count; e += blockDim.x) counts[e] = 0;
  __syncthreads();
  const int64_t pair = static_cast<int64_t>(blockIdx.x) * ChunkSort::kPairsPerChunk + threadIdx.x;
  if (pair < pairs) {
    experts.checkId(ids[pair], pair, faults);
    const int32_t local = experts.localIndex(ids[pair]);
    if (local == kDropped) {
      sourceToPermuted[pair] = kDropped;
    } else {
      atomicAdd(counts + local, 1);
    }
  }
  __syncthreads();
  for (int e = threadIdx.x; e < experts.count; e += blockDim.x) {
    const int count = counts[e];
    chunkCounts[e * chunks + blockIdx.x] = count;
    if (count > 0) atomicAdd(offsets + e + 1, count);
  }
}

// Block e, after scanOffsets: its chunks' counts become the rows their first pairs of expert e go
// to, offsets[e] + the counts of the earlier chunks (in place).
__global__ void chunkBasesKernel(const int32_t* offsets, int64_t chunks, int32_t* chunkCounts) {
  __shared__ int warpTotals[kWarpSize];
  int32_t* counts = chunkCounts + blockIdx.x * chunks;
  int carry = offsets[blockIdx.x];
  for (int64_t begin = 0; begin < chunks; begin += blockDim.x) {
    const int64_t chunk = begin + threadIdx.x;
    const int count = chunk < chunks ? counts[chunk] : 0;
    int total;
    const int inclusive = blockInclusiveScan(count, warpTotals, &total);
    if (chunk < chunks) counts[chunk] = carry + inclusive - count;
    carry += total;
  }
}

// Step 3 by chunks (block c = chunk c): the chunk's pairs ranked in flat order from its rows.
__global__ void __launch_bounds__(ChunkSort::kPairsPerChunk)
rankChunksKernel(const int32_t* ids, int64_t pairs, LocalExperts experts, int64_t chunks, const int32_t* chunkBases,
                 int32_t* sourceToPermuted, int32_t* permutedToSource) {
  __shared__ int nextRow[ChunkSort::kMaxExperts];
  for (int e = threadIdx.x; e < experts.count; e += blockDim.x) nextRow[e] = chunkBases[e * chunks + blockIdx.x];
  __syncthreads();
  const int64_t pair = static_cast<int64_t>(blockIdx.x) * ChunkSort::kPairsPerChunk + threadIdx.x;
  const int32_t local = pair < pairs ? experts.localIndex(ids[pair]) : kDropped;
  rankInOrder(local, pair, nextRow, sourceToPermuted, permutedToSource);
}

// One block's shared memory for sortFewPairs.
struct FewPairsScratch {
  int counts[FewPairs::kMaxExperts];
  int nextRow[FewPairs::kMaxExperts];
  int warpTotals[kWarpSize];
};

// Steps 1-3 for a decode batch, by one block with one thread per pair (blockDim.x >= pairs): a
// shared-memory histogram, a scan into offsets (all E + 1 written, so no memset is needed), then
// the ranks (rankInOrder), in the flat pair order (stable) as in the general path.
// permutedToSource is always written (global or shared memory); offsets and sourceToPermuted only
// where given, and faults only when `reportsFaults` (a block that sorts for its own use passes null
// and false).
// Returns the used rows. Contains __syncthreads(): every thread of the block must call it.
__device__ int sortFewPairs(const int32_t* ids, int32_t pairs, LocalExperts experts, FewPairsScratch& scratch,
                            const FaultSink& faults, bool reportsFaults, int32_t* offsets, int32_t* sourceToPermuted,
                            int32_t* permutedToSource) {
  for (int e = threadIdx.x; e < experts.count; e += blockDim.x) scratch.counts[e] = 0;
  __syncthreads();

  const int pair = threadIdx.x;
  if (pair < pairs && reportsFaults) experts.checkId(ids[pair], pair, faults);
  const int32_t local = pair < pairs ? experts.localIndex(ids[pair]) : kDropped;
  if (pair < pairs && local == kDropped && sourceToPermuted != nullptr) sourceToPermuted[pair] = kDropped;
  if (local != kDropped) atomicAdd(scratch.counts + local, 1);
  __syncthreads();

  int carry = 0;
  for (int begin = 0; begin < experts.count; begin += blockDim.x) {
    const int e = begin + threadIdx.x;
    const int count = e < experts.count ? scratch.counts[e] : 0;
    int chunkTotal;
    const int inclusive = blockInclusiveScan(count, scratch.warpTotals, &chunkTotal);
    if (e < experts.count) {
      if (offsets != nullptr) offsets[e + 1] = carry + inclusive;
      scratch.nextRow[e] = carry + inclusive - count;
    }
    carry += chunkTotal;
  }
  if (threadIdx.x == 0 && offsets != nullptr) offsets[0] = 0;
  __syncthreads();

  rankInOrder(local, pair, scratch.nextRow, sourceToPermuted, permutedToSource);
  return carry;
}

__global__ void __launch_bounds__(FewPairs::kMaxPairs)
sortFewPairsKernel(const int32_t* ids, int32_t pairs, LocalExperts experts, int32_t* offsets, int32_t* sourceToPermuted,
                   int32_t* permutedToSource, FaultSink faults) {
  __shared__ FewPairsScratch scratch;
  sortFewPairs(ids, pairs, experts, scratch, faults, true, offsets, sourceToPermuted, permutedToSource);
}

// Steps 1-4 for the smallest decode batches in one launch (pairs <= SortGatherLaunch::kMaxPairs):
// each block sorts the pairs into its own shared memory (a few microseconds of redundant work that
// spares a launch), block 0 also writes the maps, the offsets and the faults, then each warp of
// the grid copies the used rows it owns: permuted[row] = input[permutedToSource[row] / topK].
template <typename Unit>
__global__ void __launch_bounds__(SortGatherLaunch::kThreads)
sortAndGatherKernel(const int32_t* ids, int32_t pairs, LocalExperts experts, int64_t topK, const Unit* input,
                    int64_t unitsPerRow, Unit* permuted, int32_t* offsets, int32_t* sourceToPermuted,
                    int32_t* permutedToSource, FaultSink faults) {
  __shared__ FewPairsScratch scratch;
  __shared__ int32_t rowSource[SortGatherLaunch::kMaxPairs];
  const bool writes = blockIdx.x == 0;
  const int usedRows = sortFewPairs(ids, pairs, experts, scratch, faults, writes, writes ? offsets : nullptr,
                                    writes ? sourceToPermuted : nullptr, rowSource);
  if (writes) {
    for (int row = threadIdx.x; row < usedRows; row += blockDim.x) permutedToSource[row] = rowSource[row];
  }
  const int lane = threadIdx.x % kWarpSize;
  for (int row = blockIdx.x * SortGatherLaunch::kRowsPerBlock + threadIdx.x / kWarpSize; row < usedRows;
       row += gridDim.x * SortGatherLaunch::kRowsPerBlock) {
    const int64_t token = rowSource[row] / topK;
    copyRowByWarp(input + token * unitsPerRow, permuted + row * unitsPerRow, unitsPerRow, lane);
  }
}

// permuted[row] = input[permutedToSource[row] / topK] for the used rows [0, *usedRows), copied in
// units of `Unit` bytes.
template <typename Unit>
__global__ void gatherRowsKernel(const Unit* input, const int32_t* permutedToSource, const int32_t* usedRows,
                                 int64_t topK, int64_t unitsPerRow, Unit* permuted) {
  const int lane = threadIdx.x % kWarpSize;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * GatherLaunch::kRowsPerBlock + threadIdx.x / kWarpSize;
  if (row >= *usedRows) return;
  const int64_t token = permutedToSource[row] / topK;
  copyRowByWarp(input + token * unitsPerRow, permuted + row * unitsPerRow, unitsPerRow, lane);
}

// As gatherRowsKernel, into FP8 rows [*usedRows, hidden] and their scales [*usedRows, ceil(hidden / 128)].
template <typename Format>
__global__ void gatherQuantizeRowsKernel(const typename Format::Storage* input, const int32_t* permutedToSource,
                                         const int32_t* usedRows, int64_t topK, int64_t hidden, bool vectorLoads,
                                         bool vectorStores, uint8_t* permuted, float* permutedScales) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * GatherLaunch::kRowsPerBlock + threadIdx.x / kWarpSize;
  if (row >= *usedRows) return;
  const int64_t token = permutedToSource[row] / topK;
  const StoredRow<Format> source{input + token * hidden, hidden, vectorLoads};
  quantizeRowWarp(source, hidden, permuted + row * hidden, permutedScales + row * fp8BlockCount(hidden), vectorStores);
}

// Copies the used rows [0, *usedRows) of `from` (rows of rowBytes, any dtype) into `to` in permuted
// order: to[row] = from[permutedToSource[row] / topK].
void gatherRows(const void* from, void* to, size_t rowBytes, const int32_t* permutedToSource, const int32_t* usedRows,
                int64_t topK, unsigned blocks, cudaStream_t stream) {
  dispatchCopyUnit(rowBytes, from, to, [&](auto unit) {
    using Unit = decltype(unit);
    gatherRowsKernel<Unit><<<blocks, GatherLaunch::kThreads, 0, stream>>>(
        static_cast<const Unit*>(from), permutedToSource, usedRows, topK, static_cast<int64_t>(rowBytes / sizeof(Unit)),
        static_cast<Unit*>(to));
    MOEKIT_CHECK_LAUNCH("gatherRowsKernel");
  });
}

// Steps 1-3 by chunks (pairs > 0, 1 to ChunkSort::kMaxExperts local experts); offsets zeroed.
void sortPairsByChunks(const int32_t* ids, int64_t pairs, LocalExperts local, int32_t* offsets, int32_t* sourceToPermuted,
                       int32_t* permutedToSource, const FaultSink& faults, cudaStream_t stream) {
  const int32_t experts = local.count;
  const int64_t chunks = ceilDiv(pairs, int64_t{ChunkSort::kPairsPerChunk});
  // Per (expert, chunk): first the chunk's count, then its first row. Freed after the kernels.
  const ScratchBuffer chunkCounts(sizeof(int32_t) * experts * chunks, stream);
  auto* counts = static_cast<int32_t*>(chunkCounts.data());
  const auto chunkBlocks = static_cast<unsigned>(chunks);
  countChunksKernel<<<chunkBlocks, ChunkSort::kPairsPerChunk, 0, stream>>>(ids, pairs, local, chunks, counts, offsets,
                                                                          sourceToPermuted, faults);
  MOEKIT_CHECK_LAUNCH("countChunksKernel");
  scanOffsetsKernel<<<1, ScanLaunch::kThreads, 0, stream>>>(offsets, experts);
  MOEKIT_CHECK_LAUNCH("scanOffsetsKernel");
  chunkBasesKernel<<<static_cast<unsigned>(experts), ScanLaunch::kThreads, 0, stream>>>(offsets, chunks, counts);
  MOEKIT_CHECK_LAUNCH("chunkBasesKernel");
  rankChunksKernel<<<chunkBlocks, ChunkSort::kPairsPerChunk, 0, stream>>>(ids, pairs, local, chunks, counts,
                                                                         sourceToPermuted, permutedToSource);
  MOEKIT_CHECK_LAUNCH("rankChunksKernel");
}

// Steps 1-3 in general: any number of pairs and experts.
void sortPairs(const int32_t* ids, int64_t pairs, LocalExperts local, int32_t* offsets, int32_t* sourceToPermuted,
               int32_t* permutedToSource, const FaultSink& faults, cudaStream_t stream) {
  const int32_t experts = local.count;
  MOEKIT_CUDA_CHECK(cudaMemsetAsync(offsets, 0, sizeof(int32_t) * (experts + 1), stream));
  if (pairs > 0 && experts >= 1 && experts <= ChunkSort::kMaxExperts) {
    sortPairsByChunks(ids, pairs, local, offsets, sourceToPermuted, permutedToSource, faults, stream);
    return;
  }
  if (pairs > 0) {
    countExpertsKernel<<<FlatLaunch::blocks(pairs), FlatLaunch::kThreads, 0, stream>>>(ids, pairs, local, offsets,
                                                                                      sourceToPermuted, faults);
    MOEKIT_CHECK_LAUNCH("countExpertsKernel");
  }
  scanOffsetsKernel<<<1, ScanLaunch::kThreads, 0, stream>>>(offsets, experts);
  MOEKIT_CHECK_LAUNCH("scanOffsetsKernel");
  if (pairs == 0 || experts == 0) return;

  // One block per local expert.
  rankAndScatterKernel<<<experts, RankLaunch::kThreads, 0, stream>>>(ids, pairs, local, offsets, sourceToPermuted,
                                                                     permutedToSource);
  MOEKIT_CHECK_LAUNCH("rankAndScatterKernel");
}

}  // namespace

void permute(const PermuteArgs& args, cudaStream_t stream) {
  const int64_t tokens = args.topkIds.dim(0);
  const int64_t topK = args.topkIds.dim(1);
  const int64_t pairs = tokens * topK;
  const int32_t experts = args.localExpertCount;
  const LocalExperts local{args.firstExpert, args.localExpertCount, args.totalExperts};
  const FaultSink faults = FaultSink::of(args);
  const int32_t* ids = args.topkIds.as<int32_t>();
  auto* offsets = args.expertOffsets.as<int32_t>();
  auto* sourceToPermuted = args.sourceToPermuted.as<int32_t>();
  auto* permutedToSource = args.permutedToSource.as<int32_t>();
  // Without `permuted` only the maps are written (a grouped GEMM gathers the rows itself).
  const bool writesRows = args.permuted.present();
  const int64_t hidden = writesRows ? args.input.dim(1) : 0;
  const size_t rowBytes = static_cast<size_t>(hidden) * dtypeSize(args.input.dtype);

  const bool copiesRows = writesRows && !args.inputScales.present() && args.permuted.dtype == args.input.dtype;
  if (copiesRows && pairs > 0 && pairs <= SortGatherLaunch::kMaxPairs && experts <= FewPairs::kMaxExperts) {
    const auto blocks = static_cast<unsigned>(ceilDiv(pairs, SortGatherLaunch::kRowsPerBlock));
    dispatchCopyUnit(rowBytes, args.input.data, args.permuted.data, [&](auto unit) {
      using Unit = decltype(unit);
      sortAndGatherKernel<Unit><<<blocks, SortGatherLaunch::kThreads, 0, stream>>>(
          ids, static_cast<int32_t>(pairs), local, topK, static_cast<const Unit*>(args.input.data),
          static_cast<int64_t>(rowBytes / sizeof(Unit)), static_cast<Unit*>(args.permuted.data), offsets, sourceToPermuted,
          permutedToSource, faults);
      MOEKIT_CHECK_LAUNCH("sortAndGatherKernel");
    });
    return;
  }
  if (pairs > 0 && pairs <= FewPairs::kMaxPairs && experts <= FewPairs::kMaxExperts) {
    const int threads = static_cast<int>(ceilDiv(pairs, kWarpSize)) * kWarpSize;
    sortFewPairsKernel<<<1, threads, 0, stream>>>(ids, static_cast<int32_t>(pairs), local, offsets, sourceToPermuted,
                                                  permutedToSource, faults);
    MOEKIT_CHECK_LAUNCH("sortFewPairsKernel");
  } else {
    sortPairs(ids, pairs, local, offsets, sourceToPermuted, permutedToSource, faults, stream);
  }
  if (!writesRows || pairs == 0 || experts == 0 || rowBytes == 0) return;

  // Sized for every pair being local; blocks past offsets[E] return at once.
  const auto gatherBlocks = static_cast<unsigned>(ceilDiv(pairs, GatherLaunch::kRowsPerBlock));
  if (args.inputScales.present()) {
    // FP8 rows that carry their scales: both copied as they are.
    const size_t scaleRowBytes = static_cast<size_t>(args.inputScales.dim(1)) * sizeof(float);
    gatherRows(args.input.data, args.permuted.data, rowBytes, permutedToSource, offsets + experts, topK, gatherBlocks, stream);
    gatherRows(args.inputScales.data, args.permutedScales.data, scaleRowBytes, permutedToSource, offsets + experts, topK,
               gatherBlocks, stream);
    return;
  }
  if (args.permuted.dtype == DType::Float8E4M3) {
    constexpr int64_t kFour = quantize_detail::kValuesPerLane;
    const bool vectorLoads = hidden % kFour == 0 && alignedTo(args.input.data, kFour * dtypeSize(args.input.dtype));
    const bool vectorStores = hidden % kFour == 0 && alignedTo(args.permuted.data, kFour);
    dispatchFloat(args.input.dtype, "permute input", [&](auto format) {
      using Format = decltype(format);
      gatherQuantizeRowsKernel<Format><<<gatherBlocks, GatherLaunch::kThreads, 0, stream>>>(
          static_cast<const typename Format::Storage*>(args.input.data), permutedToSource, offsets + experts, topK, hidden,
          vectorLoads, vectorStores, args.permuted.as<uint8_t>(), args.permutedScales.as<float>());
      MOEKIT_CHECK_LAUNCH("gatherQuantizeRowsKernel");
    });
    return;
  }
  gatherRows(args.input.data, args.permuted.data, rowBytes, permutedToSource, offsets + experts, topK, gatherBlocks, stream);
}

}  // namespace moekit::cuda
