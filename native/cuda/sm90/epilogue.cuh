// The consumer warpgroup's epilogue from registers: its 64 × blockN float32 accumulators → (+ bias)
// → optional activation → output dtype, stored straight from registers with plain global stores
// (what float32 and interleaved gated outputs take; 16-bit ones go by TMA, sm90/bulk_store.cuh,
// which shares the helpers here). Rows are masked to the expert's range (a row tile may reach into
// the next expert, whose rows another tile writes) and columns to the output width. An FP8 output (storeTileQuantized) is quantized
// here too, by the W8A8 rule: a tile's outputs of a row are whole 128-column groups of the
// output's scales, held by the four lanes of a quad, so a group's largest magnitude is two
// shuffles away.
//
// A thread holds, per 8-column chunk j, columns 8j + 2q and 8j + 2q + 1 (q = lane % 4) of two
// rows, r and r + 8 (wgmma.cuh). So:
//   Plain        two adjacent outputs per chunk and row: one 2-element store;
//   Halves       chunk j (gate) and chunk j + blockN / 16 (up) hold matching columns in the same
//                thread: two outputs per chunk pair and row;
//   Interleaved  the adjacent pair is (gate, up) of one output: one scalar store.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <type_traits>

#include "../activation_math.cuh"
#include "../float_access.cuh"
#include "../fp8.cuh"
#include "arch.h"
#include "problem.h"
#include "scheduler.cuh"

