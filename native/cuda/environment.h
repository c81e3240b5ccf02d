// Switches read from the environment, for timing and testing one path against another
// (MOEKIT_GEMM, MOEKIT_WQ_PREFILL, MOEKIT_SM90_SCHEDULE, MOEKIT_SM90_STORES, MOEKIT_GEMM_GATHER,
// MOEKIT_SIDE_STREAM, MOEKIT_FUSED_MOE).
// Each caller reads its switch once and keeps it.
#pragma once

#include <cstdlib>
#include <string>

namespace moekit::cuda {

// The value of `variable`, or "auto" where it is not set.
inline std::string environmentSwitch(const char* variable) {
  const char* value = std::getenv(variable);
  return value == nullptr ? "auto" : value;
}

}  // namespace moekit::cuda
