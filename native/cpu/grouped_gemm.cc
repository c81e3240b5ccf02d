// Grouped GEMM and linear on the CPU: C[rows, N] = A[rows, K] · B[N, K]ᵀ (+ bias), per expert.
//
// Work is cut into tiles of kTileRows × kTileCols outputs, spread over the thread pool. Inside a
// tile the K dimension is walked in chunks of kChunkK so the A and B slices stay in cache; 16-bit
// inputs are converted to float32 one chunk at a time. The innermost kernel computes four dot
// products at once in kLanes independent partial sums, a shape compilers vectorize without
// reassociating floating point (so results do not depend on the compiler's flags).
#include <algorithm>
#include <vector>

#include "float_access.h"
#include "kernels.h"
#include "parallel.h"

namespace moekit::cpu {
namespace {

constexpr int64_t kTileRows = 32;
constexpr int64_t kTileCols = 64;
constexpr int64_t kChunkK = 256;
constexpr int kLanes = 8;
constexpr int kColsPerKernel = 4;

// Vectorized builds for AVX2 + FMA machines next to the baseline, chosen at load time.
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define MOEKIT_CPU_MULTIVERSION __attribute__((target_clones("arch=haswell", "default")))
#else
#define MOEKIT_CPU_MULTIVERSION
#endif

// sums[c] += a · b[c] over `depth` elements, for the four rows b[0..3].
MOEKIT_CPU_MULTIVERSION
void dotFour(const float* __restrict a, const float* const* b, int64_t depth, float* __restrict sums) {
  const float* __restrict b0 = b[0];
  const float* __restrict b1 = b[1];
  const float* __restrict b2 = b[2];
  const float* __restrict b3 = b[3];
  float acc0[kLanes] = {}, acc1[kLanes] = {}, acc2[kLanes] = {}, acc3[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= depth; i += kLanes) {
    for (int lane = 0; lane < kLanes; ++lane) {
      const float value = a[i + lane];
      acc0[lane] += value * b0[i + lane];
      acc1[lane] += value * b1[i + lane];
      acc2[lane] += value * b2[i + lane];
      acc3[lane] += value * b3[i + lane];
    }
  }
  float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f;
  for (int lane = 0; lane < kLanes; ++lane) {
    s0 += acc0[lane];
    s1 += acc1[lane];
    s2 += acc2[lane];
    s3 += acc3[lane];
  }
  for (; i < depth; ++i) {
    s0 += a[i] * b0[i];
    s1 += a[i] * b1[i];
    s2 += a[i] * b2[i];
    s3 += a[i] * b3[i];
  }
  sums[0] += s0;
  sums[1] += s1;
  sums[2] += s2;
  sums[3] += s3;
}

// One matrix product: rows of A against one weight matrix B.
struct GemmOperands {
  const void* a;   // [rows, depth], row `firstRow` onwards
  const void* b;   // [cols, depth]
  const void* bias;  // [cols] or nullptr
  void* c;         // [rows, cols]
  int64_t depth;
  int64_t cols;
};

struct Tile {
  GemmOperands operands;
  int64_t rowBegin, rowEnd;  // absolute rows of A and C
  int64_t colBegin, colEnd;
};

// Float32 views of a [count, depth] slice's chunk [k, k + width): points into the data for
// float32, converts into `buffer` otherwise.
template <typename Format>
const float* chunkAsFloat(const void* data, int64_t first, int64_t count, int64_t depth, int64_t k, int64_t width,
                          std::vector<float>& buffer) {
  const auto* base = static_cast<const typename Format::Storage*>(data);
  if constexpr (std::is_same_v<Format, F32>) {
    (void)buffer;
    (void)width;
    (void)count;
    return base + first * depth + k;  // rows keep stride `depth`
  } else {
    buffer.resize(static_cast<size_t>(count * width));
    for (int64_t r = 0; r < count; ++r) toFloat<Format>(base + (first + r) * depth + k, width, buffer.data() + r * width);
    return buffer.data();
  }
}

template <typename A, typename B, typename C>
void runTile(const Tile& tile) {
  const GemmOperands& op = tile.operands;
  const int64_t rows = tile.rowEnd - tile.rowBegin;
  const int64_t cols = tile.colEnd - tile.colBegin;
  thread_local std::vector<float> aBuffer, bBuffer, sums;
  sums.assign(static_cast<size_t>(rows * cols), 0.0f);
  // Column groups of four; a short last group repeats its last column and drops the extra sums.
  for (int64_t k = 0; k < op.depth; k += kChunkK) {
    const int64_t width = std::min(kChunkK, op.depth - k);
    const float* aChunk = chunkAsFloat<A>(op.a, tile.rowBegin, rows, op.depth, k, width, aBuffer);
    const float* bChunk = chunkAsFloat<B>(op.b, tile.colBegin, cols, op.depth, k, width, bBuffer);
    const int64_t aStride = std::is_same_v<A, F32> ? op.depth : width;
    const int64_t bStride = std::is_same_v<B, F32> ? op.depth : width;
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t c = 0; c < cols; c += kColsPerKernel) {
        const float* bRows[kColsPerKernel];
        for (int i = 0; i < kColsPerKernel; ++i) bRows[i] = bChunk + std::min(c + i, cols - 1) * bStride;
        float partial[kColsPerKernel] = {};
        dotFour(aChunk + r * aStride, bRows, width, partial);
        for (int i = 0; i < kColsPerKernel && c + i < cols; ++i) sums[r * cols + c + i] += partial[i];
      }
    }
  }
  const auto* bias = static_cast<const typename B::Storage*>(op.bias);
  auto* out = static_cast<typename C::Storage*>(op.c);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      const float withBias = sums[r * cols + c] + (bias ? B::load(bias[tile.colBegin + c]) : 0.0f);
      out[(tile.rowBegin + r) * op.cols + tile.colBegin + c] = C::store(withBias);
    }
  }
}

