// The quantizing step (quantize.h): one warp per row, rows of a grouped GEMM's range only when
// offsets are given.
#include <algorithm>

#include "alignment.h"
#include "check.h"
#include "float_access.cuh"
#include "quantize.cuh"
#include "quantize.h"

namespace moekit::cuda {
namespace {

struct QuantizeLaunch {
  static constexpr int kRowsPerBlock = 8;  // one warp per row
  static constexpr int kThreads = kRowsPerBlock * quantize_detail::kWarpSize;
};

struct QuantizeRowsParams {
  const void* input;
  int64_t inputWidth;
  int64_t rows;
  int64_t width;
  GemmActivation activation;
  const int32_t* rowOffsets;
  int32_t groups;
  uint8_t* output;
  float* scales;
  bool vectorLoads;
  bool vectorStores;
};

template <typename Format>
__global__ void __launch_bounds__(QuantizeLaunch::kThreads) quantizeRowsKernel(QuantizeRowsParams p) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * QuantizeLaunch::kRowsPerBlock + threadIdx.x / quantize_detail::kWarpSize;
  if (p.rowOffsets != nullptr) {
    const int64_t first = min(max(static_cast<int64_t>(p.rowOffsets[0]), int64_t{0}), p.rows);
    const int64_t last = min(max(static_cast<int64_t>(p.rowOffsets[p.groups]), first), p.rows);
    if (row < first || row >= last) return;
  }
  if (row >= p.rows) return;
  const auto* input = static_cast<const typename Format::Storage*>(p.input) + row * p.inputWidth;
  uint8_t* output = p.output + row * p.width;
  float* scales = p.scales + row * fp8BlockCount(p.width);
  if (p.activation.enabled) {
    quantizeRowWarp(ActivatedRow<Format>{input, p.width, p.activation}, p.width, output, scales, p.vectorStores);
  } else {
    quantizeRowWarp(StoredRow<Format>{input, p.width, p.vectorLoads}, p.width, output, scales, p.vectorStores);
  }
}

}  // namespace

void quantizeRows(const QuantizeRowsArgs& args, cudaStream_t stream) {
  const int64_t rows = args.input.dim(0);
  if (rows == 0 || args.width == 0) return;
  constexpr int64_t kFour = quantize_detail::kValuesPerLane;
  const QuantizeRowsParams params{args.input.data,
                                  args.input.dim(1),
                                  rows,
                                  args.width,
                                  args.activation,
                                  args.rowOffsets,
                                  args.groups,
                                  args.output,
                                  args.scales,
                                  args.input.dim(1) % kFour == 0 && alignedTo(args.input.data, kFour * dtypeSize(args.input.dtype)),
                                  args.width % kFour == 0 && alignedTo(args.output, kFour)};
  const auto blocks = static_cast<unsigned>((rows + QuantizeLaunch::kRowsPerBlock - 1) / QuantizeLaunch::kRowsPerBlock);
  dispatchFloat(args.input.dtype, "quantize input", [&](auto format) {
    quantizeRowsKernel<decltype(format)><<<blocks, QuantizeLaunch::kThreads, 0, stream>>>(params);
    MOEKIT_CHECK_LAUNCH("quantizeRowsKernel");
  });
}

QuantizedRows::QuantizedRows(const TensorView& input, const TensorView& inputScales, cudaStream_t stream) {
  if (input.dtype == DType::Float8E4M3) {
    values_ = input.as<uint8_t>();
    scales_ = inputScales.as<float>();
    return;
  }
  const int64_t rows = input.dim(0), depth = input.dim(1);
  const size_t valueBytes = ScratchBuffer::roundUp(static_cast<size_t>(rows * depth));
  const size_t scaleBytes = static_cast<size_t>(rows * fp8BlockCount(depth)) * sizeof(float);
  storage_ = std::make_unique<ScratchBuffer>(valueBytes + scaleBytes, stream);
  auto* values = static_cast<uint8_t*>(storage_->data());
  auto* scales = static_cast<float*>(storage_->at(valueBytes));
  QuantizeRowsArgs quantize;
  quantize.input = input;
  quantize.output = values;
  quantize.scales = scales;
  quantize.width = depth;
  quantizeRows(quantize, stream);
  values_ = values;
  scales_ = scales;
}

}  // namespace moekit::cuda
