// What combine (combine.cu) does per chunk of a row, shared with the fused MoE kernel's combine
// step (fused_moe.cu): kVector consecutive values moved as one aligned access, and the weighted sum
// as the CPU backend computes it (separate multiply and add: the _rn intrinsics are never fused
// into an FMA, so float32 results agree with it bit for bit on x86-64).
#pragma once

namespace moekit::cuda {

// kVector consecutive values of one row, moved as one aligned access.
template <typename Storage, int kVector>
struct alignas(sizeof(Storage) * kVector) Chunk {
  Storage values[kVector];
};

template <typename Format, int kVector>
__device__ __forceinline__ void loadChunk(const typename Format::Storage* source, float (&values)[kVector]) {
  const auto chunk = *reinterpret_cast<const Chunk<typename Format::Storage, kVector>*>(source);
#pragma unroll
  for (int i = 0; i < kVector; ++i) values[i] = Format::load(chunk.values[i]);
}

// sum += weight × values, element by element.
template <int kVector>
__device__ __forceinline__ void addWeighted(float (&sum)[kVector], float weight, const float (&values)[kVector]) {
#pragma unroll
  for (int i = 0; i < kVector; ++i) sum[i] = __fadd_rn(sum[i], __fmul_rn(weight, values[i]));
}

template <typename Format, int kVector>
__device__ __forceinline__ void storeChunk(const float (&sum)[kVector], typename Format::Storage* destination) {
  Chunk<typename Format::Storage, kVector> result;
#pragma unroll
  for (int i = 0; i < kVector; ++i) result.values[i] = Format::store(sum[i]);
  *reinterpret_cast<Chunk<typename Format::Storage, kVector>*>(destination) = result;
}

}  // namespace moekit::cuda
