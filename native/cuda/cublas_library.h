// cuBLAS, loaded at run time with dlopen, for one job: the benchmark's matmul ceiling (what a
// vendor dense GEMM reaches on this GPU). Build machines and CI have no cuBLAS headers or
// libraries, so nothing links against it; the few entry points used are declared by hand with
// cuBLAS's stable C ABI, as native/nccl does for NCCL. MOEKIT_CUBLAS_PATH names the library file
// (or its folder); otherwise libcublas.so.13, then libcublas.so.12, are looked up by the loader.
#pragma once

#include <cuda_runtime.h>

#include <string>

#include "../core/dtype.h"
#include "../core/runtime_library.h"

namespace moekit::cublas {

// Whether cuBLAS can be loaded, and from where (or why not); version e.g. 130100 for 13.1.0.
using Availability = LibraryAvailability;
Availability probe();

// Enqueues C[m, n] = A[m, k] · B[n, k]ᵀ on `stream` (row-major, moekit's `linear` layout), all
// three in `dtype` (a float dtype), float32 accumulation, cuBLAS's default tensor-op algorithm.
// `device` is the CUDA device all three live on; each device gets its own cuBLAS handle.
void gemm(int device, cudaStream_t stream, DType dtype, const void* a, const void* b, void* c, int m, int n, int k);

}  // namespace moekit::cublas
