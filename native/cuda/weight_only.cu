// Weight-only formats as steps of their own (weight_only.h): the dequantizing step and the Int8 /
// Int4 quantizer. Both are elementwise over the packed bytes and bound by memory; neither is on
// the decode path (the small_m family dequantizes in registers).
#include <climits>
#include <cmath>
#include <cstdint>
#include <string>

#include "alignment.h"
#include "check.h"
#include "flat_launch.h"
#include "float_access.cuh"
#include "kernels.h"
#include "weight_only.cuh"
#include "weight_only.h"

namespace moekit::cuda {
namespace {

constexpr int kWarpSize = 32;
constexpr unsigned kFullWarp = 0xffffffffu;

// ---- Dequantizing -----------------------------------------------------------------------------------
struct DequantizeParams {
  const uint8_t* weights;  // [rows, rowBytes], rows = E × N
  const void* scales;      // [rows, scaleGroups]
  void* output;            // [rows, depth]
  int64_t rows;
  int64_t rowBytes;
  int64_t depth;
  int64_t groupWidth;
  int64_t scaleGroups;
};

// One thread per 16 packed bytes (16 Int8 or 32 Int4 / MXFP4 values): one 16-byte load, one scale
// (the vector lies in one group: groups are multiples of 32 values or a whole row, and a row is
// whole vectors), then w = q × scale in float32 rounded once to the output dtype (the contract's
// w, as every caller of the dense copy expects) and 16-byte stores. About five instructions per
// value (weight_only.cuh's bit tricks, a multiply, half a pair conversion), far under what the
// 2.5 (16-bit) to 4.5 (float32) bytes moved per value allow at copy speed. v1 read a byte per
// thread and recomputed the row, group and scale per value: far below copy speed.
constexpr int kPackedVectorBytes = 16;

template <WeightFormat kFormat, typename Format>
__global__ void __launch_bounds__(FlatLaunch::kThreads) dequantizeVectorKernel(DequantizeParams p) {
  using Decode = weight_only::Decoder<kFormat>;
  using Storage = typename Format::Storage;
  constexpr int kWords = kPackedVectorBytes / 4;
  constexpr int kValues = kWords * Decode::kValuesPerWord;
  constexpr int kOutputWords = kValues * static_cast<int>(sizeof(Storage)) / 4;
  constexpr int kOutputVectors = kOutputWords / 4;
  const int64_t vectorsPerRow = p.rowBytes / kPackedVectorBytes;
  const int64_t vectors = p.rows * vectorsPerRow;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < vectors;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t row = i / vectorsPerRow;
    const int64_t firstK = (i % vectorsPerRow) * kValues;
    const uint4 packed = __ldg(reinterpret_cast<const uint4*>(p.weights) + i);
    const uint32_t words[kWords] = {packed.x, packed.y, packed.z, packed.w};
    const float scale = Decode::scale(p.scales, row * p.scaleGroups + firstK / p.groupWidth);
    uint32_t output[kOutputWords];  // values in K order
#pragma unroll
    for (int v = 0; v < kValues; v += 2) {
      const float low = Decode::value(words[v / Decode::kValuesPerWord], v % Decode::kValuesPerWord, scale);
      const float high = Decode::value(words[v / Decode::kValuesPerWord], v % Decode::kValuesPerWord + 1, scale);
      if constexpr (sizeof(Storage) == sizeof(float)) {
        output[v] = __float_as_uint(low);
        output[v + 1] = __float_as_uint(high);
      } else {
        output[v / 2] = packPair<Format>(low, high);
      }
    }
    uint4* destination = reinterpret_cast<uint4*>(static_cast<Storage*>(p.output) + row * p.depth + firstK);
#pragma unroll
    for (int s = 0; s < kOutputVectors; ++s) {
      destination[s] = make_uint4(output[4 * s], output[4 * s + 1], output[4 * s + 2], output[4 * s + 3]);
    }
  }
}

// The rest (rows that are not whole 16-byte vectors, unaligned bases): one thread per packed
// byte, Int8 writing one value and Int4 / MXFP4 two (the low nibble is the even k). Any K: a
// byte never straddles two rows (K is even for the nibble formats).
template <WeightFormat kFormat, typename Format>
__global__ void __launch_bounds__(FlatLaunch::kThreads) dequantizeKernel(DequantizeParams p) {
  using Decode = weight_only::Decoder<kFormat>;
  constexpr int kPerByte = weight_only::kValuesPerByte<kFormat>;
  auto* output = static_cast<typename Format::Storage*>(p.output);
  const int64_t bytes = p.rows * p.rowBytes;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < bytes;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t row = i / p.rowBytes;
    const int64_t firstK = (i % p.rowBytes) * kPerByte;
    const uint32_t word = p.weights[i];  // the byte as word byte 0 (values 0 .. kPerByte - 1)
#pragma unroll
    for (int v = 0; v < kPerByte; ++v) {
      const int64_t k = firstK + v;
      const float scale = Decode::scale(p.scales, row * p.scaleGroups + k / p.groupWidth);
      output[row * p.depth + k] = Format::store(Decode::value(word, v, scale));
    }
  }
}

