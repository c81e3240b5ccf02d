// Copying whole rows by one warp, in the widest unit the rows allow: permute's gathers
// (permute.cu) and a grouped GEMM's gathered input (gathered_input.cu).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace moekit::cuda {

// Copy units a lane loads before it stores them, so a row is a few round trips, not one per unit.
constexpr int kRowCopyUnitsInFlight = 4;
constexpr int kRowCopyWarpSize = 32;

// destination[0, unitsPerRow) = source[0, unitsPerRow), by one warp (`lane` its lane).
template <typename Unit>
__device__ void copyRowByWarp(const Unit* source, Unit* destination, int64_t unitsPerRow, int lane) {
  for (int64_t base = lane; base < unitsPerRow; base += kRowCopyUnitsInFlight * kRowCopyWarpSize) {
    Unit values[kRowCopyUnitsInFlight];
#pragma unroll
    for (int u = 0; u < kRowCopyUnitsInFlight; ++u) {
      const int64_t i = base + u * kRowCopyWarpSize;
      if (i < unitsPerRow) values[u] = source[i];
    }
#pragma unroll
    for (int u = 0; u < kRowCopyUnitsInFlight; ++u) {
      const int64_t i = base + u * kRowCopyWarpSize;
      if (i < unitsPerRow) destination[i] = values[u];
    }
  }
}

// destination[0, unitsPerRow) = 0, by one warp.
template <typename Unit>
__device__ void zeroRowByWarp(Unit* destination, int64_t unitsPerRow, int lane) {
  for (int64_t i = lane; i < unitsPerRow; i += kRowCopyWarpSize) destination[i] = Unit{};
}

// Calls body(Unit{}) with the widest copy unit that divides the row size and both base addresses.
template <typename Body>
void dispatchCopyUnit(size_t rowBytes, const void* source, void* destination, Body&& body) {
  const auto fits = [&](size_t unit) {
    return rowBytes % unit == 0 && reinterpret_cast<uintptr_t>(source) % unit == 0 &&
           reinterpret_cast<uintptr_t>(destination) % unit == 0;
  };
  if (fits(16)) return body(uint4{});
  if (fits(8)) return body(uint2{});
  if (fits(4)) return body(uint32_t{});
  if (fits(2)) return body(uint16_t{});
  body(uint8_t{});  // FP8 rows of odd width
}

}  // namespace moekit::cuda
