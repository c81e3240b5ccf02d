// Routing one token row on the GPU, by one warp (routing.cu's kernel, and the fused MoE kernel's
// routing step in fused_moe.cu).
//
// A warp copies its row of logits into shared memory, turns them into scores (softmax, raw logits
// or sigmoid), applies the correction bias and the group limit, then takes the top-k by k rounds
// of warp argmax in which the lower expert id wins ties, exactly like the CPU backend's stable
// selection. NaN ranks below every number and chosen or ineligible experts are marked taken, so a
// row always yields k distinct eligible experts, whatever its values. Lane j then writes slot j's
// weight (their sum added in slot order, as on the CPU) and counts its expert with an integer
// atomic (an exact, and so deterministic, count that needs no host round trip).
#pragma once

#include <climits>
#include <cstdint>

#include "../core/op_args.h"
#include "float_access.cuh"

namespace moekit::cuda::routing_row {

constexpr int kWarpSize = 32;
constexpr unsigned kFullWarp = 0xffffffffu;
// DeepSeek-V3 scores a group by the sum of its best two experts.
constexpr int kExpertsPerGroupScore = 2;
// Added to the weight sum before renormalizing sigmoid scores (as DeepSeek-V3 does).
constexpr float kRenormalizeEpsilon = 1e-20f;
// Each warp's scratch starts on this boundary.
constexpr size_t kScratchAlignment = 16;

struct RoutingParams {
  const void* logits;           // [tokens, experts]
  const float* correctionBias;  // [experts] or nullptr
  int32_t* topkIds;             // [tokens, topK]
  float* topkWeights;           // [tokens, topK]
  int32_t* expertCounts;        // [experts]: zeroed before the kernel, or by it (zeroesCounts); nullptr: not counted
  int64_t tokens;
  int32_t experts;
  int32_t topK;
  int32_t numGroups;
  int32_t topkGroups;
  RoutingMethod method;
  bool renormalize;
  float scalingFactor;
  // A grid of one block (decode batches) zeroes the counts itself before counting: one graph node
  // fewer than a memset ahead of it.
  bool zeroesCounts;
};

// The parameters for routing `logits` [tokens, experts] by `rule`'s method (RoutingArgs, or the
// fused MoE op's copy of its fields), outputs unset. The correction bias and the group limit belong
// to SigmoidGroupTopK only; other methods see no bias and a single group.
template <class Rule>
RoutingParams paramsOf(const Rule& rule, const void* logits, int64_t tokens, int32_t experts) {
  const bool sigmoidGroups = rule.method == RoutingMethod::SigmoidGroupTopK;
  RoutingParams params{};
  params.logits = logits;
  params.correctionBias = sigmoidGroups && rule.correctionBias.present() ? rule.correctionBias.template as<float>() : nullptr;
  params.tokens = tokens;
  params.experts = experts;
  params.topK = rule.topK;
  params.numGroups = sigmoidGroups ? rule.numGroups : 1;
  params.topkGroups = rule.topkGroups;
  params.method = rule.method;
  params.renormalize = rule.renormalize;
  params.scalingFactor = rule.scalingFactor;
  return params;
}

// One warp's slice of shared memory: a row's scores and the values top-k ranks them by.
struct WarpScratch {
  float* scores;       // [experts]: probabilities, logits or sigmoid scores (the weights' source)
  float* ranked;       // [experts]: what top-k picks from
  float* groupScores;  // [numGroups]
  int32_t* groupChosen;  // [numGroups]: 1 for the groups that stay eligible
  int32_t* chosen;       // [max(topK, numGroups)]: the chosen expert (or group) ids, best first
  unsigned char* taken;  // [experts]: 1 once chosen, or outside the eligible groups

  // `chosen` also holds the chosen groups while the group limit picks them.
  __host__ __device__ static int chosenSlots(int groups, int topK) { return topK > groups ? topK : groups; }

  __host__ __device__ static size_t bytes(int experts, int groups, int topK) {
    const size_t total =
        sizeof(float) * (2 * static_cast<size_t>(experts) + groups) + sizeof(int32_t) * (groups + chosenSlots(groups, topK)) + experts;
    return (total + kScratchAlignment - 1) / kScratchAlignment * kScratchAlignment;  // the next warp's floats stay aligned
  }

