// A counter-based uniform generator usable from host and device code, so that the CPU and CUDA
// backends fill the same tensor with the same values for the same seed.
#pragma once

#include <cstdint>

#include "host_device.h"

namespace moekit {

// splitmix64 finaliser of (seed, index): a well-mixed 64-bit value per element.
MOEKIT_HOST_DEVICE inline uint64_t mixHash(uint64_t seed, uint64_t index) {
  uint64_t z = seed + 0x9e3779b97f4a7c15ull * (index + 1);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// Uniform float in [0, 1) with 24 random bits.
MOEKIT_HOST_DEVICE inline float uniformHash(uint64_t seed, uint64_t index) {
  return static_cast<float>(mixHash(seed, index) >> 40) * (1.0f / 16777216.0f);
}

}  // namespace moekit
