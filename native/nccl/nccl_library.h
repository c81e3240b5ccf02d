// NCCL, loaded at run time with dlopen: libnccl.so.2 is not on CI or on users' build machines, so
// nothing links against it and no NCCL header is needed. MOEKIT_NCCL_PATH names the library file
// explicitly. Only the few entry points moekit uses are declared, with NCCL's stable C ABI.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

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

// Enqueues an in-place sum over the group on `stream`.
void allReduceSum(Comm comm, void* data, size_t count, DType dtype, Stream stream);

// "" while healthy, else NCCL's description of the failure it met asynchronously.
std::string asyncError(Comm comm);

// Stops the communicator's pending work (unblocks stalled kernels) and frees it.
void abort(Comm comm);
void destroy(Comm comm);

}  // namespace moekit::nccl
