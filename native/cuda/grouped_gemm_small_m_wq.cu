// The small_m family's weight-only half (Int8, Int4, MXFP4): which calls it takes and the
// configuration each gets. The kernel, its conversions and its exact arithmetic are in
// grouped_gemm_small_m_wq.cuh.
//
// For the contract (native/core/op_args.h, "The weight-only rule"), the rule this path computes,
// from the input's 16-bit dtype T (bfloat16 or float16):
//   Int8 / Int4, a scale per row or groups a multiple of 64 (Int8) / 128 (Int4) values:
//     output = Σ_g scale_g · (Σ_{k in g} q_k · x_k), q exact in T, float32 accumulation: w is
//     never rounded to T.
//   Int8 / Int4, groups of 32 (Int8, Int4) or 64 (Int4): w = rn_T(q · rn_T(scale)).
//   MXFP4: w = rn_T(e2m1 · 2^(s - 127)) (exact unless it leaves T's range), as the contract says.
#include <cstdint>

#include "alignment.h"
#include "grouped_gemm_small_m_wq.cuh"

namespace moekit::cuda::small_m {

bool supportsWeightOnly(const GroupedGemmArgs& args) {
  if (!isWeightOnly(args.weightFormat)) return false;
  const DType dtype = args.input.dtype;
  if (dtype != DType::BFloat16 && dtype != DType::Float16) return false;
  if (args.weights.dtype != DType::UInt8 || !isComputeFloat(args.output.dtype)) return false;
  if (args.bias.present() && !isComputeFloat(args.bias.dtype)) return false;
  const DType scaleDType = args.weightFormat == WeightFormat::Mxfp4 ? DType::UInt8 : DType::Float32;
  if (args.weightScales.dtype != scaleDType) return false;
  if (args.weights.dim(0) > detail::kMaxExperts) return false;
  const PackedWeights packed = PackedWeights::of(args);
  const int64_t values = args.weightFormat == WeightFormat::Int8 ? detail::WqVector<WeightFormat::Int8>::kValues
                                                                 : detail::WqVector<WeightFormat::Int4>::kValues;
  // Whole 16-byte vectors along K (rows of packed bytes and of tokens stay 16-byte aligned), each
  // in one scale group; whole 16-row mma tiles (and so whole gate/up pairs) along N.
  if (packed.depth % values != 0) return false;
  // K offsets in 32 bits, and scale groups found by a Divider (numerators below 2^31).
  if (packed.depth >= (int64_t{1} << 31)) return false;
  if (packed.groupWidth() < packed.depth && packed.groupWidth() % values != 0) return false;
  if (args.weights.dim(2) != weightRowBytes(args.weightFormat, packed.depth)) return false;
  if (!aligned16(args.input.data) || !aligned16(args.weights.data)) return false;
  if (args.weights.dim(1) % detail::kMmaRows != 0) return false;
  return computeCapability() >= 80;
}

void weightOnlyGroupedGemm(const GroupedGemmArgs& args, cudaStream_t stream) {
  weight_only::dispatchFormat(args.weightFormat, [&](auto format) {
    constexpr WeightFormat kFormat = decltype(format)::value;
    detail::dispatchWqConfig<kFormat>(args.input.dim(0), args.weights.dim(0), args.weights.dim(1), [&](auto config) {
      using Config = decltype(config);
      if (args.input.dtype == DType::BFloat16) {
        detail::launchWq<kFormat, BF16, Config>(args, stream);
      } else {
        detail::launchWq<kFormat, F16, Config>(args, stream);
      }
    });
  });
}

}  // namespace moekit::cuda::small_m
