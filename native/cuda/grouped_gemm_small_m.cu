// The small_m family (decode: a few rows per expert, weights streamed once) for bfloat16 and
// float16 operands, and which calls it takes. The kernel and its design: grouped_gemm_small_m.cuh;
// FP8 weights: grouped_gemm_small_m_fp8.cu; weight-only ones: grouped_gemm_small_m_wq.cu.
#include "alignment.h"
#include "grouped_gemm_small_m.cuh"

namespace moekit::cuda::small_m {
namespace {

using namespace detail;

template <typename Element>
void launchDense(const GroupedGemmArgs& args, cudaStream_t stream) {
  dispatchConfig(args.weights.dim(2), [&](auto config) {
    using Config = decltype(config);
    StreamProblem p = problemOf<Config>(args, args.output.data, args.output.dtype);
    p.input = args.input.data;
    launchStream<DenseOperands<Element>, Config>(p, stream);
  });
}

}  // namespace

bool supports(const GroupedGemmArgs& args) {
  if (args.weightFormat == WeightFormat::Fp8Block128) return supportsFp8(args);
  if (isWeightOnly(args.weightFormat)) return supportsWeightOnly(args);
  const DType dtype = args.input.dtype;
  if (dtype != DType::BFloat16 && dtype != DType::Float16) return false;
  if (args.weights.dtype != dtype) return false;
  if (args.output.dtype == DType::Int32) return false;
  if (args.bias.present() && args.bias.dtype == DType::Int32) return false;
  if (args.weights.dim(0) > kMaxExperts) return false;
  // 16-byte vectors along K; whole 16-row mma tiles (and so whole gate/up pairs) along N.
  if (args.weights.dim(2) % DenseOperands<BF16>::kElementsPerVector != 0) return false;
  if (!aligned16(args.input.data) || !aligned16(args.weights.data)) return false;
  if (args.weights.dim(1) % kMmaRows != 0) return false;
  return computeCapability() >= 80;
}

void groupedGemm(const GroupedGemmArgs& args, cudaStream_t stream) {
  if (args.weightFormat == WeightFormat::Fp8Block128) {
    fp8GroupedGemm(args, stream);
  } else if (isWeightOnly(args.weightFormat)) {
    weightOnlyGroupedGemm(args, stream);
  } else if (args.input.dtype == DType::BFloat16) {
    launchDense<BF16>(args, stream);
  } else {
    launchDense<F16>(args, stream);
  }
}

}  // namespace moekit::cuda::small_m
