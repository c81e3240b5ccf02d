// Reading and writing the float dtypes on the host. Kernels are templates over a storage "format"
// (F32, F16, BF16) so one body serves every dtype, with arithmetic in float32.
#pragma once

#include <cstdint>
#include <string>

#include "../core/dtype.h"
#include "../core/errors.h"

namespace moekit::cpu {

struct F32 {
  using Storage = float;
  static float load(Storage value) { return value; }
  static Storage store(float value) { return value; }
};

struct F16 {
  using Storage = uint16_t;
  static float load(Storage value) { return float16ToFloat(value); }
  static Storage store(float value) { return floatToFloat16(value); }
};

struct BF16 {
  using Storage = uint16_t;
  static float load(Storage value) { return bfloat16ToFloat(value); }
  static Storage store(float value) { return floatToBfloat16(value); }
};

// Quantized values (op_args.h, "Quantized weights and activations"): read and written only by
// cast and the quantizing steps, never computed in.
struct F8E4M3 {
  using Storage = uint8_t;
  static float load(Storage value) { return float8e4m3ToFloat(value); }
  static Storage store(float value) { return floatToFloat8e4m3(value); }
};

// Calls body(Format{}) with the format of a float dtype; throws E_DTYPE for int32.
template <typename Body>
void dispatchFloat(DType dtype, const char* what, Body&& body) {
  switch (dtype) {
    case DType::Float32: body(F32{}); return;
    case DType::Float16: body(F16{}); return;
    case DType::BFloat16: body(BF16{}); return;
    default: throw NativeError("E_DTYPE", std::string(what) + ": expected a float dtype, got " + dtypeName(dtype));
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

// Converts count elements of a float tensor to float32.
template <typename Format>
void toFloat(const typename Format::Storage* source, int64_t count, float* destination) {
  for (int64_t i = 0; i < count; ++i) destination[i] = Format::load(source[i]);
}

}  // namespace moekit::cpu
