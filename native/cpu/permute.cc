// Permutation on the CPU: a counting sort of (token, slot) pairs by expert. Pairs are visited in
// flat order t*K + j, so rows within an expert keep that order (stable). The rows are copied, or
// quantized by the W8A8 rule when the caller asks for FP8 rows with scales; FP8 rows that come with
// their scales are copied with them. Without `permuted` only the maps are written (input unread).
#include <cstring>
#include <string>
#include <vector>

#include "../core/errors.h"
#include "float_access.h"
#include "fp8.h"
#include "kernels.h"
#include "parallel.h"

namespace moekit::cpu {
namespace {

constexpr int64_t kRowsPerChunk = 64;

// Ids come from users as well as from routing(): check them before writing anything.
void checkIds(const int32_t* ids, int64_t pairs, int32_t totalExperts) {
  for (int64_t i = 0; i < pairs; ++i) {
    if (ids[i] < 0 || ids[i] >= totalExperts) {
      throw NativeError("E_INVALID_ARGUMENT", describeFault(FaultKind::ExpertIdOutOfRange, ids[i], i, totalExperts));
    }
  }
}

constexpr int32_t kDropped = -1;

// Copies each used row's token row of `from` (rows as they are, any dtype) into `to`.
template <typename TokenOf>
void gather(const TensorView& from, const TensorView& to, int64_t usedRows, const TokenOf& tokenOf) {
  const size_t rowBytes = static_cast<size_t>(from.dim(1)) * dtypeSize(from.dtype);
  const auto* source = static_cast<const uint8_t*>(from.data);
  auto* destination = static_cast<uint8_t*>(to.data);
  parallelFor(0, usedRows, kRowsPerChunk, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) std::memcpy(destination + row * rowBytes, source + tokenOf(row) * rowBytes, rowBytes);
  });
}

// Writes each used row's token row quantized by the W8A8 rule: FP8 values and their scales.
template <typename TokenOf>
void gatherQuantized(const PermuteArgs& args, int64_t usedRows, const TokenOf& tokenOf) {
  const int64_t hidden = args.input.dim(1);
  const int64_t groups = fp8Blocks(hidden);
  auto* q = args.permuted.as<uint8_t>();
  auto* scales = args.permutedScales.as<float>();
  dispatchFloat(args.input.dtype, "permute input", [&](auto format) {
    using Format = decltype(format);
    const auto* source = args.input.as<typename Format::Storage>();
    parallelFor(0, usedRows, kRowsPerChunk, [&](int64_t begin, int64_t end) {
      std::vector<float> values(static_cast<size_t>(hidden));
      for (int64_t row = begin; row < end; ++row) {
        toFloat<Format>(source + tokenOf(row) * hidden, hidden, values.data());
        quantizeRowFp8(values.data(), hidden, q + row * hidden, scales + row * groups);
      }
    });
  });
}

}  // namespace

void permute(const PermuteArgs& args) {
  // The ids give the token count: without `permuted`, input may be absent.
  const int64_t tokens = args.topkIds.dim(0);
  const int64_t topK = args.topkIds.dim(1);
  const int64_t pairs = tokens * topK;
  const int32_t experts = args.localExpertCount;
  const int32_t* ids = args.topkIds.as<int32_t>();
  checkIds(ids, pairs, args.totalExperts);
  // Local expert of a pair, or -1 when its expert lives on another rank.
  auto localExpert = [&](int64_t pair) {
    const int32_t local = ids[pair] - args.firstExpert;
    return local >= 0 && local < experts ? local : kDropped;
  };

  // Histogram, then exclusive scan into offsets.
  int32_t* offsets = args.expertOffsets.as<int32_t>();
  std::vector<int32_t> counts(experts, 0);
  for (int64_t i = 0; i < pairs; ++i) {
    const int32_t local = localExpert(i);
    if (local != kDropped) ++counts[local];
  }
  offsets[0] = 0;
  for (int32_t e = 0; e < experts; ++e) offsets[e + 1] = offsets[e] + counts[e];

  // Scatter: each local pair takes the next free row of its expert.
  std::vector<int32_t> next(offsets, offsets + experts);
  int32_t* sourceToPermuted = args.sourceToPermuted.as<int32_t>();
  int32_t* permutedToSource = args.permutedToSource.as<int32_t>();
  for (int64_t i = 0; i < pairs; ++i) {
    const int32_t local = localExpert(i);
    if (local == kDropped) {
      sourceToPermuted[i] = kDropped;
      continue;
    }
    const int32_t row = next[local]++;
    sourceToPermuted[i] = row;
    permutedToSource[row] = static_cast<int32_t>(i);
  }
  if (!args.permuted.present()) return;
  const int64_t usedRows = offsets[experts];

  const auto tokenOf = [&](int64_t row) { return permutedToSource[row] / topK; };
  if (args.inputScales.present()) {
    // FP8 rows that carry their scales: both copied as they are.
    gather(args.input, args.permuted, usedRows, tokenOf);
    gather(args.inputScales, args.permutedScales, usedRows, tokenOf);
  } else if (args.permutedScales.present()) {
    gatherQuantized(args, usedRows, tokenOf);
  } else {
    gather(args.input, args.permuted, usedRows, tokenOf);
  }
}

}  // namespace moekit::cpu
