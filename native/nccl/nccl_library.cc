#include "nccl_library.h"

#include <dlfcn.h>
#include <sys/stat.h>

#include <cstdlib>
#include <mutex>

#include "../core/errors.h"

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

template <typename Function>
bool resolve(void* handle, const char* name, Function& function) {
  function = reinterpret_cast<Function>(dlsym(handle, name));
  return function != nullptr;
}

// MOEKIT_NCCL_PATH may name the library file or the folder holding it; without it, the dynamic
// loader's own search (LD_LIBRARY_PATH, its cache, the system folders) finds libnccl.so.2.
std::string libraryPath() {
  const char* explicitPath = std::getenv("MOEKIT_NCCL_PATH");
  if (explicitPath == nullptr || *explicitPath == '\0') return kDefaultLibrary;
  struct stat info {};
  if (stat(explicitPath, &info) == 0 && S_ISDIR(info.st_mode)) return std::string(explicitPath) + "/" + kDefaultLibrary;
  return explicitPath;
}

// NCCL 2.22+ connects peers lazily, inside the first collective that needs them; that host call
// then blocks (the JS thread included) until every peer arrives, so a stalled peer would freeze the
// event loop and the watchdog with it. Connecting everything in ncclCommInitRank (off the JS
// thread, under init()'s timeout) keeps later collective calls non-blocking. A value the user set
// is kept. Set before NCCL reads its environment, which it does on first use.
void connectPeersAtInit() { setenv("NCCL_RUNTIME_CONNECT", "0", /*overwrite=*/0); }

Api load() {
  Api api;
  connectPeersAtInit();
  const std::string path = libraryPath();
  api.handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (api.handle == nullptr) {
    api.availability.problem = "cannot load " + path + " (" + dlerror() + "); install NCCL or set MOEKIT_NCCL_PATH";
    return api;
  }
  const bool complete = resolve(api.handle, "ncclGetVersion", api.getVersion) &&
                        resolve(api.handle, "ncclGetUniqueId", api.getUniqueId) &&
                        resolve(api.handle, "ncclCommInitRank", api.commInitRank) &&
                        resolve(api.handle, "ncclAllReduce", api.allReduce) &&
                        resolve(api.handle, "ncclCommGetAsyncError", api.commGetAsyncError) &&
                        resolve(api.handle, "ncclCommAbort", api.commAbort) &&
                        resolve(api.handle, "ncclCommDestroy", api.commDestroy) &&
                        resolve(api.handle, "ncclGetErrorString", api.getErrorString);
  if (!complete) {
    api.availability.problem = path + " lacks an NCCL entry point moekit needs (NCCL 2.12 or newer is required)";
    return api;
  }
  api.getVersion(&api.availability.version);
  api.availability.available = true;
  api.availability.path = path;
  return api;
}

const Api& api() {
  static std::once_flag once;
  static Api* loaded = nullptr;
  std::call_once(once, [] { loaded = new Api(load()); });
  return *loaded;
}

const Api& requireApi() {
  const Api& nccl = api();
  if (!nccl.availability.available) throw NativeError("E_NCCL", "NCCL is not available: " + nccl.availability.problem);
  return nccl;
}

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
  }
  throw NativeError("E_DTYPE", "all-reduce: unsupported dtype");
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
