// The FP8 rules on the CPU, and quantizeWeights for Fp8Block128 (the at-load block rule).
#include "fp8.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "float_access.h"
#include "kernels.h"
#include "parallel.h"

namespace moekit::cpu {
namespace {

constexpr int64_t kRowsPerChunk = 16;

// One row of FP8 values with its row scales (one per 128 values) as float32.
void dequantizeRow(const uint8_t* q, const float* scales, int64_t width, float* values) {
  for (int64_t begin = 0, group = 0; begin < width; begin += kFp8BlockSize, ++group) {
    const int64_t end = std::min(width, begin + kFp8BlockSize);
    for (int64_t k = begin; k < end; ++k) values[k] = fp8Scaled(q[k], scales[group]);
  }
}

}  // namespace

void quantizeRowFp8(const float* values, int64_t width, uint8_t* q, float* scales) {
  for (int64_t begin = 0, group = 0; begin < width; begin += kFp8BlockSize, ++group) {
    const int64_t end = std::min(width, begin + kFp8BlockSize);
    float amax = 0.0f;
    for (int64_t i = begin; i < end; ++i) amax = std::max(amax, std::fabs(values[i]));
    const float scale = fp8Scale(amax);
    scales[group] = scale;
    for (int64_t i = begin; i < end; ++i) q[i] = fp8Quantize(values[i], scale);
  }
}

void quantizeRowsFp8(const float* values, int64_t first, int64_t count, int64_t width, uint8_t* q, float* scales) {
  const int64_t groups = fp8Blocks(width);
  parallelFor(first, first + count, kRowsPerChunk, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) quantizeRowFp8(values + row * width, width, q + row * width, scales + row * groups);
  });
}

void dequantizeRowsFp8(const uint8_t* q, const float* scales, int64_t first, int64_t count, int64_t width, float* values) {
  const int64_t groups = fp8Blocks(width);
  parallelFor(first, first + count, kRowsPerChunk, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) dequantizeRow(q + row * width, scales + row * groups, width, values + row * width);
  });
}

void w8a8RowsAsFloat(const TensorView& input, int64_t first, int64_t count, float* values) {
  const int64_t width = input.dim(1);
  const int64_t groups = fp8Blocks(width);
  dispatchFloat(input.dtype, "gemm input", [&](auto format) {
    using Format = decltype(format);
    const auto* rows = input.as<typename Format::Storage>();
    parallelFor(first, first + count, kRowsPerChunk, [&](int64_t begin, int64_t end) {
      std::vector<uint8_t> q(static_cast<size_t>(width));
      std::vector<float> scales(static_cast<size_t>(groups));
      for (int64_t row = begin; row < end; ++row) {
        float* rowValues = values + row * width;
        toFloat<Format>(rows + row * width, width, rowValues);
        quantizeRowFp8(rowValues, width, q.data(), scales.data());
        dequantizeRow(q.data(), scales.data(), width, rowValues);
      }
    });
  });
}

// One block row (128 rows of a matrix, fewer at the edge) at a time: each block's amax, then its values.
void quantizeWeightsFp8Block(const QuantizeWeightsArgs& args) {
  const size_t rank = args.input.shape.size();
  const int64_t rows = args.input.shape[rank - 2];
  const int64_t cols = args.input.shape[rank - 1];
  const int64_t matrices = rank == 3 ? args.input.dim(0) : 1;
  const int64_t blockRows = fp8Blocks(rows), blockCols = fp8Blocks(cols);
  auto* q = args.output.as<uint8_t>();
  auto* scales = args.scales.as<float>();
  dispatchFloat(args.input.dtype, "quantizeWeights input", [&](auto format) {
    using Format = decltype(format);
    const auto* input = args.input.as<typename Format::Storage>();
    parallelFor(0, matrices * blockRows, 1, [&](int64_t begin, int64_t end) {
      std::vector<float> values;
      for (int64_t index = begin; index < end; ++index) {
        const int64_t matrix = index / blockRows, blockRow = index % blockRows;
        const int64_t rowBegin = blockRow * kFp8BlockSize, rowEnd = std::min(rows, rowBegin + kFp8BlockSize);
        const int64_t offset = (matrix * rows + rowBegin) * cols;
        const int64_t count = (rowEnd - rowBegin) * cols;
        values.resize(static_cast<size_t>(count));
        toFloat<Format>(input + offset, count, values.data());
        for (int64_t blockCol = 0; blockCol < blockCols; ++blockCol) {
          const int64_t colBegin = blockCol * kFp8BlockSize, colEnd = std::min(cols, colBegin + kFp8BlockSize);
          float amax = 0.0f;
          for (int64_t r = 0; r < rowEnd - rowBegin; ++r) {
            for (int64_t c = colBegin; c < colEnd; ++c) amax = std::max(amax, std::fabs(values[r * cols + c]));
          }
          const float scale = fp8Scale(amax);
          scales[(matrix * blockRows + blockRow) * blockCols + blockCol] = scale;
          for (int64_t r = 0; r < rowEnd - rowBegin; ++r) {
            for (int64_t c = colBegin; c < colEnd; ++c) q[offset + r * cols + c] = fp8Quantize(values[r * cols + c], scale);
          }
        }
      }
    });
  });
}

}  // namespace moekit::cpu
