// The small_m family with FP8 block-scaled weights (WeightFormat::Fp8Block128, W8A8): the decode
// kernel (grouped_gemm_small_m.cuh) streaming e4m3 weights, half the bytes of bfloat16 ones, and
// FP8 token rows. A float input is quantized first (quantize.h). An FP8 output's scales need the
// largest magnitude of 128 outputs of a row, which the kernel's items (16 weight rows each, on
// different blocks) never hold together: the kernel writes float32 results to scratch and the
// quantizing step finishes the rows the experts own.
#include "alignment.h"
#include "grouped_gemm_small_m.cuh"
#include "quantize.h"
#include "scratch.h"

namespace moekit::cuda::small_m {

using namespace detail;

bool supportsFp8(const GroupedGemmArgs& args) {
  const DType input = args.input.dtype;
  if (input != DType::Float8E4M3 && input != DType::Float32 && input != DType::Float16 && input != DType::BFloat16) return false;
  if (args.weights.dtype != DType::Float8E4M3 || args.output.dtype == DType::Int32) return false;
  if (args.bias.present() && args.bias.dtype == DType::Int32) return false;
  if (args.weights.dim(0) > kMaxExperts) return false;
  // 16-byte vectors of e4m3 along K; whole 16-row mma tiles (and so whole gate/up pairs) along N.
  if (args.weights.dim(2) % Fp8Operands::kElementsPerVector != 0 || args.weights.dim(1) % kMmaRows != 0) return false;
  // A quantized copy of a float input is aligned; an FP8 input must be.
  if (!aligned16(args.weights.data) || (input == DType::Float8E4M3 && !aligned16(args.input.data))) return false;
  return computeCapability() >= 80;
}

void fp8GroupedGemm(const GroupedGemmArgs& args, cudaStream_t stream) {
  const QuantizedRows input(args.input, args.inputScales, stream);
  const bool fp8Output = args.output.dtype == DType::Float8E4M3;
  const int64_t rows = args.output.dim(0), width = args.output.dim(1);
  std::unique_ptr<ScratchBuffer> results;
  if (fp8Output) results = std::make_unique<ScratchBuffer>(static_cast<size_t>(rows * width) * sizeof(float), stream);
  dispatchFp8Config(args.weights.dim(2), args.weights.dim(1), [&](auto config) {
    using Config = decltype(config);
    StreamProblem p = fp8Output ? problemOf<Config>(args, results->data(), DType::Float32)
                                : problemOf<Config>(args, args.output.data, args.output.dtype);
    p.input = input.values();
    p.inputScales = input.scales();
    launchStream<Fp8Operands, Config>(p, stream);
  });
  if (!fp8Output) return;
  QuantizeRowsArgs quantize;
  quantize.input = TensorView{results->data(), DType::Float32, {rows, width}};
  quantize.output = args.output.as<uint8_t>();
  quantize.scales = args.outputScales.as<float>();
  quantize.width = width;
  quantize.rowOffsets = args.expertOffsets.as<int32_t>();
  quantize.groups = static_cast<int32_t>(args.weights.dim(0));
  quantizeRows(quantize, stream);
}

}  // namespace moekit::cuda::small_m
