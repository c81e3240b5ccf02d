// NCCL, loaded at run time with dlopen: libnccl.so.2 is not on CI or on users' build machines, so
// nothing links against it and no NCCL header is needed. MOEKIT_NCCL_PATH names the library file
// explicitly. Only the few entry points moekit uses are declared, with NCCL's stable C ABI.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "../core/dtype.h"
#include "../core/runtime_library.h"

namespace moekit::nccl {

// ncclUniqueId: 128 opaque bytes, made by one rank and shared with the others.
constexpr size_t kUniqueIdBytes = 128;
struct UniqueId {
  char bytes[kUniqueIdBytes];
};

// Opaque NCCL handles.
using Comm = struct ncclComm*;
using Stream = struct CUstream_st*;

// Whether NCCL can be loaded, and from where (or why not); version e.g. 22803 for 2.28.3.
using Availability = LibraryAvailability;
Availability probe();

UniqueId makeUniqueId();

// Joins the group; blocks until every rank has called it (run it off the JS thread). The calling
// thread's current CUDA device is the communicator's.
Comm initRank(const UniqueId& id, int worldSize, int rank);

// The collectives, each enqueued on `stream` and returning at once. Sums add `dtype` values
// (float32, float16, bfloat16, int32; anything else throws E_DTYPE). Collectives that only move
// data take byte counts and any dtype: moving bytes adds nothing, so NCCL sees them as uint8.

// In place: every rank's `data` becomes the sum of all ranks' `data`.
void allReduceSum(Comm comm, void* data, size_t count, DType dtype, Stream stream);
// `recv` (recvCount values) becomes the sum over ranks of `send`'s values [rank·recvCount, (rank+1)·recvCount).
void reduceScatterSum(Comm comm, const void* send, void* recv, size_t recvCount, DType dtype, Stream stream);
// `recv` (worldSize·bytes) becomes every rank's `send` (bytes), in rank order.
void allGather(Comm comm, const void* send, void* recv, size_t bytes, Stream stream);
// In place: every rank's `data` becomes rank `root`'s.
void broadcast(Comm comm, void* data, size_t bytes, int root, Stream stream);
// A point-to-point transfer; runs once `peer` enqueues the matching recv (send).
void send(Comm comm, const void* data, size_t bytes, int peer, Stream stream);
void recv(Comm comm, void* data, size_t bytes, int peer, Stream stream);

// One rank's part of an all-to-all buffer.
struct Block {
  size_t offset = 0;
  size_t bytes = 0;
};
// In one NCCL group: sendBlocks[p] of `send` goes to rank p and recvBlocks[p] of `recv` comes from
// it, for every rank p (one block per rank in both lists).
void allToAll(Comm comm, const void* send, const std::vector<Block>& sendBlocks, void* recv, const std::vector<Block>& recvBlocks,
              Stream stream);

// "" while healthy, else NCCL's description of the failure it met asynchronously.
std::string asyncError(Comm comm);

// Stops the communicator's pending work (unblocks stalled kernels) and frees it.
void abort(Comm comm);
void destroy(Comm comm);

}  // namespace moekit::nccl