  __device__ static WarpScratch at(unsigned char* base, int warp, int experts, int groups, int topK) {
    auto* start = reinterpret_cast<float*>(base + bytes(experts, groups, topK) * warp);
    WarpScratch scratch;
    scratch.scores = start;
    scratch.ranked = start + experts;
    scratch.groupScores = start + 2 * experts;
    scratch.groupChosen = reinterpret_cast<int32_t*>(start + 2 * experts + groups);
    scratch.chosen = scratch.groupChosen + groups;
    scratch.taken = reinterpret_cast<unsigned char*>(scratch.chosen + chosenSlots(groups, topK));
    return scratch;
  }
};

__device__ inline float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

__device__ inline float warpMax(float value) {
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2) value = fmaxf(value, __shfl_xor_sync(kFullWarp, value, offset));
  return value;
}

__device__ inline float warpSum(float value) {
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2) value += __shfl_xor_sync(kFullWarp, value, offset);
  return value;
}

// A value and where it came from. Available numbers rank first (larger first), then available NaN,
// then what is taken; ties go to the lower index.
struct Candidate {
  int tier;  // kNumber, kNotANumber or kTaken
  float value;
  int index;

  static constexpr int kTaken = 0;
  static constexpr int kNotANumber = 1;
  static constexpr int kNumber = 2;

  __device__ static Candidate at(float value, bool taken, int index) {
    return Candidate{taken ? kTaken : (isnan(value) ? kNotANumber : kNumber), value, index};
  }
};

__device__ inline Candidate better(Candidate a, Candidate b) {
  if (a.tier != b.tier) return b.tier > a.tier ? b : a;
  if (a.tier == Candidate::kNumber && b.value != a.value) return b.value > a.value ? b : a;
  return b.index < a.index ? b : a;
}

// The best index of values[0, count) that is not taken, on every lane: the first maximum, as the
// CPU's sequential scan finds it.
template <typename Mark>
__device__ inline int warpArgmax(const float* values, const Mark* taken, int count, int lane) {
  Candidate best{Candidate::kTaken, 0.0f, INT_MAX};
  for (int i = lane; i < count; i += kWarpSize) best = better(best, Candidate::at(values[i], taken[i] != 0, i));
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2) {
    const Candidate other{__shfl_xor_sync(kFullWarp, best.tier, offset), __shfl_xor_sync(kFullWarp, best.value, offset),
                          __shfl_xor_sync(kFullWarp, best.index, offset)};
    best = better(best, other);
  }
  return best.index < count ? best.index : 0;  // every entry taken: cannot happen for a checked topK
}

// k rounds of argmax over values[0, count); each chosen entry is marked taken.
template <typename Mark>
__device__ inline void takeTopK(const float* values, Mark* taken, int count, int k, int32_t* chosen, int lane) {
  for (int slot = 0; slot < k; ++slot) {
    const int best = warpArgmax(values, taken, count, lane);
    __syncwarp();  // every lane has read `taken` before lane 0 changes it
    if (lane == 0) {
      chosen[slot] = best;
      taken[best] = 1;
    }
    __syncwarp();
  }
}

// ---- Top-k of a row held in registers (rows of up to kWarpSize * 8 experts) ----
// warpArgmax's order as one unsigned key per entry, so that a round is two warp reductions: taken
// entries 0, NaN 1, numbers their float order above that (the sign bit flipped, or every bit of a
// negative number, makes unsigned order float order; -0 ranks as +0, as the float compare has it).
// The largest key wins; among equal keys the lowest index, as in Candidate's order.
__device__ __forceinline__ uint32_t rankKey(float value, bool taken) {
  constexpr uint32_t kTakenKey = 0, kNotANumberKey = 1, kSignBit = 0x80000000u;
  if (taken) return kTakenKey;
  if (isnan(value)) return kNotANumberKey;
  const uint32_t bits = value == 0.0f ? 0u : __float_as_uint(value);
  return (bits & kSignBit) ? ~bits : (bits | kSignBit);  // -inf: 0x007fffff, above both
}

