// Grouped GEMM and linear on the CPU: C[rows, N] = A[rows, K] · B[N, K]ᵀ (+ bias), one B per expert.
//
// The output is cut into tiles of at most kTileRows × kTileCols that never cross an expert, and
// the tiles are spread over the thread pool. An expert's tiles take one of two paths, chosen by
// how many rows the expert has:
// - Panel path (kPanelPathMinRows rows or more: each weight serves many rows). A tile walks the
//   depth in chunks of kDepthChunk, converts each chunk of B once into float32 panels stored
//   depth-major ([k][kPanelCols], so the weights of consecutive outputs share a vector register)
//   and runs an outer-product micro-kernel over each kPanelRows × kPanelCols block of float32
//   sums. Each sum is taken in depth order 0..K-1.
// - Dot path (fewer rows, as when decoding: each weight serves a row or two, so the time is that
//   of reading the weights, and packing them would only add to it). A micro-kernel takes dot
//   products of up to kDotRows rows of A with kDotCols rows of B read in place, over the whole
//   depth, in vector lanes (lane l sums the depths l, l + lanes, ...) added up at the end.
// Every output is summed by one tile in a fixed order: on a given machine, results are
// deterministic and independent of the number of threads; they depend on the batch only through
// the path an expert takes.
//
// FP8 weights (Fp8Block128) follow the W8A8 rule of op_args.h around the same float32 GEMM: the
// input rows become x' = q * scale in a float32 scratch matrix, weights are converted to q * scale
// as tiles pack them, and an FP8 output is quantized from the float32 results.
//
// Gathered rows (gatherRows): the rows the experts own are first copied into a dense [M, K] input
// in product order, and the GEMM runs on that copy as on rows given in order, so every path below
// works unchanged; the copy is one pass over M rows, small beside the GEMM's reads of them.
//
// Weight-only weights (Int8, Int4, Mxfp4) are dequantized to float32, a slice of kSliceFloats at
// most at a time (whole tiles of columns of one expert), and the slice runs through the same tiles
// as float32 weights: the tiles' columns and sums are those of an unsliced matrix, so results equal
// the float32 GEMM on the dequantized weights.
#include <algorithm>
#include <cstring>
#include <memory>
#include <type_traits>
#include <vector>

#include "../core/errors.h"
#include "float_access.h"
#include "fp8.h"
#include "kernels.h"
#include "parallel.h"
#include "weight_only.h"

