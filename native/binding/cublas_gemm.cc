#include "cublas_gemm.h"

#include <cstdint>

#include "device_registry.h"
#include "js_errors.h"
#include "library_info.h"
#include "tensor_args.h"
#if MOEKIT_WITH_CUDA
#include "cuda/cublas_library.h"
#include "cuda/cuda_device.h"
#endif

namespace moekit::binding {
namespace {

// cublasInfo() → {available, path, problem, version}
Napi::Value CublasInfo(const Napi::CallbackInfo& info) {
#if MOEKIT_WITH_CUDA
  return libraryInfo(info.Env(), cublas::probe());
#else
  return libraryInfo(info.Env(), withoutCuda());
#endif
}

// cublasGemm(device, {a: [m, k], b: [n, k], c: [m, n]}): c = a · bᵀ, one float dtype throughout.
void CublasGemm(const Napi::CallbackInfo& info) {
  OpArgs in(info, "cublasGemm");
  const TensorView a = in.tensor("a"), b = in.tensor("b"), c = in.output("c");
  in.expect(in.device() >= 0, "cuBLAS needs a CUDA device");
  in.expectFloat(a, "a");
  in.expectShape(a, "a", {-1, -1});
  const int64_t m = a.dim(0), k = a.dim(1);
  in.expectShape(b, "b", {-1, k});
  const int64_t n = b.dim(0);
  in.expectShape(c, "c", {m, n});
  in.expectDType(b, "b", a.dtype);
  in.expectDType(c, "c", a.dtype);
  in.expect(m <= INT32_MAX && n <= INT32_MAX && k <= INT32_MAX, "extents must fit in 32 bits");
#if MOEKIT_WITH_CUDA
  in.enqueue([&](Device& device, uint64_t) {
    cublas::gemm(in.device(), dynamic_cast<cuda::CudaDevice&>(device).stream(), a.dtype, a.data, b.data, c.data,
                 static_cast<int>(m), static_cast<int>(n), static_cast<int>(k));
  });
#endif
}

}  // namespace

void RegisterCublasGemm(Napi::Env env, Napi::Object exports) {
  exports.Set("cublasInfo", Napi::Function::New<CublasInfo>(env, "cublasInfo"));
  exports.Set("cublasGemm", Napi::Function::New<CublasGemm>(env, "cublasGemm"));
}

}  // namespace moekit::binding
