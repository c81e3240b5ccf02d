// Pointer alignment, asked before choosing vector loads, cp.async copies or TMA descriptors.
#pragma once

#include <cstddef>
#include <cstdint>

namespace moekit::cuda {

inline bool alignedTo(const void* pointer, size_t bytes) { return reinterpret_cast<uintptr_t>(pointer) % bytes == 0; }
inline bool aligned16(const void* pointer) { return alignedTo(pointer, 16); }

}  // namespace moekit::cuda
