// The grouped GEMM's kernel families. groupedGemm() (grouped_gemm.cu) picks one per call:
//   sm90     TMA + wgmma, warp-specialized, persistent over the device-side expert offsets
//            (Hopper, bfloat16/float16): prefill and mid-sized batches.  grouped_gemm_sm90.cu
//   smallM   weight streaming for a few rows per expert (decode), sm_80 and up.
//                                                                       grouped_gemm_small_m.cu
//   mma      warp-level tensor-core MMA, sm_80 and up: any shape, the fallback and the
//            A100-class path. 128 × 128 tiles on one scheduler (row_tiles.cuh):
//            bfloat16/float16 through WMMA,                             grouped_gemm_wmma.cu
//            float32 and mixed dtypes on SIMT FMAs,                     grouped_gemm_simt.cu
//            FP8 weights (Fp8Block128) widened to float16 for mma.sync, grouped_gemm_mma_fp8.cu
//            weight-only weights dequantized in the main loop, mma.sync. grouped_gemm_mma_wq.cu
// Weight-only weights (Int8, Int4, MXFP4; W8A16 / W4A16): smallM and mma dequantize them in
// registers (grouped_gemm_small_m_wq.cu, grouped_gemm_mma_wq.cu), sm90 in shared memory inside its
// main loop (sm90/kernel_wq.cuh); shapes these refuse take them dequantized into scratch first
// (grouped_gemm.cu, denseFromWeightOnly).
// MOEKIT_GEMM=auto|sm90|small_m|mma forces a family (the tests run the sm_80 path on an H100 so);
// a forced family that cannot take a call falls back to the next one as in auto.
//
// Every family honours the whole GroupedGemmArgs contract (native/core/op_args.h), including the
// optional activation, which sm90 and smallM fuse into their epilogue, and FP8 block-scaled
// weights with FP8 or float activations in and out (W8A8). Gathered rows (gatherRows): smallM's
// dense kernel reads them where they are, and so does sm90's 16-bit one where that pays
// (sm90::gatherInKernelPreferred); every other call is handed a gathered copy first
// (row_gather.cuh, GatheredInput; MOEKIT_GEMM_GATHER=copy forces that).
#pragma once

#include <cuda_runtime.h>

#include "../core/op_args.h"
#include "per_device.h"

namespace moekit::cuda {

namespace sm90 {
// Whether this path handles the call (dtypes, alignment, shapes, the current GPU).
bool supports(const GroupedGemmArgs& args);
void groupedGemm(const GroupedGemmArgs& args, cudaStream_t stream);
// Weight-only weights dequantized inside the main loop (sm90/kernel_wq.cuh): bfloat16 / float16
// input, K at least 64 and whole 16-byte rows of packed bytes, 16-byte aligned bases, Hopper.
bool supportsWeightOnly(const GroupedGemmArgs& args);
// The in-loop kernel's tile height (sm90/shapes.h): picked by the rows per expert, or forced (to
// time the two: MOEKIT_WQ_PREFILL=in_loop_short|in_loop_tall).
enum class WqTileHeight { Auto, Short, Tall };
void weightOnlyGroupedGemm(const GroupedGemmArgs& args, cudaStream_t stream, WqTileHeight height = WqTileHeight::Auto);
// Whether a 16-bit dense call with gatherRows is better gathered by the kernel's producer than
// handed a gathered copy (a rule from measurements: grouped_gemm_sm90.cu).
bool gatherInKernelPreferred(const GroupedGemmArgs& args);
}  // namespace sm90

namespace mma {
// Any Fp8Block128 call (every shape, input and output dtype), on sm_80 and up.
void fp8GroupedGemm(const GroupedGemmArgs& args, cudaStream_t stream);
// Weight-only weights dequantized inside the main loop (grouped_gemm_mma_wq.cu): bfloat16 /
// float16 input, K a multiple of 32, scale groups of a whole row or a multiple of 16 values,
// 16-byte aligned input and weights, sm_80 and up. Other calls take denseFromWeightOnly.
bool supportsWeightOnly(const GroupedGemmArgs& args);
void weightOnlyGroupedGemm(const GroupedGemmArgs& args, cudaStream_t stream);
}  // namespace mma

namespace small_m {
// Auto picks this path over sm90 when the caller's bound on rows per expert
// (args.maxRowsPerExpert) is at most kAutoMaxRowsPerExpert, or when the mean rows per expert
// (rows / E, known on the host) is at most kAutoMeanRowsPerExpert. One pass of the kernel takes
// 32 rows per expert while reading each weight once at copy speed (bench/NOTES.md, v1); an expert
// with more rows costs one more weight read per 32 rows, so the mean is kept well below that.
constexpr int64_t kAutoMaxRowsPerExpert = 32;
constexpr int64_t kAutoMeanRowsPerExpert = 16;
bool supports(const GroupedGemmArgs& args);
void groupedGemm(const GroupedGemmArgs& args, cudaStream_t stream);
// The weight-only half (Int8, Int4, MXFP4 packed weights, dequantized in registers):
// grouped_gemm_small_m_wq.cu.
bool supportsWeightOnly(const GroupedGemmArgs& args);
void weightOnlyGroupedGemm(const GroupedGemmArgs& args, cudaStream_t stream);
}  // namespace small_m

}  // namespace moekit::cuda
