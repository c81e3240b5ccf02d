// Host side of the TMA loads: tensor maps describing the grouped GEMM's operands, encoded per
// call (they hold the tensors' addresses and extents, and travel to the kernel by value as
// __grid_constant__ parameters, so a captured graph keeps its own copies).
//
// cuTensorMapEncodeTiled is a driver function. The addon links cudart statically and not libcuda,
// so it is looked up through the runtime's driver entry point (cuda.h and cudaTypedefs.h give
// only its types). Encoding is pure host work: no synchronisation, no device memory.
#pragma once

#include <cuda.h>
#include <cudaTypedefs.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "../../core/dtype.h"
#include "../check.h"

namespace moekit::cuda::sm90 {

// The driver ABI version of cuTensorMapEncodeTiled asked for (the one introduced with CUDA 12.0).
constexpr unsigned kTensorMapEncodeVersion = 12000;

inline PFN_cuTensorMapEncodeTiled_v12000 tensorMapEncoder() {
  static const PFN_cuTensorMapEncodeTiled_v12000 encoder = [] {
    void* function = nullptr;
    cudaDriverEntryPointQueryResult found = cudaDriverEntryPointSymbolNotFound;
    MOEKIT_CUDA_CHECK(
        cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &function, kTensorMapEncodeVersion, cudaEnableDefault, &found));
    if (found != cudaDriverEntryPointSuccess || function == nullptr) {
      throw CudaError("E_CUDA", "sm90 grouped GEMM: the driver has no cuTensorMapEncodeTiled");
    }
    return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(function);
  }();
  return encoder;
}

// A row-major [rows, rowElements] matrix of `type` (elementBytes each) in boxes of boxRows ×
// boxElements, laid out in shared memory with `swizzle`; `what` names it in an error.
inline CUtensorMap tiledTensorMap(const void* data, CUtensorMapDataType type, int elementBytes, int64_t rows, int64_t rowElements,
                                  uint32_t boxRows, uint32_t boxElements, CUtensorMapSwizzle swizzle, const char* what) {
  constexpr uint32_t kRank = 2;
  const cuuint64_t extents[kRank] = {static_cast<cuuint64_t>(rowElements), static_cast<cuuint64_t>(rows)};
  const cuuint64_t rowStrideBytes[kRank - 1] = {static_cast<cuuint64_t>(rowElements) * elementBytes};
  const cuuint32_t box[kRank] = {boxElements, boxRows};
  const cuuint32_t elementStrides[kRank] = {1, 1};
  CUtensorMap map;
  const CUresult status = tensorMapEncoder()(&map, type, kRank, const_cast<void*>(data), extents, rowStrideBytes, box,
                                             elementStrides, CU_TENSOR_MAP_INTERLEAVE_NONE, swizzle,
                                             CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (status != CUDA_SUCCESS) {
    throw CudaError("E_CUDA", "sm90 grouped GEMM: cuTensorMapEncodeTiled failed with CUresult " + std::to_string(status) +
                                  " for a [" + std::to_string(rows) + ", " + std::to_string(rowElements) + "] " + what);
  }
  return map;
}

// The copy engine moves bytes; e4m3 travels as uint8.
inline CUtensorMapDataType tensorMapType(DType dtype) {
  return dtype == DType::BFloat16 ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16
         : dtype == DType::Float16 ? CU_TENSOR_MAP_DATA_TYPE_FLOAT16
                                   : CU_TENSOR_MAP_DATA_TYPE_UINT8;
}

// A row-major [rows, depth] matrix of 16-bit or e4m3 elements (depth contiguous), read in boxes of
// boxRows × boxDepth elements into 128-byte-swizzled shared memory (a box row must be 128 bytes:
// 64 16-bit values or 128 e4m3 ones).
// Boxes reaching past the matrix are filled with zeros, which is what makes K tails and the
// last rows free of special cases in the kernel. The depth stride must be a multiple of 16 bytes.
inline CUtensorMap operandTensorMap(const void* data, DType dtype, int64_t rows, int64_t depth, uint32_t boxRows,
                                    uint32_t boxDepth) {
  return tiledTensorMap(data, tensorMapType(dtype), static_cast<int>(dtypeSize(dtype)), rows, depth, boxRows, boxDepth,
                        CU_TENSOR_MAP_SWIZZLE_128B, "operand");
}

// A 16-bit output [rows, cols] written by TMA stores from boxes of boxRows × boxCols in
// 64-byte-swizzled shared memory (sm90/bulk_store.cuh; a box row is 64 bytes). Parts of a box
// past the matrix are not written. cols × 2 must be a multiple of 16 bytes.
inline CUtensorMap outputTensorMap(void* data, DType dtype, int64_t rows, int64_t cols, uint32_t boxRows, uint32_t boxCols) {
  return tiledTensorMap(data, tensorMapType(dtype), static_cast<int>(dtypeSize(dtype)), rows, cols, boxRows, boxCols,
                        CU_TENSOR_MAP_SWIZZLE_64B, "output");
}

// Packed weight bytes [rows, rowBytes] (weight-only formats), read in boxes of boxRows × boxBytes
// into plain row-major shared memory (no swizzle: the converter reads them with ordinary loads).
// Parts of a box outside the matrix arrive as zeros. rowBytes must be a multiple of 16.
inline CUtensorMap packedTensorMap(const void* data, int64_t rows, int64_t rowBytes, uint32_t boxRows, uint32_t boxBytes) {
  return tiledTensorMap(data, CU_TENSOR_MAP_DATA_TYPE_UINT8, 1, rows, rowBytes, boxRows, boxBytes, CU_TENSOR_MAP_SWIZZLE_NONE,
                        "packed weight matrix");
}

}  // namespace moekit::cuda::sm90