void addTiles(const GemmOperands& operands, int64_t rowBegin, int64_t rowEnd, std::vector<Tile>& tiles) {
  for (int64_t row = rowBegin; row < rowEnd; row += kTileRows) {
    for (int64_t col = 0; col < operands.cols; col += kTileCols) {
      tiles.push_back({operands, row, std::min(row + kTileRows, rowEnd), col, std::min(col + kTileCols, operands.cols)});
    }
  }
}

// Biases share the weights' dtype in this backend; convert one that does not.
void checkBiasDType(const TensorView& bias, DType weights, const char* op) {
  if (bias.present() && bias.dtype != weights) {
    throw NativeError("E_DTYPE", std::string(op) + ": bias must have the weights' dtype (" + dtypeName(weights) + ")");
  }
}

void runTiles(const std::vector<Tile>& tiles, DType a, DType b, DType c) {
  dispatchFloat(a, "gemm input", [&](auto aFormat) {
    dispatchFloat(b, "gemm weights", [&](auto bFormat) {
      dispatchFloat(c, "gemm output", [&](auto cFormat) {
        using A = decltype(aFormat);
        using B = decltype(bFormat);
        using C = decltype(cFormat);
        parallelFor(0, static_cast<int64_t>(tiles.size()), 1, [&](int64_t begin, int64_t end) {
          for (int64_t i = begin; i < end; ++i) runTile<A, B, C>(tiles[static_cast<size_t>(i)]);
        });
      });
    });
  });
}

}  // namespace

void groupedGemm(const GroupedGemmArgs& args) {
  checkBiasDType(args.bias, args.weights.dtype, "groupedGemm");
  const int64_t experts = args.weights.dim(0);
  const int64_t cols = args.weights.dim(1);
  const int64_t depth = args.weights.dim(2);
  const int64_t rows = args.input.dim(0);
  const int32_t* offsets = args.expertOffsets.as<int32_t>();
  const size_t weightBytes = static_cast<size_t>(cols * depth) * dtypeSize(args.weights.dtype);
  const size_t biasBytes = static_cast<size_t>(cols) * dtypeSize(args.weights.dtype);
  std::vector<Tile> tiles;
  for (int64_t e = 0; e < experts; ++e) {
    // Offsets come from the device: clamp them so a bad offsets tensor cannot reach outside A or C.
    const int64_t begin = std::clamp<int64_t>(offsets[e], 0, rows);
    const int64_t end = std::clamp<int64_t>(offsets[e + 1], begin, rows);
    if (begin == end) continue;
    GemmOperands operands{args.input.data,
                          static_cast<const uint8_t*>(args.weights.data) + e * weightBytes,
                          args.bias.present() ? static_cast<const uint8_t*>(args.bias.data) + e * biasBytes : nullptr,
                          args.output.data, depth, cols};
    addTiles(operands, begin, end, tiles);
  }
  runTiles(tiles, args.input.dtype, args.weights.dtype, args.output.dtype);
}

void linear(const LinearArgs& args) {
  checkBiasDType(args.bias, args.weight.dtype, "linear");
  GemmOperands operands{args.input.data, args.weight.data, args.bias.present() ? args.bias.data : nullptr,
                        args.output.data, args.input.dim(1), args.weight.dim(0)};
  std::vector<Tile> tiles;
  addTiles(operands, 0, args.input.dim(0), tiles);
  runTiles(tiles, args.input.dtype, args.weight.dtype, args.output.dtype);
}

}  // namespace moekit::cpu
