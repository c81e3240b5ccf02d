// Weight-only weights on the CPU: dequantization (Int8, Int4, Mxfp4) and the Int8 / Int4 at-load
// rule, as native/core/op_args.h writes them.
#include "weight_only.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "float_access.h"
#include "parallel.h"

namespace moekit::cpu {
namespace {

constexpr int64_t kRowsPerChunk = 16;

// e2m1 magnitudes by their low three bits; bit 3 is the sign.
constexpr float kE2m1Values[8] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f};

float e2m1ToFloat(uint8_t nibble) {
  const float magnitude = kE2m1Values[nibble & 7u];
  return (nibble & 8u) ? -magnitude : magnitude;
}

// e8m0: 2^(s - 127), and 255 is NaN.
float e8m0ToFloat(uint8_t scale) {
  return scale == 255 ? std::numeric_limits<float>::quiet_NaN() : std::ldexp(1.0f, static_cast<int>(scale) - 127);
}

// A two's-complement int4 nibble.
int int4ToInt(uint8_t nibble) { return nibble >= 8 ? static_cast<int>(nibble) - 16 : static_cast<int>(nibble); }

// Nibble k (low first) of a packed row.
uint8_t nibbleAt(const uint8_t* row, int64_t k) { return (row[k / 2] >> ((k & 1) * 4)) & 0xfu; }

int64_t scaleGroups(const WeightOnlyMatrix& w) { return weightScaleGroups(w.format, w.groupSize, w.depth); }

void dequantizeRow(const WeightOnlyMatrix& w, int64_t n, float* values) {
  const int64_t groupWidth = weightGroupWidth(w.format, w.groupSize, w.depth);
  const int64_t groups = scaleGroups(w);
  const uint8_t* row = w.data + n * weightRowBytes(w.format, w.depth);
  for (int64_t group = 0; group < groups; ++group) {
    const int64_t begin = group * groupWidth, end = std::min(w.depth, begin + groupWidth);
    switch (w.format) {
      case WeightFormat::Int8: {
        const float scale = static_cast<const float*>(w.scales)[n * groups + group];
        for (int64_t k = begin; k < end; ++k) values[k] = static_cast<float>(static_cast<int8_t>(row[k])) * scale;
        break;
      }
      case WeightFormat::Int4: {
        const float scale = static_cast<const float*>(w.scales)[n * groups + group];
        for (int64_t k = begin; k < end; ++k) values[k] = static_cast<float>(int4ToInt(nibbleAt(row, k))) * scale;
        break;
      }
      default: {  // Mxfp4
        const float scale = e8m0ToFloat(static_cast<const uint8_t*>(w.scales)[n * groups + group]);
        for (int64_t k = begin; k < end; ++k) values[k] = e2m1ToFloat(nibbleAt(row, k)) * scale;
        break;
      }
    }
  }
}

// The integers a format's q take: scale = amax / largest, q clamped to [lowest, largest].
struct IntegerRange {
  float lowest, largest;
};
constexpr IntegerRange kInt8Range{-127.0f, 127.0f};
constexpr IntegerRange kInt4Range{-8.0f, 7.0f};

// One group of float32 weights quantized by the rule: its scale, and q into `q` (one per value).
float quantizeGroup(const float* values, int64_t count, IntegerRange range, int8_t* q) {
  float amax = 0.0f;
  bool finite = true;
  for (int64_t i = 0; i < count; ++i) {
    finite = finite && std::isfinite(values[i]);
    amax = std::max(amax, std::fabs(values[i]));
  }
  if (!finite) {
    std::fill(q, q + count, int8_t{0});
    return std::numeric_limits<float>::quiet_NaN();
  }
  const float scale = amax / range.largest;
  for (int64_t i = 0; i < count; ++i) {
    // nearbyint rounds half to even in the default rounding mode.
    const float rounded = scale == 0.0f ? 0.0f : std::nearbyint(values[i] / scale);
    q[i] = static_cast<int8_t>(std::clamp(rounded, range.lowest, range.largest));
  }
  return scale;
}

}  // namespace

WeightOnlyMatrix weightOnlyMatrix(const TensorView& weights, const TensorView& scales, WeightFormat format,
                                  int64_t groupSize, int64_t expert) {
  const size_t rank = weights.shape.size();
  const int64_t rows = weights.shape[rank - 2], rowBytes = weights.shape[rank - 1];
  const int64_t depth = weightDepth(format, rowBytes);
  const int64_t scalesPerMatrix = rows * weightScaleGroups(format, groupSize, depth);
  const size_t scaleBytes = format == WeightFormat::Mxfp4 ? 1 : sizeof(float);
  return {static_cast<const uint8_t*>(weights.data) + expert * rows * rowBytes,
          static_cast<const uint8_t*>(scales.data) + static_cast<size_t>(expert * scalesPerMatrix) * scaleBytes, format,
          groupSize, depth};
}

void dequantizeWeightRows(const WeightOnlyMatrix& w, int64_t first, int64_t count, float* values) {
  parallelFor(0, count, kRowsPerChunk, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) dequantizeRow(w, first + i, values + i * w.depth);
  });
}

void quantizeWeightsWeightOnly(const QuantizeWeightsArgs& args) {
  const size_t rank = args.input.shape.size();
  const int64_t depth = args.input.shape[rank - 1];
  const int64_t rows = args.input.numel() / std::max<int64_t>(depth, 1);
  const int64_t groupWidth = weightGroupWidth(args.format, args.groupSize, depth);
  const int64_t groups = weightScaleGroups(args.format, args.groupSize, depth);
  const int64_t rowBytes = weightRowBytes(args.format, depth);
  const IntegerRange range = args.format == WeightFormat::Int8 ? kInt8Range : kInt4Range;
  auto* output = args.output.as<uint8_t>();
  auto* scales = args.scales.as<float>();
  dispatchFloat(args.input.dtype, "quantizeWeights input", [&](auto format) {
    using Format = decltype(format);
    const auto* input = args.input.as<typename Format::Storage>();
    parallelFor(0, rows, kRowsPerChunk, [&](int64_t begin, int64_t end) {
      std::vector<float> values(static_cast<size_t>(depth));
      std::vector<int8_t> q(static_cast<size_t>(depth));
      for (int64_t row = begin; row < end; ++row) {
        toFloat<Format>(input + row * depth, depth, values.data());
        for (int64_t group = 0; group < groups; ++group) {
          const int64_t k = group * groupWidth;
          scales[row * groups + group] = quantizeGroup(values.data() + k, std::min(groupWidth, depth - k), range, q.data() + k);
        }
        uint8_t* bytes = output + row * rowBytes;
        if (args.format == WeightFormat::Int8) {
          for (int64_t k = 0; k < depth; ++k) bytes[k] = static_cast<uint8_t>(q[k]);
        } else {
          for (int64_t k = 0; k < depth; k += 2) {
            bytes[k / 2] = static_cast<uint8_t>((q[k] & 0xf) | ((q[k + 1] & 0xf) << 4));
          }
        }
      }
    });
  });
}

}  // namespace moekit::cpu
