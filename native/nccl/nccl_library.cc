#include "nccl_library.h"

#include <cstdlib>
#include <mutex>
#include <string>
#include <vector>

#include "../core/errors.h"
#include "../core/runtime_library.h"

namespace moekit::nccl {
namespace {

// NCCL's C ABI (nccl.h), declared by hand: result codes, data types and the reduction op used.
using Result = int;
constexpr Result kSuccess = 0;
constexpr Result kInProgress = 7;
enum DataType : int { kUint8 = 1, kInt32 = 2, kFloat16 = 6, kFloat32 = 7, kBfloat16 = 9 };
constexpr int kSum = 0;

constexpr const char* kDefaultLibrary = "libnccl.so.2";

struct Api {
  void* handle = nullptr;
  Availability availability;
  Result (*getVersion)(int*) = nullptr;
  Result (*getUniqueId)(UniqueId*) = nullptr;
  Result (*commInitRank)(Comm*, int, UniqueId, int) = nullptr;
  Result (*allReduce)(const void*, void*, size_t, int, int, Comm, Stream) = nullptr;
  // (sendbuff, recvbuff, recvcount, datatype, op, comm, stream)
  Result (*reduceScatter)(const void*, void*, size_t, int, int, Comm, Stream) = nullptr;
  // (sendbuff, recvbuff, sendcount, datatype, comm, stream)
  Result (*allGather)(const void*, void*, size_t, int, Comm, Stream) = nullptr;
  // (sendbuff, recvbuff, count, datatype, root, comm, stream)
  Result (*broadcast)(const void*, void*, size_t, int, int, Comm, Stream) = nullptr;
  // (sendbuff, count, datatype, peer, comm, stream) and (recvbuff, count, datatype, peer, comm, stream)
  Result (*send)(const void*, size_t, int, int, Comm, Stream) = nullptr;
  Result (*recv)(void*, size_t, int, int, Comm, Stream) = nullptr;
  Result (*groupStart)() = nullptr;
  Result (*groupEnd)() = nullptr;
  Result (*commGetAsyncError)(Comm, Result*) = nullptr;
  Result (*commAbort)(Comm) = nullptr;
  Result (*commDestroy)(Comm) = nullptr;
  const char* (*getErrorString)(Result) = nullptr;
};

// NCCL 2.22+ connects peers lazily, inside the first collective that needs them; that host call
// then blocks (the JS thread included) until every peer arrives, so a stalled peer would freeze the
// event loop and the watchdog with it. Connecting everything in ncclCommInitRank (off the JS
// thread, under init()'s timeout) keeps later collective calls non-blocking. A value the user set
// is kept. Set before NCCL reads its environment, which it does on first use.
void connectPeersAtInit() { setenv("NCCL_RUNTIME_CONNECT", "0", /*overwrite=*/0); }

Api load() {
  Api api;
  connectPeersAtInit();
  // MOEKIT_NCCL_PATH may name the library file or the folder holding it.
  api.handle = openRuntimeLibrary({"NCCL", "MOEKIT_NCCL_PATH", {kDefaultLibrary}, "install NCCL or set MOEKIT_NCCL_PATH"}, &api.availability);
  if (api.handle == nullptr) return api;
  const bool complete = resolveSymbol(api.handle, "ncclGetVersion", api.getVersion) &&
                        resolveSymbol(api.handle, "ncclGetUniqueId", api.getUniqueId) &&
                        resolveSymbol(api.handle, "ncclCommInitRank", api.commInitRank) &&
                        resolveSymbol(api.handle, "ncclAllReduce", api.allReduce) &&
                        resolveSymbol(api.handle, "ncclReduceScatter", api.reduceScatter) &&
                        resolveSymbol(api.handle, "ncclAllGather", api.allGather) &&
                        resolveSymbol(api.handle, "ncclBroadcast", api.broadcast) &&
                        resolveSymbol(api.handle, "ncclSend", api.send) &&
                        resolveSymbol(api.handle, "ncclRecv", api.recv) &&
                        resolveSymbol(api.handle, "ncclGroupStart", api.groupStart) &&
                        resolveSymbol(api.handle, "ncclGroupEnd", api.groupEnd) &&
                        resolveSymbol(api.handle, "ncclCommGetAsyncError", api.commGetAsyncError) &&
                        resolveSymbol(api.handle, "ncclCommAbort", api.commAbort) &&
                        resolveSymbol(api.handle, "ncclCommDestroy", api.commDestroy) &&
                        resolveSymbol(api.handle, "ncclGetErrorString", api.getErrorString);
  if (!complete) {
    api.availability.problem = api.availability.path + " lacks an NCCL entry point moekit needs (NCCL 2.12 or newer is required)";
    return api;
  }
  api.getVersion(&api.availability.version);
  api.availability.available = true;
  return api;
}

const Api& api() { return loadOnce<Api, load>(); }

const Api& requireApi() { return requireAvailable(api(), "E_NCCL", "NCCL"); }

void check(Result result, const char* what) {
  if (result == kSuccess) return;
  throw NativeError("E_NCCL", std::string(what) + " failed: " + requireApi().getErrorString(result));
}

// The NCCL type a sum adds `dtype` values in.
DataType summedType(DType dtype, const char* what) {
  switch (dtype) {
    case DType::Float32: return kFloat32;
    case DType::Float16: return kFloat16;
    case DType::BFloat16: return kBfloat16;
    case DType::Int32: return kInt32;
    case DType::Float8E4M3:
    case DType::UInt8: break;  // quantized values do not add up
  }
  throw NativeError("E_DTYPE", std::string(what) + ": unsupported dtype " + dtypeName(dtype));
}

// Sends and receives of one all-to-all, as NCCL calls inside a group; the first failure.
// Empty blocks are left out: NCCL is never handed a pointer past a buffer's end, and ranks
// whose splits agree leave out the same pairs.
Result exchangeBlocks(Comm comm, const uint8_t* send, const std::vector<Block>& sendBlocks, uint8_t* recv,
                      const std::vector<Block>& recvBlocks, Stream stream) {
  const Api& nccl = requireApi();
  for (size_t peer = 0; peer < sendBlocks.size(); ++peer) {
    const Block& out = sendBlocks[peer];
    const Block& in = recvBlocks[peer];
    const int rank = static_cast<int>(peer);
    if (out.bytes > 0) {
      const Result sent = nccl.send(send + out.offset, out.bytes, kUint8, rank, comm, stream);
      if (sent != kSuccess) return sent;
    }
    if (in.bytes > 0) {
      const Result received = nccl.recv(recv + in.offset, in.bytes, kUint8, rank, comm, stream);
      if (received != kSuccess) return received;
    }
  }
  return kSuccess;
}

}  // namespace

Availability probe() { return api().availability; }

UniqueId makeUniqueId() {
  UniqueId id{};
  check(requireApi().getUniqueId(&id), "ncclGetUniqueId");
  return id;
}

Comm initRank(const UniqueId& id, int worldSize, int rank) {
  Comm comm = nullptr;
  check(requireApi().commInitRank(&comm, worldSize, id, rank), "ncclCommInitRank");
  return comm;
}

void allReduceSum(Comm comm, void* data, size_t count, DType dtype, Stream stream) {
  check(requireApi().allReduce(data, data, count, summedType(dtype, "all-reduce"), kSum, comm, stream), "ncclAllReduce");
}

void reduceScatterSum(Comm comm, const void* send, void* recv, size_t recvCount, DType dtype, Stream stream) {
  check(requireApi().reduceScatter(send, recv, recvCount, summedType(dtype, "reduce-scatter"), kSum, comm, stream), "ncclReduceScatter");
}

void allGather(Comm comm, const void* send, void* recv, size_t bytes, Stream stream) {
  check(requireApi().allGather(send, recv, bytes, kUint8, comm, stream), "ncclAllGather");
}

void broadcast(Comm comm, void* data, size_t bytes, int root, Stream stream) {
  check(requireApi().broadcast(data, data, bytes, kUint8, root, comm, stream), "ncclBroadcast");
}

void send(Comm comm, const void* data, size_t bytes, int peer, Stream stream) {
  check(requireApi().send(data, bytes, kUint8, peer, comm, stream), "ncclSend");
}

void recv(Comm comm, void* data, size_t bytes, int peer, Stream stream) {
  check(requireApi().recv(data, bytes, kUint8, peer, comm, stream), "ncclRecv");
}

void allToAll(Comm comm, const void* send, const std::vector<Block>& sendBlocks, void* recv, const std::vector<Block>& recvBlocks,
              Stream stream) {
  if (sendBlocks.size() != recvBlocks.size()) throw NativeError("E_INVALID_ARGUMENT", "all-to-all: one send and one receive block per rank");
  const Api& nccl = requireApi();
  check(nccl.groupStart(), "ncclGroupStart");
  const Result exchanged = exchangeBlocks(comm, static_cast<const uint8_t*>(send), sendBlocks, static_cast<uint8_t*>(recv), recvBlocks, stream);
  // Ended even after a failed call: NCCL's group depth belongs to the thread, and a group left
  // open would hold back every later NCCL call made on the JS thread.
  const Result ended = nccl.groupEnd();
  check(exchanged, "ncclSend/ncclRecv in an all-to-all");
  check(ended, "ncclGroupEnd");
}

std::string asyncError(Comm comm) {
  const Api& nccl = requireApi();
  Result state = kSuccess;
  const Result queried = nccl.commGetAsyncError(comm, &state);
  if (queried != kSuccess) return nccl.getErrorString(queried);
  return state == kSuccess || state == kInProgress ? "" : nccl.getErrorString(state);
}

void abort(Comm comm) { requireApi().commAbort(comm); }

void destroy(Comm comm) { requireApi().commDestroy(comm); }

}  // namespace moekit::nccl
