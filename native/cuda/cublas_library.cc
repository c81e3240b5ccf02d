#include "cublas_library.h"

#include <map>
#include <mutex>
#include <vector>

#include "../core/errors.h"
#include "../core/runtime_library.h"
#include "check.h"

namespace moekit::cublas {
namespace {

// cuBLAS's C ABI (cublas_api.h, library_types.h), declared by hand: only what gemm() uses.
using Status = int;
constexpr Status kSuccess = 0;
using Handle = struct cublasContext*;
enum Operation : int { kNoTranspose = 0, kTranspose = 1 };
enum DataType : int { kR32F = 0, kR16F = 2, kR16BF = 14 };  // cudaDataType_t
constexpr int kComputeFloat32 = 68;                         // CUBLAS_COMPUTE_32F
constexpr int kDefaultTensorOpAlgorithm = 99;               // CUBLAS_GEMM_DEFAULT_TENSOR_OP
enum LibraryProperty : int { kMajorVersion = 0, kMinorVersion = 1, kPatchLevel = 2 };

// Newest first: the CUDA 13 library, then CUDA 12's. MOEKIT_CUBLAS_PATH may name the file or its
// folder instead.
const RuntimeLibrarySpec kLibrary = {"cuBLAS", "MOEKIT_CUBLAS_PATH", {"libcublas.so.13", "libcublas.so.12"}, "set MOEKIT_CUBLAS_PATH"};

struct Api {
  void* handle = nullptr;
  Availability availability;
  Status (*create)(Handle*) = nullptr;
  Status (*setStream)(Handle, cudaStream_t) = nullptr;
  Status (*getProperty)(int, int*) = nullptr;
  Status (*gemmEx)(Handle, int, int, int, int, int, const void*, const void*, int, int, const void*, int, int,
                   const void*, void*, int, int, int, int) = nullptr;
};

Api load() {
  Api api;
  api.handle = openRuntimeLibrary(kLibrary, &api.availability);
  if (api.handle == nullptr) return api;
  const bool complete = resolveSymbol(api.handle, "cublasCreate_v2", api.create) &&
                        resolveSymbol(api.handle, "cublasSetStream_v2", api.setStream) &&
                        resolveSymbol(api.handle, "cublasGetProperty", api.getProperty) &&
                        resolveSymbol(api.handle, "cublasGemmEx", api.gemmEx);
  if (!complete) {
    api.availability.problem = api.availability.path + " lacks a cuBLAS entry point moekit needs (cuBLAS 11 or newer)";
    return api;
  }
  int major = 0, minor = 0, patch = 0;
  api.getProperty(kMajorVersion, &major);
  api.getProperty(kMinorVersion, &minor);
  api.getProperty(kPatchLevel, &patch);
  api.availability.version = major * 10000 + minor * 100 + patch;
  api.availability.available = true;
  return api;
}

const Api& api() { return loadOnce<Api, load>(); }

const Api& requireApi() { return requireAvailable(api(), "E_CUDA", kLibrary.displayName); }

void check(Status status, const char* what) {
  if (status != kSuccess) throw NativeError("E_CUDA", std::string(what) + " failed with cuBLAS status " + std::to_string(status));
}

DataType dataType(DType dtype) {
  switch (dtype) {
    case DType::Float32: return kR32F;
    case DType::Float16: return kR16F;
    case DType::BFloat16: return kR16BF;
    case DType::Int32:
    case DType::Float8E4M3:  // quantized GEMMs run on moekit's kernels, never cuBLAS
    case DType::UInt8: break;
  }
  throw NativeError("E_DTYPE", "cuBLAS gemm: expected a float dtype");
}

// One handle per device, made on first use and kept for the life of the process (as devices are).
Handle handleFor(int device) {
  static std::mutex mutex;
  static auto* handles = new std::map<int, Handle>();
  std::lock_guard<std::mutex> lock(mutex);
  auto found = handles->find(device);
  if (found != handles->end()) return found->second;
  MOEKIT_CUDA_CHECK(cudaSetDevice(device));  // a handle belongs to the device current at creation
  Handle handle = nullptr;
  check(requireApi().create(&handle), "cublasCreate");
  handles->emplace(device, handle);
  return handle;
}

}  // namespace

Availability probe() { return api().availability; }

void gemm(int device, cudaStream_t stream, DType dtype, const void* a, const void* b, void* c, int m, int n, int k) {
  const Api& library = requireApi();
  Handle handle = handleFor(device);
  MOEKIT_CUDA_CHECK(cudaSetDevice(device));
  check(library.setStream(handle, stream), "cublasSetStream");
  // cuBLAS is column-major: row-major C[m, n] is column-major Cᵀ [n, m] = B · Aᵀ, where row-major
  // B[n, k] read column-major is Bᵀ (so transposed back) and row-major A[m, k] is Aᵀ as it stands.
  const float alpha = 1.0f, beta = 0.0f;
  const int type = dataType(dtype);
  check(library.gemmEx(handle, kTranspose, kNoTranspose, n, m, k, &alpha, b, type, k, a, type, k, &beta, c, type, n,
                       kComputeFloat32, kDefaultTensorOpAlgorithm),
        "cublasGemmEx");
}

}  // namespace moekit::cublas