// ---- Quantizing: one warp per (row, group) ----------------------------------------------------------------
struct QuantizeGroupsParams {
  const void* input;  // [rows, depth] float
  uint8_t* output;    // [rows, rowBytes]
  float* scales;      // [rows, scaleGroups]
  int64_t rows;
  int64_t depth;
  int64_t rowBytes;
  int64_t groupWidth;
  int64_t scaleGroups;
};

// Warps per block of the flat launch: each walks (row, group) units with a grid-stride loop.
constexpr int kQuantizeWarps = FlatLaunch::kThreads / kWarpSize;

__device__ __forceinline__ float warpMax(float value) {
#pragma unroll
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2) value = fmaxf(value, __shfl_xor_sync(kFullWarp, value, offset));
  return value;
}

// q = clamp(roundHalfEven(w / scale), -limit, limit) with the true float32 division; 0 where the
// scale is 0 or NaN (a group with a non-finite value).
__device__ __forceinline__ int32_t quantizeValue(float value, float scale, int32_t low, int32_t high) {
  if (scale == 0.0f || isnan(scale)) return 0;
  const float q = rintf(__fdiv_rn(value, scale));  // rintf: to nearest, ties to even
  return static_cast<int32_t>(fminf(fmaxf(q, static_cast<float>(low)), static_cast<float>(high)));
}

template <WeightFormat kFormat, typename Format>
__global__ void __launch_bounds__(FlatLaunch::kThreads) quantizeGroupsKernel(QuantizeGroupsParams p) {
  constexpr bool kInt8 = kFormat == WeightFormat::Int8;
  constexpr float kMaxCode = kInt8 ? 127.0f : 7.0f;  // scale = amax / kMaxCode
  constexpr int32_t kLow = kInt8 ? -127 : -8;
  constexpr int32_t kHigh = kInt8 ? 127 : 7;
  const auto* input = static_cast<const typename Format::Storage*>(p.input);
  const int lane = threadIdx.x % kWarpSize;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * kQuantizeWarps;
  for (int64_t unit = static_cast<int64_t>(blockIdx.x) * kQuantizeWarps + threadIdx.x / kWarpSize; unit < p.rows * p.scaleGroups;
       unit += warps) {
    const int64_t row = unit / p.scaleGroups;
    const int64_t group = unit % p.scaleGroups;
    const int64_t begin = group * p.groupWidth;
    const int64_t end = min(begin + p.groupWidth, p.depth);
    const auto* values = input + row * p.depth;
    float amax = 0.0f;
    bool finite = true;
    for (int64_t k = begin + lane; k < end; k += kWarpSize) {
      const float w = Format::load(values[k]);
      finite = finite && isfinite(w);
      amax = fmaxf(amax, fabsf(w));
    }
    amax = warpMax(amax);
    finite = __all_sync(kFullWarp, finite);
    const float scale = finite ? __fdiv_rn(amax, kMaxCode) : __int_as_float(0x7FC00000);
    if (lane == 0) p.scales[row * p.scaleGroups + group] = scale;
    uint8_t* bytes = p.output + row * p.rowBytes;
    if constexpr (kInt8) {
      for (int64_t k = begin + lane; k < end; k += kWarpSize) {
        bytes[k] = static_cast<uint8_t>(quantizeValue(Format::load(values[k]), scale, kLow, kHigh));
      }
    } else {
      // A byte holds k = 2b (low nibble) and 2b + 1: groups start at even k and K is even, so a
      // byte never straddles two groups.
      for (int64_t k = begin + 2 * lane; k < end; k += 2 * kWarpSize) {
        const uint32_t low = static_cast<uint32_t>(quantizeValue(Format::load(values[k]), scale, kLow, kHigh)) & 0xFu;
        const uint32_t high = static_cast<uint32_t>(quantizeValue(Format::load(values[k + 1]), scale, kLow, kHigh)) & 0xFu;
        bytes[k / 2] = static_cast<uint8_t>(low | (high << 4));
      }
    }
  }
}

}  // namespace