namespace moekit::cuda::sm90 {

#if MOEKIT_SM90A_DEVICE

namespace detail {
constexpr int kWarpRows = 16;      // rows of those one warp holds
constexpr int kLaneGroup = 4;      // lanes that share a row
constexpr int kChunkColumns = 8;   // accumulator columns per chunk
constexpr int kChunkRegisters = 4;
constexpr int kRowHalves = 2;      // a thread's rows r and r + 8
constexpr int kSecondRowOffset = 8;

// Stores two adjacent outputs (the column is even and the row stride even, so the pair is aligned).
template <typename Out>
__device__ __forceinline__ void storePair(Out* destination, float first, float second) {
  if constexpr (std::is_same_v<Out, float>) {
    *reinterpret_cast<float2*>(destination) = make_float2(first, second);
  } else if constexpr (std::is_same_v<Out, __nv_bfloat16>) {
    *reinterpret_cast<__nv_bfloat162*>(destination) = __floats2bfloat162_rn(first, second);
  } else {
    *reinterpret_cast<__half2*>(destination) = __floats2half2_rn(first, second);
  }
}

template <typename Out>
__device__ __forceinline__ void storeOne(Out* destination, float value) {
  if constexpr (std::is_same_v<Out, float>) {
    *destination = value;
  } else if constexpr (std::is_same_v<Out, __nv_bfloat16>) {
    *destination = __float2bfloat16_rn(value);
  } else {
    *destination = __float2half_rn(value);
  }
}

__device__ __forceinline__ float biasAt(const Problem& p, int32_t expert, int32_t column) {
  return p.bias == nullptr ? 0.0f : loadAsFloat(p.bias, p.biasDType, static_cast<int64_t>(expert) * p.cols + column);
}

// Halves: the biases of output columns `column` and column + 1 (gate, and the matching up column
// `upOffset` = p.cols / 2 further on; the caller reads it once, outside its loops).
struct GatedBias {
  float gate0, gate1, up0, up1;
};
__device__ __forceinline__ GatedBias gatedBiasAt(const Problem& p, int32_t expert, int32_t column, int32_t upOffset) {
  return {biasAt(p, expert, column), biasAt(p, expert, column + 1), biasAt(p, expert, upOffset + column),
          biasAt(p, expert, upOffset + column + 1)};
}

// Halves: the two activated outputs of gate chunk j (its up chunk is j + blockN / 16) at row half h.
template <int blockN>
__device__ __forceinline__ float2 activateHalves(const Problem& p, ActivationKind kind, const float (&acc)[blockN / 2], int j,
                                                 int h, const GatedBias& bias) {
  constexpr int kHalfChunks = blockN / kChunkColumns / 2;
  const float* gate = &acc[j * kChunkRegisters + 2 * h];
  const float* up = &acc[(j + kHalfChunks) * kChunkRegisters + 2 * h];
  return make_float2(activateGated(kind, gate[0] + bias.gate0, up[0] + bias.up0, p.alpha, p.limit),
                     activateGated(kind, gate[1] + bias.gate1, up[1] + bias.up1, p.alpha, p.limit));
}

template <bool activate, ActivationKind kind>
__device__ __forceinline__ float finishPlain(float value) {
  if constexpr (activate) {
    return activatePlain(kind, value);
  } else {
    return value;
  }
}
}  // namespace detail

template <ActivationKind kind>
using KindConstant = std::integral_constant<ActivationKind, kind>;

// Calls `store(activate, kind)` with the call's activation as compile-time constants (a
// std::bool_constant and a KindConstant), so that each element's activation in the epilogue it
// instantiates is straight-line code: the one place the epilogues turn p.activate and p.kind into
// template arguments. Plain products take no activation or a plain one, gated products a gated one.
template <Pairing pairing, class Store>
__device__ __forceinline__ void withActivation(const Problem& p, Store&& store) {
  using Kind = ActivationKind;
  if constexpr (pairing == Pairing::Plain) {
    if (!p.activate) return store(std::false_type{}, KindConstant<Kind::SiLU>{});
    switch (p.kind) {
      case Kind::SiLU: return store(std::true_type{}, KindConstant<Kind::SiLU>{});
      case Kind::GELU: return store(std::true_type{}, KindConstant<Kind::GELU>{});
      default: return store(std::true_type{}, KindConstant<Kind::ReLU>{});
    }
  } else {
    switch (p.kind) {
      case Kind::SwiGLU: return store(std::true_type{}, KindConstant<Kind::SwiGLU>{});
      case Kind::GeGLU: return store(std::true_type{}, KindConstant<Kind::GeGLU>{});
      default: return store(std::true_type{}, KindConstant<Kind::GptOssSwiGLU>{});
    }
  }
}

// `consumer` is the warpgroup's index among the consumers (which 64 rows of the tile it holds).
// The activation is a template argument (withActivation(), once per tile).
template <Pairing pairing, int blockN, typename Out, bool activate, ActivationKind kind>
__device__ void storeTile(const Problem& p, const Tile& tile, int consumer, const float (&acc)[blockN / 2]) {
  using namespace detail;
  const int lane = threadIdx.x % kWarpSize;
  const int warp = (threadIdx.x / kWarpSize) % (kConsumerRows / kWarpRows);
  const int quad = lane % kLaneGroup;
  const int32_t firstRow = tile.rowStart + consumer * kConsumerRows + warp * kWarpRows + lane / kLaneGroup;
  Out* output = static_cast<Out*>(p.output);
  constexpr int kChunks = blockN / kChunkColumns;

  if constexpr (pairing == Pairing::Plain) {
#pragma unroll
    for (int j = 0; j < kChunks; ++j) {
      const int32_t column = tile.columnTile * blockN + j * kChunkColumns + 2 * quad;
      if (column >= p.cols) continue;
      const float bias0 = biasAt(p, tile.expert, column), bias1 = biasAt(p, tile.expert, column + 1);
#pragma unroll
      for (int h = 0; h < kRowHalves; ++h) {
        const int32_t row = firstRow + h * kSecondRowOffset;
        if (row >= tile.rowEnd) continue;
        const float* pair = &acc[j * kChunkRegisters + 2 * h];
        storePair(output + static_cast<int64_t>(row) * p.outputCols + column,
                  finishPlain<activate, kind>(pair[0] + bias0), finishPlain<activate, kind>(pair[1] + bias1));
      }
    }
  } else if constexpr (pairing == Pairing::Halves) {
    constexpr int kHalfChunks = kChunks / 2;
    const int32_t upOffset = p.cols / 2;
#pragma unroll
    for (int j = 0; j < kHalfChunks; ++j) {
      const int32_t column = tile.columnTile * (blockN / 2) + j * kChunkColumns + 2 * quad;
      if (column >= p.outputCols) continue;
      const GatedBias bias = gatedBiasAt(p, tile.expert, column, upOffset);
#pragma unroll
      for (int h = 0; h < kRowHalves; ++h) {
        const int32_t row = firstRow + h * kSecondRowOffset;
        if (row >= tile.rowEnd) continue;
        const float2 outputs = activateHalves<blockN>(p, kind, acc, j, h, bias);
        storePair(output + static_cast<int64_t>(row) * p.outputCols + column, outputs.x, outputs.y);
      }
    }
  } else {
#pragma unroll
    for (int j = 0; j < kChunks; ++j) {
      const int32_t column = tile.columnTile * (blockN / 2) + j * (kChunkColumns / 2) + quad;
      if (column >= p.outputCols) continue;
      const float gateBias = biasAt(p, tile.expert, 2 * column), upBias = biasAt(p, tile.expert, 2 * column + 1);
#pragma unroll
      for (int h = 0; h < kRowHalves; ++h) {
        const int32_t row = firstRow + h * kSecondRowOffset;
        if (row >= tile.rowEnd) continue;
        const float* pair = &acc[j * kChunkRegisters + 2 * h];
        storeOne(output + static_cast<int64_t>(row) * p.outputCols + column,
                 activateGated(kind, pair[0] + gateBias, pair[1] + upBias, p.alpha, p.limit));
      }
    }
  }
}

template <Pairing pairing, int blockN, typename Out>
__device__ void storeTileActivated(const Problem& p, const Tile& tile, int consumer, const float (&acc)[blockN / 2]) {
  withActivation<pairing>(p, [&](auto activate, auto kind) {
    storeTile<pairing, blockN, Out, decltype(activate)::value, decltype(kind)::value>(p, tile, consumer, acc);
  });
}

// ---- FP8 output ---------------------------------------------------------------------------------------
// The thread's outputs of one row, per 128-column output group, are kGroupSlots "slots": for Plain
// and Halves, slot 2i + e is column 8i + 2q + e of the group's chunks; for Interleaved, slot i is
// column 4i + q (one output per chunk). Slots beyond the output's width are zero and not stored.
template <Pairing pairing, int blockN, bool activate, ActivationKind kind>
__device__ void storeTileQuantized(const Problem& p, const Tile& tile, int consumer, const float (&acc)[blockN / 2]) {
  using namespace detail;
  constexpr int kOutputsPerTile = pairing == Pairing::Plain ? blockN : blockN / 2;
  constexpr int kGroupColumns = static_cast<int>(kFp8BlockSize);
  constexpr int kGroups = kOutputsPerTile / kGroupColumns;
  constexpr int kGroupSlots = kGroupColumns / kLaneGroup;  // 32
  constexpr int kHalfChunks = blockN / kChunkColumns / 2;  // Halves: the up chunk of gate chunk j is j + this
  static_assert(kOutputsPerTile % kGroupColumns == 0, "a tile's outputs are whole groups of the output scales");
  const int lane = threadIdx.x % kWarpSize;
  const int warp = (threadIdx.x / kWarpSize) % (kConsumerRows / kWarpRows);
  const int quad = lane % kLaneGroup;
  const int32_t firstRow = tile.rowStart + consumer * kConsumerRows + warp * kWarpRows + lane / kLaneGroup;
  const int32_t firstColumn = tile.columnTile * kOutputsPerTile;
  uint8_t* output = static_cast<uint8_t*>(p.output);

  // The output column of `slot` in group `group`.
  const auto column = [&](int group, int slot) -> int32_t {
    if constexpr (pairing == Pairing::Interleaved) {
      return firstColumn + group * kGroupColumns + slot * (kChunkColumns / 2) + quad;
    } else {
      return firstColumn + group * kGroupColumns + (slot / 2) * kChunkColumns + 2 * quad + slot % 2;
    }
  };

  // One group at a time, both of the thread's rows together (their bias is the same).
#pragma unroll
  for (int group = 0; group < kGroups; ++group) {
    float values[kRowHalves][kGroupSlots];
    float amax[kRowHalves] = {0.0f, 0.0f};
#pragma unroll
    for (int slot = 0; slot < kGroupSlots; ++slot) {
      const int32_t c = column(group, slot);
      const bool inside = c < p.outputCols;
      if constexpr (pairing == Pairing::Plain) {
        const int chunk = group * (kGroupSlots / 2) + slot / 2;
        const float bias = inside ? biasAt(p, tile.expert, c) : 0.0f;
#pragma unroll
        for (int h = 0; h < kRowHalves; ++h) {
          values[h][slot] = finishPlain<activate, kind>(acc[chunk * kChunkRegisters + 2 * h + slot % 2] + bias);
        }
      } else if constexpr (pairing == Pairing::Halves) {
        const int chunk = slot / 2;
        const float gateBias = inside ? biasAt(p, tile.expert, c) : 0.0f;
        const float upBias = inside ? biasAt(p, tile.expert, p.cols / 2 + c) : 0.0f;
#pragma unroll
        for (int h = 0; h < kRowHalves; ++h) {
          const float gate = acc[chunk * kChunkRegisters + 2 * h + slot % 2] + gateBias;
          const float up = acc[(chunk + kHalfChunks) * kChunkRegisters + 2 * h + slot % 2] + upBias;
          values[h][slot] = activateGated(kind, gate, up, p.alpha, p.limit);
        }
      } else {
        const float gateBias = inside ? biasAt(p, tile.expert, 2 * c) : 0.0f;
        const float upBias = inside ? biasAt(p, tile.expert, 2 * c + 1) : 0.0f;
#pragma unroll
        for (int h = 0; h < kRowHalves; ++h) {
          values[h][slot] = activateGated(kind, acc[slot * kChunkRegisters + 2 * h] + gateBias,
                                          acc[slot * kChunkRegisters + 2 * h + 1] + upBias, p.alpha, p.limit);
        }
      }
#pragma unroll
      for (int h = 0; h < kRowHalves; ++h) {
        if (!inside) values[h][slot] = 0.0f;  // past the width: no part of the group
        amax[h] = fmaxf(amax[h], fabsf(values[h][slot]));
      }
    }
#pragma unroll
    for (int h = 0; h < kRowHalves; ++h) {
      // The quad's four lanes hold the row's 128 outputs of the group.
#pragma unroll
      for (int offset = 1; offset < kLaneGroup; offset *= 2) amax[h] = fmaxf(amax[h], __shfl_xor_sync(kFullWarp, amax[h], offset));
      const int32_t row = firstRow + h * kSecondRowOffset;
      if (row >= tile.rowEnd) continue;
      const float scale = fp8GroupScale(amax[h]);
      uint8_t* outputRow = output + static_cast<int64_t>(row) * p.outputCols;
      if constexpr (pairing == Pairing::Interleaved) {
#pragma unroll
        for (int slot = 0; slot < kGroupSlots; ++slot) {
          const int32_t c = column(group, slot);
          if (c < p.outputCols) outputRow[c] = floatToFp8(fp8Scaled(values[h][slot], scale));
        }
      } else {
#pragma unroll
        for (int slot = 0; slot < kGroupSlots; slot += 2) {
          const int32_t c = column(group, slot);  // even, and outputCols is even: the pair is whole
          if (c < p.outputCols) {
            *reinterpret_cast<uint16_t*>(outputRow + c) =
                floatsToFp8x2(fp8Scaled(values[h][slot], scale), fp8Scaled(values[h][slot + 1], scale));
          }
        }
      }
      if (quad == 0) {
        const int32_t outputGroup = firstColumn / kGroupColumns + group;
        if (outputGroup < p.outputBlocks) p.outputScales[static_cast<int64_t>(row) * p.outputBlocks + outputGroup] = scale;
      }
    }
  }
}

template <Pairing pairing, int blockN>
__device__ void storeTileQuantizedActivated(const Problem& p, const Tile& tile, int consumer, const float (&acc)[blockN / 2]) {
  withActivation<pairing>(p, [&](auto activate, auto kind) {
    storeTileQuantized<pairing, blockN, decltype(activate)::value, decltype(kind)::value>(p, tile, consumer, acc);
  });
}

#endif  // MOEKIT_SM90A_DEVICE

}  // namespace moekit::cuda::sm90
