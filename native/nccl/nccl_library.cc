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
enum DataType : int { kFloat16 = 6, kFloat32 = 7, kBfloat16 = 9, kInt32 = 2 };
constexpr int kSum = 0;

constexpr const char* kDefaultLibrary = "libnccl.so.2";

struct Api {
  void* handle = nullptr;
  Availability availability;
  Result (*getVersion)(int*) = nullptr;
  Result (*getUniqueId)(UniqueId*) = nullptr;
  Result (*commInitRank)(Comm*, int, UniqueId, int) = nullptr;
  Result (*allReduce)(const void*, void*, size_t, int, int, Comm, Stream) = nullptr;
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

DataType dataType(DType dtype) {
  switch (dtype) {
    case DType::Float32: return kFloat32;
    case DType::Float16: return kFloat16;
    case DType::BFloat16: return kBfloat16;
    case DType::Int32: return kInt32;
    case DType::Float8E4M3:
    case DType::UInt8: break;  // quantized values do not add up
  }
  throw NativeError("E_DTYPE", std::string("all-reduce: unsupported dtype ") + dtypeName(dtype));
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
  check(requireApi().allReduce(data, data, count, dataType(dtype), kSum, comm, stream), "ncclAllReduce");
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
