// cuBLAS as a yardstick: cublasInfo() says whether it could be loaded (native/cuda/cublas_library),
// cublasGemm(device, {a, b, c}) enqueues one dense GEMM on the device's stream. The benchmark times
// it for its matmul ceiling; nothing in moekit's own ops uses it.
#pragma once

#include <napi.h>

namespace moekit::binding {

void RegisterCublasGemm(Napi::Env env, Napi::Object exports);

}  // namespace moekit::binding
