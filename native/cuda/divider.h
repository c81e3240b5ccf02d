// Division by a divisor fixed for a whole launch, as one multiply and one shift on the device
// (Granlund & Montgomery, "Division by invariant integers using multiplication"). A kernel that
// divides by a runtime value inside its main loop pays for a full integer division each time
// (about 20 dependent instructions, a reciprocal among them); the host finds the magic number
// once and the kernel multiplies.
//
// For a divisor d ≥ 1 and numerators n < 2^31: with l = ceil(log2 d) and p = 31 + l,
// m = ceil(2^p / d) fits in 32 bits, and floor(n · m / 2^p) = floor(n / d): writing
// m · d = 2^p + e with 0 ≤ e < d, n · m / 2^p = n / d + n · e / (d · 2^p), and the error term is
// below 2^(31 - p) = 2^-l ≤ 1 / d, too small to reach the next integer.
#pragma once

#include <cstdint>

#include "../core/host_device.h"

namespace moekit::cuda {

struct Divider {
  uint32_t magic = 1u << 31;  // d = 1: n · 2^31 / 2^31
  uint32_t shift = 31;

  // The host side: d must be at least 1.
  static Divider of(uint32_t divisor) {
    uint32_t log2Ceil = 0;
    while ((uint64_t{1} << log2Ceil) < divisor) ++log2Ceil;
    Divider divider;
    divider.shift = 31 + log2Ceil;
    divider.magic = static_cast<uint32_t>(((uint64_t{1} << divider.shift) + divisor - 1) / divisor);
    return divider;
  }

  // floor(n / d) for 0 ≤ n < 2^31.
  MOEKIT_HOST_DEVICE uint32_t divide(uint32_t n) const {
    return static_cast<uint32_t>((static_cast<uint64_t>(n) * magic) >> shift);
  }
};

}  // namespace moekit::cuda
