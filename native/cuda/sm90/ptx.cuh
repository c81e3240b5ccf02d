// Named wrappers for the Hopper PTX the sm90 grouped GEMM is made of, so the kernel reads as the
// algorithm: mbarriers (the stage ring), bulk tensor copies (TMA), wgmma ordering, shared-memory
// matrix descriptors and register reallocation between warpgroups.
#pragma once

#include <cuda.h>

#include <cstdint>

#include "arch.h"

namespace moekit::cuda::sm90 {

#if MOEKIT_SM90A_DEVICE

__device__ __forceinline__ uint32_t sharedAddress(const void* pointer) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(pointer));
}

// ---- Plain shared-memory access ---------------------------------------------------------------------
// Loads and stores named as shared::cta, for code that holds shared addresses as integers: a
// generic pointer into dynamic shared memory can compile to generic LD/ST, which wait on the long
// scoreboard, and two such pointers may alias, so the compiler keeps every load behind the
// stores before it (the weight-only converter lost most of its time to both: bench/NOTES.md, wq-v3).
// volatile keeps them in program order with the barrier waits around them.
__device__ __forceinline__ uint4 loadShared128(uint32_t address) {
  uint4 value;
  asm volatile("ld.shared.v4.b32 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(value.x), "=r"(value.y), "=r"(value.z), "=r"(value.w)
               : "r"(address));
  return value;
}
__device__ __forceinline__ void storeShared128(uint32_t address, uint4 value) {
  asm volatile("st.shared.v4.b32 [%0], {%1, %2, %3, %4};\n" ::"r"(address), "r"(value.x), "r"(value.y), "r"(value.z),
               "r"(value.w)
               : "memory");
}

// ---- mbarriers -------------------------------------------------------------------------------------
__device__ __forceinline__ void initBarrier(uint64_t* barrier, uint32_t arrivals) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(sharedAddress(barrier)), "r"(arrivals));
}

// Makes initialized barriers visible to the copy engine (the async proxy) before any TMA uses them.
__device__ __forceinline__ void fenceBarrierInit() { asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory"); }

// One arrival that also announces `bytes` of TMA traffic the phase must wait for.
__device__ __forceinline__ void arriveExpectBytes(uint64_t* barrier, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(sharedAddress(barrier)), "r"(bytes)
               : "memory");
}

// Arrives once this thread's cp.async copies issued so far have landed. noinc: the arrival is one
// of those the barrier was initialized to expect.
__device__ __forceinline__ void arriveOnAsyncCopies(uint64_t* barrier) {
  asm volatile("cp.async.mbarrier.arrive.noinc.shared::cta.b64 [%0];\n" ::"r"(sharedAddress(barrier)) : "memory");
}

__device__ __forceinline__ void arrive(uint64_t* barrier) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(sharedAddress(barrier)) : "memory");
}

// Blocks until the phase of parity `parity` has completed. A fresh barrier is in phase 0, so
// waiting for parity 1 returns at once: that is how the producer's first pass over the ring
// finds every stage free.
__device__ __forceinline__ void waitBarrier(uint64_t* barrier, uint32_t parity) {
  const uint32_t address = sharedAddress(barrier);
  uint32_t done = 0;
  do {
    asm volatile(
        "{\n.reg .pred p;\n"
        "mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n"
        "selp.u32 %0, 1, 0, p;\n}\n"
        : "=r"(done)
        : "r"(address), "r"(parity)
        : "memory");
  } while (done == 0);
}

// Makes this thread's ordinary shared-memory writes visible to the async proxy (TMA, wgmma)
// before a barrier arrival tells the readers they may start.
__device__ __forceinline__ void fenceAsyncShared() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }

// ---- TMA -----------------------------------------------------------------------------------------------
__device__ __forceinline__ void prefetchTensorMap(const CUtensorMap* map) {
  asm volatile("prefetch.tensormap [%0];\n" ::"l"(reinterpret_cast<uint64_t>(map)) : "memory");
}

// Copies the box at (inner, outer) = (k, row) of a 2-D tensor map into shared memory and counts
// its bytes on `barrier`. Parts of the box outside the tensor arrive as zeros.
__device__ __forceinline__ void loadTile2d(void* destination, const CUtensorMap* map, int32_t k, int32_t row,
                                           uint64_t* barrier) {
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3}], [%4];\n" ::"r"(
          sharedAddress(destination)),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(k), "r"(row), "r"(sharedAddress(barrier))
      : "memory");
}

