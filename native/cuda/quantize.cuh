// Quantizing a row by the W8A8 rule (native/core/op_args.h, "Quantized weights and activations")
// on the device, one warp per row (or per slice of a long row's groups): per 128-column group, the largest magnitude by a warp
// reduction, the scale amax / 448, and e4m3(x / scale) for each value. Shared by every step that
// produces FP8 activations outside a GEMM's epilogue: permute's gather (permute.cu), and the
// quantizing step before and after a GEMM (quantize.cu).
#pragma once

#include <cstdint>

#include "../core/op_args.h"
#include "activation_math.cuh"
#include "float_access.cuh"
#include "fp8.cuh"

namespace moekit::cuda {

namespace quantize_detail {
constexpr int kWarpSize = 32;
constexpr unsigned kFullWarp = 0xffffffffu;
constexpr int kGroupColumns = static_cast<int>(kFp8BlockSize);
constexpr int kValuesPerLane = kGroupColumns / kWarpSize;  // 4 consecutive columns per lane and group
constexpr int kGroupsPerStep = 4;  // groups whose loads a warp issues before the first reduction
static_assert(kValuesPerLane == 4, "lanes load and store four values per group");

__device__ __forceinline__ float warpMax(float value) {
#pragma unroll
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2) value = fmaxf(value, __shfl_xor_sync(kFullWarp, value, offset));
  return value;
}

// Four values of one storage type, for a single vector load.
template <typename T>
struct alignas(kValuesPerLane * sizeof(T)) Four {
  T values[kValuesPerLane];
};
}  // namespace quantize_detail

// A row of `width` values stored in `Format` (float_access.cuh). `vector`: four values may be read
// with one load (width % 4 == 0 and the row's start aligned to four values).
template <typename Format>
struct StoredRow {
  const typename Format::Storage* values;
  int64_t width;
  bool vector;

  __device__ __forceinline__ void load4(int64_t column, float (&out)[quantize_detail::kValuesPerLane]) const {
    using namespace quantize_detail;
    using T = typename Format::Storage;
    if (vector && column + kValuesPerLane <= width) {
      const Four<T> four = *reinterpret_cast<const Four<T>*>(values + column);
#pragma unroll
      for (int i = 0; i < kValuesPerLane; ++i) out[i] = Format::load(four.values[i]);
      return;
    }
#pragma unroll
    for (int i = 0; i < kValuesPerLane; ++i) out[i] = column + i < width ? Format::load(values[column + i]) : 0.0f;
  }
};

// The `width` outputs of an activation over a row of GEMM products stored in `Format`: products
// [0, 2 · width) for gated kinds (gate and up by `activation.layout`), [0, width) otherwise.
template <typename Format>
struct ActivatedRow {
  const typename Format::Storage* products;
  int64_t width;
  GemmActivation activation;

  __device__ __forceinline__ float at(int64_t column) const {
    if (!isGated(activation.kind)) return activatePlain(activation.kind, Format::load(products[column]));
    const bool interleaved = activation.layout == GateLayout::Interleaved;
    const float gate = Format::load(products[interleaved ? 2 * column : column]);
    const float up = Format::load(products[interleaved ? 2 * column + 1 : width + column]);
    return activateGated(activation.kind, gate, up, activation.alpha, activation.limit);
  }

  __device__ __forceinline__ void load4(int64_t column, float (&out)[quantize_detail::kValuesPerLane]) const {
#pragma unroll
    for (int i = 0; i < quantize_detail::kValuesPerLane; ++i) out[i] = column + i < width ? at(column + i) : 0.0f;
  }
};

// Called by a whole warp: quantizes groups [firstGroup, endGroup) of `row` (a StoredRow or
// ActivatedRow of `width` values; all of it by default) into `destination` [width] e4m3 and
// `scales` [fp8Blocks(width)]. `vectorStores`: four bytes may be written at once (width % 4 == 0
// and `destination` 4-byte aligned).
template <class Row>
__device__ void quantizeRowWarp(const Row& row, int64_t width, uint8_t* destination, float* scales, bool vectorStores,
                                int64_t firstGroup = 0, int64_t endGroup = -1) {
  using namespace quantize_detail;
  const int lane = threadIdx.x % kWarpSize;
  const int64_t groups = endGroup < 0 ? (width + kGroupColumns - 1) / kGroupColumns : endGroup;
  for (int64_t first = firstGroup; first < groups; first += kGroupsPerStep) {
    float values[kGroupsPerStep][kValuesPerLane];
    float amax[kGroupsPerStep];
#pragma unroll
    for (int s = 0; s < kGroupsPerStep; ++s) {
      const int64_t column = (first + s) * kGroupColumns + lane * kValuesPerLane;
      if (first + s < groups) {
        row.load4(column, values[s]);
      } else {
#pragma unroll
        for (int i = 0; i < kValuesPerLane; ++i) values[s][i] = 0.0f;
      }
      amax[s] = 0.0f;
#pragma unroll
      for (int i = 0; i < kValuesPerLane; ++i) amax[s] = fmaxf(amax[s], fabsf(values[s][i]));
    }
#pragma unroll
    for (int s = 0; s < kGroupsPerStep; ++s) amax[s] = warpMax(amax[s]);
#pragma unroll
    for (int s = 0; s < kGroupsPerStep; ++s) {
      const int64_t group = first + s;
      if (group >= groups) break;
      const float scale = fp8GroupScale(amax[s]);
      const int64_t column = group * kGroupColumns + lane * kValuesPerLane;
      const uint16_t low = floatsToFp8x2(fp8Scaled(values[s][0], scale), fp8Scaled(values[s][1], scale));
      const uint16_t high = floatsToFp8x2(fp8Scaled(values[s][2], scale), fp8Scaled(values[s][3], scale));
      const uint32_t four = static_cast<uint32_t>(low) | (static_cast<uint32_t>(high) << 16);  // byte i: column + i
      if (vectorStores && column + kValuesPerLane <= width) {
        *reinterpret_cast<uint32_t*>(destination + column) = four;
      } else {
#pragma unroll
        for (int i = 0; i < kValuesPerLane; ++i) {
          if (column + i < width) destination[column + i] = static_cast<uint8_t>(four >> (8 * i));
        }
      }
      if (lane == 0) scales[group] = scale;
    }
  }
}

}  // namespace moekit::cuda
