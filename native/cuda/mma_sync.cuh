// The tensor-core instructions of the mma.sync kernels (grouped_gemm_small_m.cu,
// grouped_gemm_mma_fp8.cu): m16n8k16 with 16-bit operands and, from sm_89 on, m16n8k32 with e4m3
// operands, both with float32 accumulators.
//
// Fragments (PTX ISA, "mma.m16n8k16"): lane l, g = l / 4, c = l % 4 holds
//   A (16 × 16, row-major): a0 = (row g, k 2c..2c+1), a1 = (row g + 8, k 2c..2c+1),
//                           a2 = (row g, k 2c+8..2c+9), a3 = (row g + 8, k 2c+8..2c+9);
//   B (16 × 8, "col"):      b0 = (k 2c..2c+1, column g), b1 = (k 2c+8..2c+9, column g);
//   C (16 × 8):             c0, c1 = (row g, columns 2c, 2c+1), c2, c3 = (row g + 8, the same).
// A dot product may sum its K terms in any order, so both operands may map the fragment's logical
// K positions onto physical ones in any one-to-one way that depends only on c, as long as A and B
// use the same mapping; the kernels use that to feed each lane contiguous bytes.
//
// m16n8k32 with 8-bit operands uses the same registers, each holding four K values where
// m16n8k16's holds two: a0 = (row g, k 4c..4c+3), a2 = (row g, k 4c+16..4c+19), b0 = (k 4c..4c+3,
// column g), and so on; C is as above.
#pragma once

#include <cstdint>
#include <type_traits>

#include "float_access.cuh"

namespace moekit::cuda {

// c += A · B for one m16n8k16 tile; Element is BF16 or F16 (float_access.cuh).
template <typename Element>
__device__ __forceinline__ void mma16816(float (&c)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3, uint32_t b0,
                                         uint32_t b1) {
  static_assert(std::is_same_v<Element, BF16> || std::is_same_v<Element, F16>, "bfloat16 or float16 operands");
  if constexpr (std::is_same_v<Element, BF16>) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
  } else {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
  }
}

// Whether this compilation pass has FP8 mma.sync (sm_89 and up). The host pass says yes: only
// device code asks.
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 890
constexpr bool kHasFp8Mma = false;
#else
constexpr bool kHasFp8Mma = true;
#endif

// c += A · B for one m16n8k32 tile of e4m3 values. Call it only where kHasFp8Mma: on older GPUs
// the instruction does not exist and this compiles to nothing.
__device__ __forceinline__ void mma16832Fp8(float (&c)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3, uint32_t b0,
                                            uint32_t b1) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
  asm("mma.sync.aligned.m16n8k32.row.col.f32.e4m3.e4m3.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
#else
  (void)c, (void)a0, (void)a1, (void)a2, (void)a3, (void)b0, (void)b1;
#endif
}

}  // namespace moekit::cuda