// The TMA store: the box at (column, row) of a 2-D tensor map written from shared memory (parts of
// the box outside the tensor are not written). Asynchronous: the issuing thread groups its stores
// (commitBulkStores()) and waits on the groups (waitBulkStoresRead(), waitBulkStores()).
__device__ __forceinline__ void storeTile2d(const CUtensorMap* map, const void* source, int32_t column, int32_t row) {
  asm volatile("cp.async.bulk.tensor.2d.global.shared::cta.bulk_group [%0, {%1, %2}], [%3];\n" ::"l"(
                   reinterpret_cast<uint64_t>(map)),
               "r"(column), "r"(row), "r"(sharedAddress(source))
               : "memory");
}
__device__ __forceinline__ void commitBulkStores() { asm volatile("cp.async.bulk.commit_group;\n" ::: "memory"); }
// Until every committed store of this thread has read its shared memory (which may then be reused).
__device__ __forceinline__ void waitBulkStoresRead() { asm volatile("cp.async.bulk.wait_group.read 0;\n" ::: "memory"); }
// Until every committed store of this thread has been written to global memory.
__device__ __forceinline__ void waitBulkStores() { asm volatile("cp.async.bulk.wait_group 0;\n" ::: "memory"); }

// Four 8 × 8 matrices of 16-bit values from the warp's mma fragments into shared memory: lane l
// gives the address of row l % 8 of matrix l / 8, and `words` hold its fragment of matrices 0-3
// (lane l: row l / 4, columns 2 (l % 4) and 2 (l % 4) + 1, as one 32-bit word).
__device__ __forceinline__ void storeMatrices(uint32_t address, uint32_t word0, uint32_t word1, uint32_t word2, uint32_t word3) {
  asm volatile("stmatrix.sync.aligned.m8n8.x4.shared.b16 [%0], {%1, %2, %3, %4};\n" ::"r"(address), "r"(word0), "r"(word1),
               "r"(word2), "r"(word3)
               : "memory");
}

// ---- wgmma ordering ------------------------------------------------------------------------------------
// Orders this warpgroup's earlier register and shared-memory accesses before the wgmmas that follow.
__device__ __forceinline__ void wgmmaFence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
// Closes the wgmmas issued since the last commit into one group.
__device__ __forceinline__ void wgmmaCommitGroup() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
// Waits until at most `pending` committed groups of this warpgroup are still running.
template <int pending>
__device__ __forceinline__ void wgmmaWaitGroup() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(pending) : "memory");
}

// Keeps the compiler from moving accesses to accumulator registers across a wgmma fence or wait:
// wgmma writes them behind its back.
template <int count>
__device__ __forceinline__ void fenceAccumulators(float (&d)[count]) {
#pragma unroll
  for (int i = 0; i < count; ++i) asm volatile("" : "+f"(d[i])::"memory");
}

// ---- Shared-memory matrix descriptors ------------------------------------------------------------------
// A K-major operand tile stored as TMA writes it with 128-byte swizzling: rows of 64 16-bit
// elements (128 bytes), grouped in 8-row swizzle atoms of 1024 bytes, atoms back to back.
constexpr uint32_t kSwizzleAtomBytes = 1024;
constexpr uint64_t kDescriptorSwizzle128B = 1;  // layout type, bits 62-63
constexpr int kDescriptorAddressShift = 4;      // addresses and offsets are stored in 16-byte units

// Descriptor of the tile at `tile` (1024-byte aligned): the stride between 8-row atoms (SBO) is
// one atom; the leading offset (LBO) is unused for swizzled K-major layouts but must be nonzero.
__device__ __forceinline__ uint64_t matrixDescriptor(const void* tile) {
  const uint64_t address = sharedAddress(tile);
  return ((address & 0x3FFFF) >> kDescriptorAddressShift) | (uint64_t{1} << 16) |
         (uint64_t{kSwizzleAtomBytes >> kDescriptorAddressShift} << 32) | (kDescriptorSwizzle128B << 62);
}

// The descriptor advanced by `bytes` along K inside the swizzled rows (the hardware applies the
// swizzle to the final address, so stepping the start address by 32 bytes per k16 is right).
__device__ __forceinline__ uint64_t advanceDescriptor(uint64_t descriptor, uint32_t bytes) {
  return descriptor + (bytes >> kDescriptorAddressShift);
}

// ---- Named barriers --------------------------------------------------------------------------------------
// Hardware barriers 1-15 of the CTA (0 is __syncthreads()), counted in threads, whole warps at a
// time: sync waits until `threads` have arrived (itself included); arrive counts and goes on.
__device__ __forceinline__ void syncNamedBarrier(uint32_t id, uint32_t threads) {
  asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}
__device__ __forceinline__ void arriveNamedBarrier(uint32_t id, uint32_t threads) {
  asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}

// ---- Register reallocation -------------------------------------------------------------------------------
// The producer warpgroup gives registers back so the two consumer warpgroups can hold a 64 × 256
// float32 accumulator tile each. Takes effect only under __launch_bounds__(threads, 1).
template <uint32_t registers>
__device__ __forceinline__ void releaseRegisters() {
  asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(registers));
}
template <uint32_t registers>
__device__ __forceinline__ void claimRegisters() {
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(registers));
}

#endif  // MOEKIT_SM90A_DEVICE

}  // namespace moekit::cuda::sm90
