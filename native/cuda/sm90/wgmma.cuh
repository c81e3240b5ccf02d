// The wgmma shapes the sm90 grouped GEMM uses: m64nNk16 for 16-bit operands and m64n128k32 for
// e4m3 ones, float32 accumulators, both operands K-major in 128-byte-swizzled shared memory ("TN":
// A = token rows, B = weight rows, each with K contiguous), no transposes, unit scales.
//
// wgmma names every accumulator register in its operand list, so each width is one long asm
// statement; the macros below only differ in N (generated, not hand-typed). `scaleD` == 0 makes
// the instruction overwrite D instead of adding to it, which is how a tile's first K step starts
// without zeroing 128 registers.
//
// Accumulator layout (PTX ISA, "wgmma register fragment D"): thread t of the warpgroup, warp
// w = t / 32, lane l, holds for every 8-column chunk j the four values
//   d[4j + 0], d[4j + 1]  at row 16w + l / 4,      columns 8j + 2 (l % 4) + {0, 1}
//   d[4j + 2], d[4j + 3]  at row 16w + l / 4 + 8,  the same columns.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <type_traits>

#include "../float_access.cuh"
#include "arch.h"

namespace moekit::cuda::sm90 {

// m64n256k16: D[64 x 256] (+)= A[64 x 16] · B[256 x 16]ᵀ; 128 accumulators per thread.
#define MOEKIT_WGMMA_M64N256K16(TYPE)                                                     \
  asm volatile(                                                                         \
      "{\n.reg .pred p;\nsetp.ne.b32 p, %130, 0;\n"                                  \
      "wgmma.mma_async.sync.aligned.m64n256k16.f32." TYPE "." TYPE "\n{"                  \
      "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, %64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, %80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95, %96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, %111, %112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, %125, %126, %127"  \
      "},\n%128, %129, p, 1, 1, 0, 0;\n}\n"                                        \
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]), "+f"(d[64]), "+f"(d[65]), "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]), "+f"(d[70]), "+f"(d[71]), "+f"(d[72]), "+f"(d[73]), "+f"(d[74]), "+f"(d[75]), "+f"(d[76]), "+f"(d[77]), "+f"(d[78]), "+f"(d[79]), "+f"(d[80]), "+f"(d[81]), "+f"(d[82]), "+f"(d[83]), "+f"(d[84]), "+f"(d[85]), "+f"(d[86]), "+f"(d[87]), "+f"(d[88]), "+f"(d[89]), "+f"(d[90]), "+f"(d[91]), "+f"(d[92]), "+f"(d[93]), "+f"(d[94]), "+f"(d[95]), "+f"(d[96]), "+f"(d[97]), "+f"(d[98]), "+f"(d[99]), "+f"(d[100]), "+f"(d[101]), "+f"(d[102]), "+f"(d[103]), "+f"(d[104]), "+f"(d[105]), "+f"(d[106]), "+f"(d[107]), "+f"(d[108]), "+f"(d[109]), "+f"(d[110]), "+f"(d[111]), "+f"(d[112]), "+f"(d[113]), "+f"(d[114]), "+f"(d[115]), "+f"(d[116]), "+f"(d[117]), "+f"(d[118]), "+f"(d[119]), "+f"(d[120]), "+f"(d[121]), "+f"(d[122]), "+f"(d[123]), "+f"(d[124]), "+f"(d[125]), "+f"(d[126]), "+f"(d[127])  \
      : "l"(descA), "l"(descB), "r"(scaleD))

// m64n128k16: D[64 x 128] (+)= A[64 x 16] · B[128 x 16]ᵀ; 64 accumulators per thread.
#define MOEKIT_WGMMA_M64N128K16(TYPE)                                                     \
  asm volatile(                                                                         \
      "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"                                  \
      "wgmma.mma_async.sync.aligned.m64n128k16.f32." TYPE "." TYPE "\n{"                  \
      "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63"  \
      "},\n%64, %65, p, 1, 1, 0, 0;\n}\n"                                        \
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])  \
      : "l"(descA), "l"(descB), "r"(scaleD))

// m64n128k32 with e4m3 operands: D[64 x 128] (+)= A[64 x 32] · B[128 x 32]ᵀ; 64 accumulators per
// thread. FP8 wgmma takes no transpose flags: both operands must be K-major, which ours are.
#define MOEKIT_WGMMA_M64N128K32_E4M3                                                      \
  asm volatile(                                                                         \
      "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"                                  \
      "wgmma.mma_async.sync.aligned.m64n128k32.f32.e4m3.e4m3\n{"                        \
      "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63"  \
      "},\n%64, %65, p, 1, 1;\n}\n"                                        \
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])  \
      : "l"(descA), "l"(descB), "r"(scaleD))

#if MOEKIT_SM90A_DEVICE
// D (+)= A · Bᵀ for one K step of 16, on the calling warpgroup. Asynchronous: the result is ready
// after commitGroup() and waitGroup(); the accumulators must not be touched before then.
template <int N, typename Element>
__device__ __forceinline__ void wgmmaAsync(float (&d)[N / 2], uint64_t descA, uint64_t descB, int scaleD) {
  static_assert(N == 128 || N == 256, "instantiate MOEKIT_WGMMA_M64N<N>K16 for other widths");
  constexpr bool kBf16 = std::is_same_v<Element, BF16>;
  static_assert(kBf16 || std::is_same_v<Element, F16>, "bfloat16 or float16 operands");
  if constexpr (N == 256 && kBf16) {
    MOEKIT_WGMMA_M64N256K16("bf16");
  } else if constexpr (N == 256) {
    MOEKIT_WGMMA_M64N256K16("f16");
  } else if constexpr (kBf16) {
    MOEKIT_WGMMA_M64N128K16("bf16");
  } else {
    MOEKIT_WGMMA_M64N128K16("f16");
  }
}
#endif

#if MOEKIT_SM90A_DEVICE
// D (+)= A · B for one K step of 32 e4m3 values, N = 128, on the calling warpgroup: as wgmmaAsync.
// Hopper's FP8 wgmma sums with less precision than float32 (DeepSeek-V3's report: about 14 bits),
// which is why the FP8 kernel adds its results into float32 after every 128 values of K.
__device__ __forceinline__ void wgmmaFp8Async(float (&d)[64], uint64_t descA, uint64_t descB, int scaleD) {
  MOEKIT_WGMMA_M64N128K32_E4M3;
}
#endif

#undef MOEKIT_WGMMA_M64N256K16
#undef MOEKIT_WGMMA_M64N128K16
#undef MOEKIT_WGMMA_M64N128K32_E4M3

}  // namespace moekit::cuda::sm90