// takeTopK over values[0, count) for count <= kWarpSize * slots: lane l keeps the keys of entries
// l, l + 32, ... in registers and its best one; each round the warp takes the largest key (ties to
// the lowest index) and only the winner's lane looks at its entries again. Writes `chosen` (lane
// 0) as takeTopK does; `taken` is only read.
template <int slots>
__device__ inline void takeTopKInRegisters(const float* values, const unsigned char* taken, int count, int k, int32_t* chosen,
                                   int lane) {
  uint32_t keys[slots];
#pragma unroll
  for (int i = 0; i < slots; ++i) {
    const int e = lane + i * kWarpSize;
    keys[i] = e < count ? rankKey(values[e], taken[e] != 0) : 0;
  }
  // This lane's best entry: the first of its largest keys (its entries ascend by index).
  const auto localBest = [&](uint32_t& key, uint32_t& index) {
    key = keys[0];
    int best = 0;
#pragma unroll
    for (int i = 1; i < slots; ++i) {
      if (keys[i] > key) {
        key = keys[i];
        best = i;
      }
    }
    index = static_cast<uint32_t>(lane + best * kWarpSize);
  };
  uint32_t key, index;
  localBest(key, index);
  for (int slot = 0; slot < k; ++slot) {
    const uint32_t bestKey = __reduce_max_sync(kFullWarp, key);
    const uint32_t winner = __reduce_min_sync(kFullWarp, key == bestKey ? index : UINT_MAX);
    if (lane == 0) chosen[slot] = static_cast<int32_t>(winner);
    if (static_cast<uint32_t>(lane) == winner % kWarpSize) {
#pragma unroll
      for (int i = 0; i < slots; ++i) {
        if (static_cast<uint32_t>(i) == winner / kWarpSize) keys[i] = 0;  // taken
      }
      localBest(key, index);
    }
  }
  __syncwarp();  // lane 0's `chosen` is read by every lane in writeWeights; the row's scratch is reused after
}

// The expert top-k of a row: in registers where the row fits (rows of up to 256 experts), else
// by rounds of warpArgmax over shared memory.
__device__ inline void takeExpertTopK(const RoutingParams& p, const WarpScratch& row, int lane) {
  if (p.experts <= kWarpSize) {
    takeTopKInRegisters<1>(row.ranked, row.taken, p.experts, p.topK, row.chosen, lane);
  } else if (p.experts <= 2 * kWarpSize) {
    takeTopKInRegisters<2>(row.ranked, row.taken, p.experts, p.topK, row.chosen, lane);
  } else if (p.experts <= 4 * kWarpSize) {
    takeTopKInRegisters<4>(row.ranked, row.taken, p.experts, p.topK, row.chosen, lane);
  } else if (p.experts <= 8 * kWarpSize) {
    takeTopKInRegisters<8>(row.ranked, row.taken, p.experts, p.topK, row.chosen, lane);
  } else {
    takeTopK(row.ranked, row.taken, p.experts, p.topK, row.chosen, lane);
  }
}

// softmax(logits) into scores, and the same probabilities into ranked.
__device__ inline void softmaxScores(const WarpScratch& row, int experts, int lane) {
  float maximum = -INFINITY;
  for (int e = lane; e < experts; e += kWarpSize) maximum = fmaxf(maximum, row.scores[e]);
  maximum = warpMax(maximum);
  float sum = 0.0f;
  for (int e = lane; e < experts; e += kWarpSize) {
    const float exponential = expf(row.scores[e] - maximum);
    row.scores[e] = exponential;
    sum += exponential;
  }
  sum = warpSum(sum);
  for (int e = lane; e < experts; e += kWarpSize) {
    row.scores[e] /= sum;
    row.ranked[e] = row.scores[e];
  }
}

// DeepSeek-V3 group limit: only the topkGroups groups with the best top-2 sums stay eligible.
__device__ inline void limitGroups(const RoutingParams& p, const WarpScratch& row, int lane) {
  const int groupSize = p.experts / p.numGroups;
  for (int g = lane; g < p.numGroups; g += kWarpSize) {
    float first = -INFINITY, second = -INFINITY;
    for (int e = g * groupSize; e < (g + 1) * groupSize; ++e) {
      const float value = row.ranked[e];
      if (value > first) {
        second = first;
        first = value;
      } else if (value > second) {
        second = value;
      }
    }
    row.groupScores[g] = groupSize >= kExpertsPerGroupScore ? first + second : first;
    row.groupChosen[g] = 0;
  }
  __syncwarp();
  // The chosen groups are the taken ones of this selection; their ids are not needed.
  takeTopK(row.groupScores, row.groupChosen, p.numGroups, p.topkGroups, row.chosen, lane);
  for (int e = lane; e < p.experts; e += kWarpSize) {
    if (!row.groupChosen[e / groupSize]) row.taken[e] = 1;
  }
  __syncwarp();
}