namespace moekit::cpu {
namespace {

// Panel micro-kernel block: kPanelRows × kPanelCols float32 sums in registers (8 AVX registers).
constexpr int kPanelRows = 4;
constexpr int kPanelCols = 16;
// Dot micro-kernel block: kDotRows × kDotCols dot products in registers (8 AVX registers).
constexpr int kDotRows = 4;
constexpr int kDotCols = 2;
// Experts with fewer rows than this take the dot path: where the two paths cross over for
// Mixtral-sized experts (H 2048, I 7168, float32) on a 2-core AVX2 machine.
constexpr int64_t kPanelPathMinRows = 16;
// A tile's packed B chunk (kTileCols × kDepthChunk floats, 128 KiB) stays in L2 while its rows
// stream past; one panel of it (16 KiB) stays in L1 during a micro-kernel.
constexpr int64_t kTileRows = 64;
constexpr int64_t kTileCols = 128;
constexpr int64_t kDepthChunk = 256;
// A weight-only slice of dequantized weights: 16 MiB of float32, so that slicing costs nothing
// against the reads of the weights (per slice, one pass over its tiles).
constexpr int64_t kSliceFloats = int64_t{1} << 22;
// Weights are packed one cache line of each column at a time.
constexpr int64_t kCacheLineBytes = 64;
static_assert(kTileRows % kPanelRows == 0 && kTileCols % kPanelCols == 0, "tiles hold whole micro-kernel blocks");
// An FP8 weight's cache line of depths lies in one 128-block, so packing looks its scale up once.
static_assert(kDepthChunk % kFp8BlockSize == 0 && kFp8BlockSize % kCacheLineBytes == 0, "FP8 cache lines lie within a block");

int64_t roundUp(int64_t value, int64_t multiple) { return (value + multiple - 1) / multiple * multiple; }

// ---- Micro-kernel ---------------------------------------------------------------------------

// float32 vectors of `Bytes` bytes (GCC/Clang vector extension), sized to the registers of the
// instruction set each kernel build targets.
template <int Bytes>
struct FloatVector {
  typedef float Type __attribute__((vector_size(Bytes)));
  static constexpr int kLanes = Bytes / sizeof(float);
};

// The kernel bodies are always inlined, so that each build of a kernel below compiles them for
// its own instruction set. Vectors move through memcpy: unaligned loads and stores without
// aliasing concerns.
#define MOEKIT_KERNEL_BODY inline __attribute__((always_inline))

// sums[i][j] += Σ_k a[i·aStride + k] · panel[k·kPanelCols + j] for i < Rows, j < kPanelCols.
// Each register of the block is its own chain in k: vectorized without reassociating any sum.
template <int Rows, int VectorBytes>
MOEKIT_KERNEL_BODY void panelKernelBody(const float* __restrict a, int64_t aStride, const float* __restrict panel,
                                        int64_t depth, float* __restrict sums, int64_t sumsStride) {
  using V = typename FloatVector<VectorBytes>::Type;
  constexpr int kLanes = FloatVector<VectorBytes>::kLanes;
  constexpr int kColumnVectors = kPanelCols / kLanes;
  V block[Rows][kColumnVectors];
  for (int i = 0; i < Rows; ++i) {
    for (int v = 0; v < kColumnVectors; ++v) {
      std::memcpy(&block[i][v], sums + i * sumsStride + v * kLanes, sizeof(V));
    }
  }
  for (int64_t k = 0; k < depth; ++k) {
    V b[kColumnVectors];
    for (int v = 0; v < kColumnVectors; ++v) std::memcpy(&b[v], panel + k * kPanelCols + v * kLanes, sizeof(V));
    for (int i = 0; i < Rows; ++i) {
      const float value = a[i * aStride + k];
      for (int v = 0; v < kColumnVectors; ++v) block[i][v] += value * b[v];
    }
  }
  for (int i = 0; i < Rows; ++i) {
    for (int v = 0; v < kColumnVectors; ++v) {
      std::memcpy(sums + i * sumsStride + v * kLanes, &block[i][v], sizeof(V));
    }
  }
}

// dots[i·kDotCols + j] = Σ_k a[i·aStride + k] · b[j·bStride + k] for i < Rows, j < kDotCols:
// lane l of a register sums the depths k ≡ l (mod lanes); the lanes are then added in order, and
// the last depth % lanes products after them.
template <int Rows, int VectorBytes>
MOEKIT_KERNEL_BODY void dotKernelBody(const float* __restrict a, int64_t aStride, const float* __restrict b,
                                      int64_t bStride, int64_t depth, float* __restrict dots) {
  using V = typename FloatVector<VectorBytes>::Type;
  constexpr int kLanes = FloatVector<VectorBytes>::kLanes;
  V sums[Rows][kDotCols];
  for (int i = 0; i < Rows; ++i) {
    for (int j = 0; j < kDotCols; ++j) sums[i][j] = V{};
  }
  const int64_t vectorDepth = depth / kLanes * kLanes;
  for (int64_t k = 0; k < vectorDepth; k += kLanes) {
    V weights[kDotCols];
    for (int j = 0; j < kDotCols; ++j) std::memcpy(&weights[j], b + j * bStride + k, sizeof(V));
    for (int i = 0; i < Rows; ++i) {
      V inputs;
      std::memcpy(&inputs, a + i * aStride + k, sizeof(V));
      for (int j = 0; j < kDotCols; ++j) sums[i][j] += inputs * weights[j];
    }
  }
  for (int i = 0; i < Rows; ++i) {
    for (int j = 0; j < kDotCols; ++j) {
      float lanes[kLanes];
      std::memcpy(lanes, &sums[i][j], sizeof(V));
      float total = 0.0f;
      for (int l = 0; l < kLanes; ++l) total += lanes[l];
      for (int64_t k = vectorDepth; k < depth; ++k) total += a[i * aStride + k] * b[j * bStride + k];
      dots[i * kDotCols + j] = total;
    }
  }
}

using PanelKernel = void (*)(const float* a, int64_t aStride, const float* panel, int64_t depth, float* sums,
                             int64_t sumsStride);
using DotKernel = void (*)(const float* a, int64_t aStride, const float* b, int64_t bStride, int64_t depth, float* dots);

// One build of the micro-kernels, each indexed by its row count - 1 (a block at the end of a
// tile may hold fewer rows).
struct MicroKernels {
  PanelKernel panel[kPanelRows];
  DotKernel dot[kDotRows];
  PanelKernel panelForRows(int64_t rows) const { return panel[rows - 1]; }
  DotKernel dotForRows(int64_t rows) const { return dot[rows - 1]; }
};

// 16-byte vectors: SSE2 on any x86-64, NEON on arm64.
constexpr int kPortableVectorBytes = 16;

template <int Rows>
void portablePanelKernel(const float* a, int64_t aStride, const float* panel, int64_t depth, float* sums,
                         int64_t sumsStride) {
  panelKernelBody<Rows, kPortableVectorBytes>(a, aStride, panel, depth, sums, sumsStride);
}

template <int Rows>
void portableDotKernel(const float* a, int64_t aStride, const float* b, int64_t bStride, int64_t depth, float* dots) {
  dotKernelBody<Rows, kPortableVectorBytes>(a, aStride, b, bStride, depth, dots);
}

constexpr MicroKernels kPortableKernels{
    {portablePanelKernel<1>, portablePanelKernel<2>, portablePanelKernel<3>, portablePanelKernel<4>},
    {portableDotKernel<1>, portableDotKernel<2>, portableDotKernel<3>, portableDotKernel<4>}};

// On x86-64, a second build for AVX2 + FMA machines, chosen at run time, so the addon itself
// stays portable (no -march flags).
#if defined(__x86_64__)
constexpr int kAvx2VectorBytes = 32;
#define MOEKIT_AVX2 __attribute__((target("avx2,fma")))

template <int Rows>
MOEKIT_AVX2 void avx2PanelKernel(const float* a, int64_t aStride, const float* panel, int64_t depth, float* sums,
                                 int64_t sumsStride) {
  panelKernelBody<Rows, kAvx2VectorBytes>(a, aStride, panel, depth, sums, sumsStride);
}

template <int Rows>
MOEKIT_AVX2 void avx2DotKernel(const float* a, int64_t aStride, const float* b, int64_t bStride, int64_t depth,
                               float* dots) {
  dotKernelBody<Rows, kAvx2VectorBytes>(a, aStride, b, bStride, depth, dots);
}

constexpr MicroKernels kAvx2Kernels{{avx2PanelKernel<1>, avx2PanelKernel<2>, avx2PanelKernel<3>, avx2PanelKernel<4>},
                                    {avx2DotKernel<1>, avx2DotKernel<2>, avx2DotKernel<3>, avx2DotKernel<4>}};

const MicroKernels& microKernels() {
  static const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return avx2 ? kAvx2Kernels : kPortableKernels;
}
#else
const MicroKernels& microKernels() { return kPortableKernels; }
#endif

// ---- Tiles ----------------------------------------------------------------------------------

// One matrix product: rows of A against one weight matrix B.
struct GemmOperands {
  const void* a;      // [rows, depth]
  const void* b;      // [cols, depth]
  const float* bias;  // [cols] float32, or nullptr
  void* c;            // [rows, cols]
  int64_t depth;
  int64_t cols;
  const float* bScales = nullptr;  // FP8 weights: B's block scales [ceil(cols/128), ceil(depth/128)]
  int64_t bFirstCol = 0;           // B holds columns [bFirstCol, ...) (a slice of dequantized weights)
};

// B's row of column `col` (indexed in the whole matrix).
template <typename Storage>
const Storage* weightRow(const GemmOperands& op, int64_t col) {
  return static_cast<const Storage*>(op.b) + (col - op.bFirstCol) * op.depth;
}

// The storage "format" of FP8 weights with 128×128 block scales: a value is q * its block's scale,
// so it is read through loadWeight rather than a load of its own.
struct F8Block128 {
  using Storage = uint8_t;
};

// The scale of B's block holding (col, k): FP8 weights only.
inline float blockScale(const GemmOperands& op, int64_t col, int64_t k) {
  return op.bScales[(col / kFp8BlockSize) * fp8Blocks(op.depth) + k / kFp8BlockSize];
}

// A weight as float32: the format's value, and for FP8 weights times `scale`, its block's.
template <typename Format>
inline float loadWeight(typename Format::Storage value, float scale) {
  if constexpr (std::is_same_v<Format, F8Block128>) {
    return fp8Scaled(value, scale);
  } else {
    (void)scale;
    return Format::load(value);
  }
}

// B's row `col` (all depths) as float32.
template <typename Format>
void weightRowAsFloat(const GemmOperands& op, int64_t col, float* values) {
  const auto* row = weightRow<typename Format::Storage>(op, col);
  if constexpr (std::is_same_v<Format, F8Block128>) {
    for (int64_t begin = 0; begin < op.depth; begin += kFp8BlockSize) {
      const int64_t end = std::min(op.depth, begin + kFp8BlockSize);
      const float scale = blockScale(op, col, begin);
      for (int64_t k = begin; k < end; ++k) values[k] = fp8Scaled(row[k], scale);
    }
  } else {
    toFloat<Format>(row, op.depth, values);
  }
}

enum class TilePath { Panels, DotProducts };

struct Tile {
  GemmOperands operands;
  TilePath path;
  int64_t rowBegin, rowEnd;  // absolute rows of A and C
  int64_t colBegin, colEnd;
};

// Per-thread working memory, kept between tiles so it is allocated once per thread.
struct TileBuffers {
  std::vector<float> panels;  // panel path: packed B chunk, [paddedCols / kPanelCols][width][kPanelCols]
  std::vector<float> aRows;   // A's rows (chunk) as float32 (16-bit A only)
  std::vector<float> bRows;   // dot path: kDotCols rows of B as float32 (16-bit B, or a short last group)
  std::vector<float> sums;    // [rows][sumsStride]
};

// Rows of float32 values, `stride` floats apart.
struct FloatRows {
  const float* data;
  int64_t stride;
};

// Rows [first, first + count) of a [*, depth] matrix, depth chunk [k, k + width), as float32:
// float32 is read in place, 16-bit formats are converted into `buffer`.
template <typename Format>
FloatRows rowsAsFloat(const void* matrix, int64_t depth, int64_t first, int64_t count, int64_t k, int64_t width,
                      std::vector<float>& buffer) {
  const auto* rows = static_cast<const typename Format::Storage*>(matrix) + first * depth + k;
  if constexpr (std::is_same_v<Format, F32>) {
    (void)count;
    (void)width;
    (void)buffer;
    return {rows, depth};
  } else {
    buffer.resize(static_cast<size_t>(count * width));
    for (int64_t r = 0; r < count; ++r) toFloat<Format>(rows + r * depth, width, buffer.data() + r * width);
    return {buffer.data(), width};
  }
}

// Packs columns [colBegin, colBegin + cols) of B's depth chunk [k, k + width) as float32 panels;
// the columns past `cols` in the last panel are zero. A panel is filled one cache line of each
// column at a time: reading all of a panel's columns side by side instead would keep kPanelCols
// lines in flight that often map to the same L1 set (weight rows are usually a power of two apart).
template <typename Format>
void packPanels(const GemmOperands& op, int64_t colBegin, int64_t cols, int64_t k, int64_t width,
                std::vector<float>& panels) {
  using Storage = typename Format::Storage;
  constexpr int64_t kDepthsPerLine = kCacheLineBytes / sizeof(Storage);
  const auto* b = weightRow<Storage>(op, colBegin) + k;
  panels.resize(static_cast<size_t>(roundUp(cols, kPanelCols) * width));
  for (int64_t panelBegin = 0; panelBegin < cols; panelBegin += kPanelCols) {
    const int64_t panelCols = std::min<int64_t>(kPanelCols, cols - panelBegin);
    float* panel = panels.data() + panelBegin * width;
    const auto* columns = b + panelBegin * op.depth;
    for (int64_t blockBegin = 0; blockBegin < width; blockBegin += kDepthsPerLine) {
      const int64_t blockEnd = std::min(width, blockBegin + kDepthsPerLine);
      for (int64_t c = 0; c < panelCols; ++c) {
        const auto* column = columns + c * op.depth;
        float scale = 1.0f;
        if constexpr (std::is_same_v<Format, F8Block128>) scale = blockScale(op, colBegin + panelBegin + c, k + blockBegin);
        for (int64_t i = blockBegin; i < blockEnd; ++i) panel[i * kPanelCols + c] = loadWeight<Format>(column[i], scale);
      }
      for (int64_t c = panelCols; c < kPanelCols; ++c) {
        for (int64_t i = blockBegin; i < blockEnd; ++i) panel[i * kPanelCols + c] = 0.0f;
      }
    }
  }
}

// Writes a tile's sums (row stride sumsStride) plus the bias to C, in C's dtype.
template <typename C>
void storeTile(const Tile& tile, const float* sums, int64_t sumsStride) {
  const GemmOperands& op = tile.operands;
  auto* out = static_cast<typename C::Storage*>(op.c);
  for (int64_t r = 0; r < tile.rowEnd - tile.rowBegin; ++r) {
    for (int64_t c = 0; c < tile.colEnd - tile.colBegin; ++c) {
      const float bias = op.bias ? op.bias[tile.colBegin + c] : 0.0f;
      out[(tile.rowBegin + r) * op.cols + tile.colBegin + c] = C::store(sums[r * sumsStride + c] + bias);
    }
  }
}

template <typename A, typename B, typename C>
void runPanelTile(const Tile& tile, const MicroKernels& kernels, TileBuffers& buffers) {
  const GemmOperands& op = tile.operands;
  const int64_t rows = tile.rowEnd - tile.rowBegin;
  const int64_t cols = tile.colEnd - tile.colBegin;
  const int64_t paddedCols = roundUp(cols, kPanelCols);
  buffers.sums.assign(static_cast<size_t>(rows * paddedCols), 0.0f);
  for (int64_t k = 0; k < op.depth; k += kDepthChunk) {
    const int64_t width = std::min(kDepthChunk, op.depth - k);
    packPanels<B>(op, tile.colBegin, cols, k, width, buffers.panels);
    const FloatRows a = rowsAsFloat<A>(op.a, op.depth, tile.rowBegin, rows, k, width, buffers.aRows);
    for (int64_t panel = 0; panel < paddedCols / kPanelCols; ++panel) {
      const float* panelData = buffers.panels.data() + panel * width * kPanelCols;
      for (int64_t r = 0; r < rows; r += kPanelRows) {
        const PanelKernel kernel = kernels.panelForRows(std::min<int64_t>(kPanelRows, rows - r));
        kernel(a.data + r * a.stride, a.stride, panelData, width, buffers.sums.data() + r * paddedCols + panel * kPanelCols,
               paddedCols);
      }
    }
  }
  storeTile<C>(tile, buffers.sums.data(), paddedCols);
}

// Columns [first, first + count) of B as kDotCols float32 rows: float32 is read in place, and a
// short last group is padded with zero rows, whose dot products are dropped.
template <typename Format>
FloatRows dotGroupColumns(const GemmOperands& op, int64_t first, int64_t count, std::vector<float>& buffer) {
  if constexpr (std::is_same_v<Format, F32>) {
    if (count == kDotCols) return {weightRow<float>(op, first), op.depth};
  }
  buffer.resize(static_cast<size_t>(kDotCols * op.depth));
  for (int64_t c = 0; c < count; ++c) weightRowAsFloat<Format>(op, first + c, buffer.data() + c * op.depth);
  std::fill(buffer.begin() + count * op.depth, buffer.end(), 0.0f);
  return {buffer.data(), op.depth};
}

template <typename A, typename B, typename C>
void runDotTile(const Tile& tile, const MicroKernels& kernels, TileBuffers& buffers) {
  const GemmOperands& op = tile.operands;
  const int64_t rows = tile.rowEnd - tile.rowBegin;
  const int64_t cols = tile.colEnd - tile.colBegin;
  buffers.sums.resize(static_cast<size_t>(rows * cols));
  const FloatRows a = rowsAsFloat<A>(op.a, op.depth, tile.rowBegin, rows, 0, op.depth, buffers.aRows);
  for (int64_t c = 0; c < cols; c += kDotCols) {
    const int64_t groupCols = std::min<int64_t>(kDotCols, cols - c);
    const FloatRows b = dotGroupColumns<B>(op, tile.colBegin + c, groupCols, buffers.bRows);
    for (int64_t r = 0; r < rows; r += kDotRows) {
      const int64_t blockRows = std::min<int64_t>(kDotRows, rows - r);
      float dots[kDotRows * kDotCols];
      kernels.dotForRows(blockRows)(a.data + r * a.stride, a.stride, b.data, b.stride, op.depth, dots);
      for (int64_t i = 0; i < blockRows; ++i) {
        for (int64_t j = 0; j < groupCols; ++j) buffers.sums[(r + i) * cols + c + j] = dots[i * kDotCols + j];
      }
    }
  }
  storeTile<C>(tile, buffers.sums.data(), cols);
}

// Tiles for rows [rowBegin, rowEnd) and columns [colBegin, colEnd) (colBegin a multiple of
// kTileCols) of one matrix product, all on the path their row count calls for.
void addTiles(const GemmOperands& operands, int64_t rowBegin, int64_t rowEnd, int64_t colBegin, int64_t colEnd,
              std::vector<Tile>& tiles) {
  const TilePath path = rowEnd - rowBegin >= kPanelPathMinRows ? TilePath::Panels : TilePath::DotProducts;
  for (int64_t row = rowBegin; row < rowEnd; row += kTileRows) {
    for (int64_t col = colBegin; col < colEnd; col += kTileCols) {
      tiles.push_back({operands, path, row, std::min(row + kTileRows, rowEnd), col, std::min(col + kTileCols, colEnd)});
    }
  }
}

void addTiles(const GemmOperands& operands, int64_t rowBegin, int64_t rowEnd, std::vector<Tile>& tiles) {
  addTiles(operands, rowBegin, rowEnd, 0, operands.cols, tiles);
}

// Calls body(Format{}) with the format of the weights: a float dtype, or FP8 with block scales.
template <typename Body>
void dispatchWeights(DType dtype, Body&& body) {
  if (dtype == DType::Float8E4M3) {
    body(F8Block128{});
    return;
  }
  dispatchFloat(dtype, "gemm weights", body);
}

void runTiles(const std::vector<Tile>& tiles, DType a, DType b, DType c) {
  const MicroKernels& kernels = microKernels();
  dispatchFloat(a, "gemm input", [&](auto aFormat) {
    dispatchWeights(b, [&](auto bFormat) {
      dispatchFloat(c, "gemm output", [&](auto cFormat) {
        using A = decltype(aFormat);
        using B = decltype(bFormat);
        using C = decltype(cFormat);
        parallelFor(0, static_cast<int64_t>(tiles.size()), 1, [&](int64_t begin, int64_t end) {
          thread_local TileBuffers buffers;
          for (int64_t i = begin; i < end; ++i) {
            const Tile& tile = tiles[static_cast<size_t>(i)];
            if (tile.path == TilePath::Panels) {
              runPanelTile<A, B, C>(tile, kernels, buffers);
            } else {
              runDotTile<A, B, C>(tile, kernels, buffers);
            }
          }
        });
      });
    });
  });
}

// The bias, in whatever float dtype it came, as float32 (it is small: one row per expert).
std::vector<float> biasAsFloat(const TensorView& bias) {
  std::vector<float> values;
  if (!bias.present()) return values;
  values.resize(static_cast<size_t>(bias.numel()));
  dispatchFloat(bias.dtype, "gemm bias", [&](auto format) {
    using Format = decltype(format);
    toFloat<Format>(bias.as<typename Format::Storage>(), bias.numel(), values.data());
  });
  return values;
}

// Offsets come from users as well as from permute(): a bad one throws before any row is read (the
// clamps below stay as a second guard).
void checkOffsets(const GroupedGemmArgs& args) {
  const int64_t experts = args.weights.dim(0);
  const int64_t rows = gemmRows(args);
  const int32_t* offsets = args.expertOffsets.as<int32_t>();
  int64_t lower = 0;
  for (int64_t e = 0; e <= experts; ++e) {
    if (offsets[e] < lower || offsets[e] > rows) {
      throw NativeError("E_INVALID_ARGUMENT", describeFault(FaultKind::ExpertOffsetOutOfRange, offsets[e], e, rows));
    }
    lower = offsets[e];
  }
}

// The rows the experts own, [offsets[0], offsets[E]) (clamped into range).
struct RowRange {
  int64_t begin, end;
};

RowRange expertRows(const GroupedGemmArgs& args) {
  const int64_t rows = gemmRows(args);
  const int32_t* offsets = args.expertOffsets.as<int32_t>();
  const int64_t begin = std::clamp<int64_t>(offsets[0], 0, rows);
  return {begin, std::clamp<int64_t>(offsets[args.weights.dim(0)], begin, rows)};
}

// Float32 working memory, left uninitialized: only the rows an op uses are written and read.
using Scratch = std::unique_ptr<float[]>;

Scratch scratchMatrix(int64_t rows, int64_t cols) { return Scratch(new float[static_cast<size_t>(rows * cols)]); }

// Rows [rowBegin, rowEnd) of A against weight-only weights `w`: `operands` as for float32 weights
// (b unset), the weights dequantized a slice of whole tiles of columns at a time into `slice`.
void weightOnlyProduct(GemmOperands operands, const WeightOnlyMatrix& w, int64_t rowBegin, int64_t rowEnd, DType a,
                       DType c, float* slice, int64_t sliceCols) {
  std::vector<Tile> tiles;
  for (int64_t first = 0; first < operands.cols; first += sliceCols) {
    const int64_t last = std::min(operands.cols, first + sliceCols);
    dequantizeWeightRows(w, first, last - first, slice);
    operands.b = slice;
    operands.bFirstCol = first;
    tiles.clear();
    addTiles(operands, rowBegin, rowEnd, first, last, tiles);
    runTiles(tiles, a, DType::Float32, c);
  }
}

// Columns per slice of dequantized weights of depth K (whole tiles, at least one).
int64_t sliceColumns(int64_t depth, int64_t cols) {
  const int64_t fitting = std::max<int64_t>(kTileCols, kSliceFloats / std::max<int64_t>(depth, 1) / kTileCols * kTileCols);
  return std::min(fitting, roundUp(cols, kTileCols));
}

// The products of every expert's rows with weight-only weights (no activation).
void groupedGemmWeightOnlyProducts(const GroupedGemmArgs& args) {
  const int64_t experts = args.weights.dim(0);
  const int64_t cols = args.weights.dim(1);
  const int64_t depth = args.input.dim(1);
  const int64_t rows = gemmRows(args);
  const int32_t* offsets = args.expertOffsets.as<int32_t>();
  const std::vector<float> bias = biasAsFloat(args.bias);
  const int64_t sliceCols = sliceColumns(depth, cols);
  Scratch slice;
  for (int64_t e = 0; e < experts; ++e) {
    const int64_t begin = std::clamp<int64_t>(offsets[e], 0, rows);
    const int64_t end = std::clamp<int64_t>(offsets[e + 1], begin, rows);
    if (begin == end) continue;
    if (!slice) slice = scratchMatrix(sliceCols, depth);
    const GemmOperands operands{args.input.data, nullptr, bias.empty() ? nullptr : bias.data() + e * cols, args.output.data,
                                depth, cols};
    const WeightOnlyMatrix w = weightOnlyMatrix(args.weights, args.weightScales, args.weightFormat, args.weightGroupSize, e);
    weightOnlyProduct(operands, w, begin, end, args.input.dtype, args.output.dtype, slice.get(), sliceCols);
  }
}

// The products of every expert's rows (no activation), written to the output in its dtype.
void groupedGemmProducts(const GroupedGemmArgs& args) {
  if (isWeightOnly(args.weightFormat)) {
    groupedGemmWeightOnlyProducts(args);
    return;
  }
  const int64_t experts = args.weights.dim(0);
  const int64_t cols = args.weights.dim(1);
  const int64_t depth = args.weights.dim(2);
  const int64_t rows = gemmRows(args);
  const int32_t* offsets = args.expertOffsets.as<int32_t>();
  const size_t weightBytes = static_cast<size_t>(cols * depth) * dtypeSize(args.weights.dtype);
  const int64_t scalesPerExpert = args.weightScales.present() ? fp8Blocks(cols) * fp8Blocks(depth) : 0;
  const std::vector<float> bias = biasAsFloat(args.bias);
  std::vector<Tile> tiles;
  for (int64_t e = 0; e < experts; ++e) {
    // Offsets may come from users: clamp them so a bad offsets tensor cannot reach outside A or C.
    const int64_t begin = std::clamp<int64_t>(offsets[e], 0, rows);
    const int64_t end = std::clamp<int64_t>(offsets[e + 1], begin, rows);
    if (begin == end) continue;
    const GemmOperands operands{args.input.data,
                                static_cast<const uint8_t*>(args.weights.data) + e * weightBytes,
                                bias.empty() ? nullptr : bias.data() + e * cols,
                                args.output.data,
                                depth,
                                cols,
                                args.weightScales.present() ? args.weightScales.as<float>() + e * scalesPerExpert : nullptr};
    addTiles(operands, begin, end, tiles);
  }
  runTiles(tiles, args.input.dtype, args.weights.dtype, args.output.dtype);
}

// With an activation: the products go to a float32 scratch matrix, then the activation turns the
// rows the experts own into the output (rows outside [offsets[0], offsets[E]) stay untouched).
void groupedGemmThenActivate(const GroupedGemmArgs& args) {
  const int64_t rows = gemmRows(args);
  const int64_t cols = args.weights.dim(1);
  std::vector<float> products(static_cast<size_t>(rows * cols));
  GroupedGemmArgs gemm = args;
  gemm.activation.enabled = false;
  gemm.output = TensorView{products.data(), DType::Float32, {rows, cols}};
  groupedGemmProducts(gemm);

  const auto [begin, end] = expertRows(args);
  if (begin == end) return;
  const int64_t outCols = args.output.dim(1);
  ActivationArgs act;
  act.input = TensorView{products.data() + begin * cols, DType::Float32, {end - begin, cols}};
  act.output = TensorView{static_cast<uint8_t*>(args.output.data) + begin * outCols * dtypeSize(args.output.dtype),
                          args.output.dtype, {end - begin, outCols}};
  act.kind = args.activation.kind;
  act.layout = args.activation.layout;
  act.alpha = args.activation.alpha;
  act.limit = args.activation.limit;
  activation(act);
}

void groupedGemmFloat(const GroupedGemmArgs& args) {
  if (args.activation.enabled) {
    groupedGemmThenActivate(args);
  } else {
    groupedGemmProducts(args);
  }
}

void linearFloat(const LinearArgs& args) {
  const std::vector<float> bias = biasAsFloat(args.bias);
  const GemmOperands operands{args.input.data, args.weight.data, bias.empty() ? nullptr : bias.data(), args.output.data,
                              args.input.dim(1), args.weight.dim(0), args.weightScales.as<float>()};
  if (isWeightOnly(args.weightFormat)) {
    if (args.input.dim(0) == 0) return;
    const int64_t sliceCols = sliceColumns(operands.depth, operands.cols);
    Scratch slice = scratchMatrix(sliceCols, operands.depth);
    const WeightOnlyMatrix w = weightOnlyMatrix(args.weight, args.weightScales, args.weightFormat, args.weightGroupSize, 0);
    weightOnlyProduct(operands, w, 0, args.input.dim(0), args.input.dtype, args.output.dtype, slice.get(), sliceCols);
    return;
  }
  std::vector<Tile> tiles;
  addTiles(operands, 0, args.input.dim(0), tiles);
  runTiles(tiles, args.input.dtype, args.weight.dtype, args.output.dtype);
}

// Runs a GEMM with FP8 weights by the W8A8 rule: `floatGemm` computes on rows [rows.begin,
// rows.end) of the input as x' = q * scale in float32 (the FP8 input dequantized, or the float
// input quantized and dequantized), and an FP8 output is quantized from its float32 results.
template <typename Args>
void gemmW8A8(const Args& args, RowRange rows, int64_t outWidth, void (*floatGemm)(const Args&)) {
  const int64_t allRows = args.input.dim(0), depth = args.input.dim(1);
  const int64_t count = rows.end - rows.begin;
  Args floatArgs = args;
  Scratch input = scratchMatrix(allRows, depth);
  if (args.inputScales.present()) {
    dequantizeRowsFp8(args.input.template as<uint8_t>(), args.inputScales.template as<float>(), rows.begin, count, depth, input.get());
  } else {
    w8a8RowsAsFloat(args.input, rows.begin, count, input.get());
  }
  floatArgs.input = TensorView{input.get(), DType::Float32, {allRows, depth}};
  floatArgs.inputScales = TensorView{};
  Scratch output;
  if (args.output.dtype == DType::Float8E4M3) {
    output = scratchMatrix(allRows, outWidth);
    floatArgs.output = TensorView{output.get(), DType::Float32, {allRows, outWidth}};
    floatArgs.outputScales = TensorView{};
  }
  floatGemm(floatArgs);
  if (output) {
    quantizeRowsFp8(output.get(), rows.begin, count, outWidth, args.output.template as<uint8_t>(), args.outputScales.template as<float>());
  }
}

// A grouped GEMM on input rows in product order (no gatherRows).
void groupedGemmInOrder(const GroupedGemmArgs& args) {
  if (args.weightFormat == WeightFormat::Fp8Block128) {
    gemmW8A8(args, expertRows(args), args.output.dim(1), groupedGemmFloat);
  } else {
    groupedGemmFloat(args);
  }
}

// ---- Gathered rows (op_args.h, "Gathered rows") ------------------------------------------------

constexpr int64_t kGatherRowsPerChunk = 64;

// gatherRows come from users as well as from permute(): a bad one throws before any row is read.
// Only the rows the experts own are read, so only theirs are checked.
void checkGatherRows(const GroupedGemmArgs& args, RowRange rows) {
  const int64_t bound = args.input.dim(0) * args.gatherDivisor;
  const int32_t* sources = args.gatherRows.as<int32_t>();
  for (int64_t r = rows.begin; r < rows.end; ++r) {
    if (sources[r] < 0 || sources[r] >= bound) {
      throw NativeError("E_INVALID_ARGUMENT", describeFault(FaultKind::GatherRowOutOfRange, sources[r], r, bound));
    }
  }
}

// The input's gathered rows as a dense [M, K] matrix in the input's dtype: row r of `rows` is input
// row gatherRows[r] / gatherDivisor; the other rows (never read) are zeros.
std::vector<uint8_t> gatherInputRows(const GroupedGemmArgs& args, RowRange rows) {
  const size_t rowBytes = static_cast<size_t>(args.input.dim(1)) * dtypeSize(args.input.dtype);
  std::vector<uint8_t> gathered(static_cast<size_t>(gemmRows(args)) * rowBytes);
  const auto* source = args.input.as<uint8_t>();
  const int32_t* sources = args.gatherRows.as<int32_t>();
  parallelFor(rows.begin, rows.end, kGatherRowsPerChunk, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      std::memcpy(gathered.data() + r * rowBytes, source + (sources[r] / args.gatherDivisor) * rowBytes, rowBytes);
    }
  });
  return gathered;
}

}  // namespace

void groupedGemm(const GroupedGemmArgs& args) {
  checkOffsets(args);
  if (!args.gatherRows.present()) {
    groupedGemmInOrder(args);
    return;
  }
  const RowRange rows = expertRows(args);
  checkGatherRows(args, rows);
  std::vector<uint8_t> gathered = gatherInputRows(args, rows);
  GroupedGemmArgs inOrder = args;
  inOrder.input = TensorView{gathered.data(), args.input.dtype, {gemmRows(args), args.input.dim(1)}};
  inOrder.gatherRows = TensorView{};
  inOrder.gatherDivisor = 1;
  groupedGemmInOrder(inOrder);
}

void linear(const LinearArgs& args) {
  if (args.weightFormat == WeightFormat::Fp8Block128) {
    gemmW8A8(args, RowRange{0, args.input.dim(0)}, args.output.dim(1), linearFloat);
  } else {
    linearFloat(args);
  }
}

}  // namespace moekit::cpu