void dequantizeWeights(const PackedWeights& packed, void* output, DType dtype, cudaStream_t stream) {
  const int64_t rows = packed.weights.dim(0) * packed.weights.dim(1);
  const int64_t rowBytes = packed.weights.dim(2);
  if (rows == 0 || rowBytes == 0) return;
  const DequantizeParams params{packed.weights.as<uint8_t>(), packed.scales.data, output, rows, rowBytes,
                                packed.depth, packed.groupWidth(), packed.scaleGroups()};
  // Whole vectors per row (so a vector never straddles two rows or two groups) and aligned bases.
  const bool vectors = rowBytes % kPackedVectorBytes == 0 && alignedTo(params.weights, kPackedVectorBytes) &&
                       alignedTo(output, kPackedVectorBytes);
  weight_only::dispatchFormat(packed.format, [&](auto format) {
    dispatchFloat(dtype, "dequantized weights", [&](auto element) {
      constexpr WeightFormat kFormat = decltype(format)::value;
      using Format = decltype(element);
      if (vectors) {
        const unsigned blocks = FlatLaunch::blocks(rows * rowBytes / kPackedVectorBytes);
        dequantizeVectorKernel<kFormat, Format><<<blocks, FlatLaunch::kThreads, 0, stream>>>(params);
        MOEKIT_CHECK_LAUNCH("dequantizeVectorKernel");
      } else {
        const unsigned blocks = FlatLaunch::blocks(rows * rowBytes);
        dequantizeKernel<kFormat, Format><<<blocks, FlatLaunch::kThreads, 0, stream>>>(params);
        MOEKIT_CHECK_LAUNCH("dequantizeKernel");
      }
    });
  });
}

DequantizedWeights::DequantizedWeights(const PackedWeights& packed, DType dtype, cudaStream_t stream) {
  const int64_t experts = packed.weights.dim(0), cols = packed.weights.dim(1);
  const size_t bytes = static_cast<size_t>(experts * cols * packed.depth) * dtypeSize(dtype);
  storage_ = std::make_unique<ScratchBuffer>(bytes, stream);
  dequantizeWeights(packed, storage_->data(), dtype, stream);
  view_ = TensorView{storage_->data(), dtype, {experts, cols, packed.depth}};
}

void quantizeWeightGroups(const QuantizeWeightsArgs& args, cudaStream_t stream) {
  const TensorView& input = args.input;
  const bool grouped = input.shape.size() == 3;
  const int64_t rows = grouped ? input.dim(0) * input.dim(1) : input.dim(0);
  const int64_t depth = input.dim(grouped ? 2 : 1);
  if (rows == 0 || depth == 0) return;
  const int64_t groupWidth = weightGroupWidth(args.format, args.groupSize, depth);
  const int64_t scaleGroups = (depth + groupWidth - 1) / groupWidth;
  const QuantizeGroupsParams params{input.data, args.output.as<uint8_t>(), args.scales.as<float>(), rows, depth,
                                    weightRowBytes(args.format, depth), groupWidth, scaleGroups};
  const unsigned blocks = FlatLaunch::blocks(rows * scaleGroups, kQuantizeWarps);
  const auto launch = [&](auto format) {
    dispatchFloat(input.dtype, "quantizeWeights input", [&](auto element) {
      quantizeGroupsKernel<decltype(format)::value, decltype(element)><<<blocks, FlatLaunch::kThreads, 0, stream>>>(params);
      MOEKIT_CHECK_LAUNCH("quantizeGroupsKernel");
    });
  };
  if (args.format == WeightFormat::Int8) {
    launch(std::integral_constant<WeightFormat, WeightFormat::Int8>{});
  } else if (args.format == WeightFormat::Int4) {
    launch(std::integral_constant<WeightFormat, WeightFormat::Int4>{});
  } else {
    throw NativeError("E_INVALID_ARGUMENT", "quantizeWeights: only Int8 and Int4 are produced among weight-only formats");
  }
}

}  // namespace moekit::cuda
