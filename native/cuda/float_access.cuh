// Reading and writing the float dtypes in device code. Kernels are templates over a storage
// "format" (F32, F16, BF16; F8E4M3 for conversions) so one body serves every dtype, with
// arithmetic in float32; the host picks the instantiation with dispatchFloat() or
// dispatchConvertible().
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <string>
#include <type_traits>

#include "../core/dtype.h"
#include "../core/errors.h"
#include "fp8.cuh"

namespace moekit::cuda {

struct F32 {
  using Storage = float;
  __device__ static float load(Storage value) { return value; }
  __device__ static Storage store(float value) { return value; }
};

struct F16 {
  using Storage = __half;
  __device__ static float load(Storage value) { return __half2float(value); }
  // Round to nearest even, overflow to infinity: the same result as moekit::floatToFloat16.
  __device__ static Storage store(float value) { return __float2half_rn(value); }
};

struct BF16 {
  using Storage = __nv_bfloat16;
  __device__ static float load(Storage value) { return __bfloat162float(value); }
  // Round to nearest even: the same result as moekit::floatToBfloat16 for every non-NaN value.
  __device__ static Storage store(float value) { return __float2bfloat16_rn(value); }
};

// Quantized values (op_args.h, "Quantized weights and activations"): read and written by cast and
// the quantizing steps, never computed in.
struct F8E4M3 {
  using Storage = uint8_t;
  __device__ static float load(Storage value) { return fp8ToFloat(value); }
  // Round to nearest even, saturating to ±448: the same result as moekit::floatToFloat8e4m3.
  __device__ static Storage store(float value) { return floatToFp8(value); }
};

// Two float values as one 32-bit pair of Element (BF16 or F16), `low` in the low half (the first
// in memory), each rounded to nearest even (one cvt.rn.*x2.f32 on sm_80 and up).
template <typename Element>
__device__ __forceinline__ uint32_t packPair(float low, float high) {
  if constexpr (std::is_same_v<Element, BF16>) {
    const __nv_bfloat162 pair = __floats2bfloat162_rn(low, high);
    return *reinterpret_cast<const uint32_t*>(&pair);
  } else {
    const __half2 pair = __floats2half2_rn(low, high);
    return *reinterpret_cast<const uint32_t*>(&pair);
  }
}

// Reads element `index` of a float tensor whose dtype is only known at run time (biases, which
// are read once per output and not worth an extra template dimension).
__device__ inline float loadAsFloat(const void* data, DType dtype, int64_t index) {
  switch (dtype) {
    case DType::Float16: return F16::load(static_cast<const __half*>(data)[index]);
    case DType::BFloat16: return BF16::load(static_cast<const __nv_bfloat16*>(data)[index]);
    default: return static_cast<const float*>(data)[index];
  }
}

// Writes element `index` of a float tensor whose dtype is only known at run time (GEMM outputs,
// written once per result in the epilogue).
__device__ inline void storeAsFloat(void* data, DType dtype, int64_t index, float value) {
  switch (dtype) {
    case DType::Float16: static_cast<__half*>(data)[index] = F16::store(value); return;
    case DType::BFloat16: static_cast<__nv_bfloat16*>(data)[index] = BF16::store(value); return;
    default: static_cast<float*>(data)[index] = value; return;
  }
}

// Calls body(Format{}) with the format of a float dtype; throws E_DTYPE for int32.
template <typename Body>
void dispatchFloat(DType dtype, const char* what, Body&& body) {
  switch (dtype) {
    case DType::Float32: body(F32{}); return;
    case DType::Float16: body(F16{}); return;
    case DType::BFloat16: body(BF16{}); return;
    default:
      throw NativeError("E_DTYPE", std::string(what) + ": expected a float dtype, got " + dtypeName(dtype));
  }
}

// As dispatchFloat, and Float8E4M3 too (for conversions).
template <typename Body>
void dispatchConvertible(DType dtype, const char* what, Body&& body) {
  if (dtype == DType::Float8E4M3) {
    body(F8E4M3{});
    return;
  }
  dispatchFloat(dtype, what, body);
}

}  // namespace moekit::cuda