// The k weights, scaled and stored, the ids, and the expert counts (where there are counts to
// keep): lane j writes slot j, and every lane adds the sum the weights are divided by in slot order
// (as the CPU adds it) rather than waiting for one lane to write every slot.
__device__ inline void writeWeights(const RoutingParams& p, const WarpScratch& row, int64_t token, int lane) {
  int32_t* ids = p.topkIds + token * p.topK;
  float* weights = p.topkWeights + token * p.topK;
  const int32_t* chosen = row.chosen;
  const bool softmaxOfChosen = p.method == RoutingMethod::TopKSoftmax;
  // TopKSoftmax: a softmax over the k chosen logits; the others divide the chosen scores by their sum.
  const float maximum = softmaxOfChosen ? row.scores[chosen[0]] : 0.0f;
  float sum = 0.0f;
  for (int j = 0; j < p.topK; ++j) {
    const float score = row.scores[chosen[j]];
    sum += softmaxOfChosen ? expf(score - maximum) : score;
  }
  const float divisor = p.method == RoutingMethod::SigmoidGroupTopK ? sum + kRenormalizeEpsilon : sum;
  for (int j = lane; j < p.topK; j += kWarpSize) {
    const float score = row.scores[chosen[j]];
    float weight;
    if (softmaxOfChosen) {
      weight = expf(score - maximum) / sum;
    } else {
      weight = p.renormalize ? score / divisor : score;
    }
    weights[j] = weight * p.scalingFactor;
    ids[j] = chosen[j];
    if (p.expertCounts != nullptr) atomicAdd(p.expertCounts + chosen[j], 1);
  }
}

// Logits a lane loads before it stores any into shared memory, so that a row's loads are in flight
// together rather than one round trip per 32 experts (a load is not moved past a store the
// compiler cannot prove lies elsewhere).
constexpr int kLogitsInFlight = 8;

// Expert e's score and ranked value from its logit, by the routing method (softmaxScores() finishes
// SoftmaxTopK's after the whole row is in).
__device__ inline void scoreExpert(const RoutingParams& p, const WarpScratch& row, int e, float logit) {
  row.taken[e] = 0;
  switch (p.method) {
    case RoutingMethod::SoftmaxTopK:
      row.scores[e] = logit;
      break;
    case RoutingMethod::TopKSoftmax:
      row.scores[e] = logit;
      row.ranked[e] = logit;
      break;
    case RoutingMethod::SigmoidGroupTopK: {
      const float score = sigmoid(logit);
      row.scores[e] = score;
      row.ranked[e] = score + (p.correctionBias ? p.correctionBias[e] : 0.0f);
      break;
    }
  }
}

// Routes one token: its row of logits into the warp's scratch, scores, the group limit, the top-k,
// then its ids and weights written at `token` of p.topkIds / p.topkWeights. Every lane of
// the warp calls it.
template <typename Logit>
__device__ void routeRow(const RoutingParams& p, const WarpScratch& row, const typename Logit::Storage* logitRow,
                         int64_t token, int lane) {
  for (int first = 0; first < p.experts; first += kLogitsInFlight * kWarpSize) {
    float logits[kLogitsInFlight];
#pragma unroll
    for (int i = 0; i < kLogitsInFlight; ++i) {
      const int e = first + i * kWarpSize + lane;
      logits[i] = e < p.experts ? Logit::load(logitRow[e]) : 0.0f;
    }
#pragma unroll
    for (int i = 0; i < kLogitsInFlight; ++i) {
      const int e = first + i * kWarpSize + lane;
      if (e < p.experts) scoreExpert(p, row, e, logits[i]);
    }
  }
  __syncwarp();
  if (p.method == RoutingMethod::SoftmaxTopK) softmaxScores(row, p.experts, lane);
  __syncwarp();
  if (p.method == RoutingMethod::SigmoidGroupTopK && p.numGroups > 1) limitGroups(p, row, lane);

  takeExpertTopK(p, row, lane);
  writeWeights(p, row, token, lane);
  __syncwarp();  // the next row reuses this warp's scratch
}

}  // namespace moekit::cuda::routing_row
