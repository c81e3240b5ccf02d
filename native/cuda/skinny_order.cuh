// The order in which the skinny linear (skinny_linear.cu) sums a dot product's terms, shared with
// the fused MoE kernel's router (fused_moe.cu), so that both give the same float32 logits and so
// route alike: warp w of kWarps takes the K spans w, w + kWarps, ... of kVectorSpan values; lane l
// adds the l-th vector of kElementsPerVector values of each span (fmaf, in K order); a butterfly
// adds the lanes; the warps' sums are added in warp order, from zero.
#pragma once

#include <cstdint>

namespace moekit::cuda::skinny {

constexpr int kWarpSize = 32;
constexpr unsigned kFullWarp = 0xffffffffu;
constexpr int kElementsPerVector = 8;  // 16 bytes of 16-bit values
constexpr int kWarps = 8;              // warps per block, splitting K
constexpr int64_t kVectorSpan = int64_t{kWarpSize} * kElementsPerVector;  // K covered by one warp load

// Eight products of two 16-byte vectors, added to `sum` in float32.
template <typename Element>
__device__ __forceinline__ float dot8(const uint4& a, const uint4& b, float sum) {
  using T = typename Element::Storage;
  const T* x = reinterpret_cast<const T*>(&a);
  const T* y = reinterpret_cast<const T*>(&b);
#pragma unroll
  for (int i = 0; i < kElementsPerVector; ++i) sum = fmaf(Element::load(x[i]), Element::load(y[i]), sum);
  return sum;
}

__device__ __forceinline__ float warpSum(float value) {
#pragma unroll
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2) value += __shfl_xor_sync(kFullWarp, value, offset);
  return value;
}

}  // namespace moekit::cuda::skinny
