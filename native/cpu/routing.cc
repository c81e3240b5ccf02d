// Routing on the CPU: one token row at a time (rows in parallel), top-k by k rounds of argmax so
// ties go to the lower expert id, as a stable descending sort would.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "float_access.h"
#include "kernels.h"
#include "parallel.h"

namespace moekit::cpu {
namespace {

constexpr float kNegativeInfinity = -std::numeric_limits<float>::infinity();
// DeepSeek-V3 scores a group by the sum of its best two experts.
constexpr int kExpertsPerGroupScore = 2;
// Added to the weight sum before renormalizing sigmoid scores (as DeepSeek-V3 does).
constexpr float kRenormalizeEpsilon = 1e-20f;
constexpr int64_t kRowsPerChunk = 16;

float sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }

// Whether a ranks above b: the larger first, NaN below every number (so a row of NaN still yields
// distinct experts).
bool ranksAbove(float a, float b) { return std::isnan(b) ? !std::isnan(a) : a > b; }

// The k best of values[0, count) that are not taken (first index wins ties), best first; each one
// chosen is marked taken. The caller leaves at least k untaken.
void takeTopK(const float* values, int64_t count, int k, int32_t* chosen, char* taken) {
  for (int slot = 0; slot < k; ++slot) {
    int64_t best = -1;
    for (int64_t i = 0; i < count; ++i) {
      if (!taken[i] && (best < 0 || ranksAbove(values[i], values[best]))) best = i;
    }
    if (best < 0) best = 0;  // nothing left: the binding refuses such a topK, so only a direct caller gets here
    chosen[slot] = static_cast<int32_t>(best);
    taken[best] = 1;
  }
}

// Per-chunk working memory, sized once so that rows allocate nothing.
struct RowScratch {
  std::vector<float> logits;         // [experts] the row as float32
  std::vector<float> probabilities;  // [experts] softmax of the row
  std::vector<float> ranked;         // [experts] what top-k picks from
  std::vector<char> taken;           // [experts] 1 once chosen, or outside the eligible groups
  std::vector<float> groupScores;    // [numGroups]
  std::vector<int32_t> groups;       // [numGroups] chosen groups, best first
  std::vector<char> eligible;        // [numGroups] 1 for the chosen groups

  RowScratch(int64_t experts, int32_t numGroups)
      : logits(experts), probabilities(experts), ranked(experts), taken(experts), groupScores(numGroups), groups(numGroups),
        eligible(numGroups) {}
};

// softmax over all experts, then top-k of the probabilities.
void softmaxTopK(const RoutingArgs& args, RowScratch& scratch, int32_t* ids, float* weights) {
  const int64_t experts = args.logits.dim(1);
  std::vector<float>& probabilities = scratch.probabilities;
  const float maximum = *std::max_element(scratch.logits.begin(), scratch.logits.end());
  float sum = 0.0f;
  for (int64_t e = 0; e < experts; ++e) {
    probabilities[e] = std::exp(scratch.logits[e] - maximum);
    sum += probabilities[e];
  }
  for (int64_t e = 0; e < experts; ++e) probabilities[e] /= sum;
  takeTopK(probabilities.data(), experts, args.topK, ids, scratch.taken.data());
  float chosenSum = 0.0f;
  for (int j = 0; j < args.topK; ++j) {
    weights[j] = probabilities[ids[j]];
    chosenSum += weights[j];
  }
  if (args.renormalize) {
    for (int j = 0; j < args.topK; ++j) weights[j] /= chosenSum;
  }
}

// top-k of the logits, then softmax over those k.
void topKSoftmax(const RoutingArgs& args, RowScratch& scratch, int32_t* ids, float* weights) {
  const int64_t experts = args.logits.dim(1);
  takeTopK(scratch.logits.data(), experts, args.topK, ids, scratch.taken.data());
  const float maximum = scratch.logits[ids[0]];
  float sum = 0.0f;
  for (int j = 0; j < args.topK; ++j) {
    weights[j] = std::exp(scratch.logits[ids[j]] - maximum);
    sum += weights[j];
  }
  for (int j = 0; j < args.topK; ++j) weights[j] /= sum;
}

// The sum of the kExpertsPerGroupScore largest of values[0, count), largest first.
float groupScore(const float* values, int64_t count) {
  float largest[kExpertsPerGroupScore];
  std::fill(largest, largest + kExpertsPerGroupScore, kNegativeInfinity);
  for (int64_t i = 0; i < count; ++i) {
    // Insert values[i] into the descending list `largest`, dropping its smallest entry.
    float value = values[i];
    for (int slot = 0; slot < kExpertsPerGroupScore; ++slot) {
      if (value > largest[slot]) std::swap(value, largest[slot]);
    }
  }
  const int summed = static_cast<int>(std::min<int64_t>(kExpertsPerGroupScore, count));
  float score = 0.0f;
  for (int slot = 0; slot < summed; ++slot) score += largest[slot];
  return score;
}

// Only the topkGroups groups with the best scores stay eligible: the others' experts are marked
// taken, so they are never chosen. (DeepSeek-V3's reference code zeroes them instead; the two
// agree whenever the top-k eligible choices are all above zero, i.e. unless a negative correction
// bias pushes a choice below zero or topK exceeds the eligible experts.)
void limitGroups(const RoutingArgs& args, RowScratch& scratch, float* choice) {
  const int64_t groupSize = args.logits.dim(1) / args.numGroups;
  for (int g = 0; g < args.numGroups; ++g) scratch.groupScores[g] = groupScore(choice + g * groupSize, groupSize);
  std::fill(scratch.eligible.begin(), scratch.eligible.end(), 0);
  takeTopK(scratch.groupScores.data(), args.numGroups, args.topkGroups, scratch.groups.data(), scratch.eligible.data());
  for (int64_t e = 0; e < args.logits.dim(1); ++e) {
    if (!scratch.eligible[e / groupSize]) scratch.taken[e] = 1;
  }
}

// DeepSeek-V3: sigmoid scores; choice = scores + bias; group-limited top-k on choice; weights
// from the unbiased scores.
void sigmoidGroupTopK(const RoutingArgs& args, RowScratch& scratch, int32_t* ids, float* weights) {
  const int64_t experts = args.logits.dim(1);
  const float* bias = args.correctionBias.present() ? args.correctionBias.as<float>() : nullptr;
  float* choice = scratch.ranked.data();
  for (int64_t e = 0; e < experts; ++e) choice[e] = sigmoid(scratch.logits[e]) + (bias ? bias[e] : 0.0f);
  if (args.numGroups > 1) limitGroups(args, scratch, choice);
  takeTopK(choice, experts, args.topK, ids, scratch.taken.data());
  float sum = 0.0f;
  for (int j = 0; j < args.topK; ++j) {
    weights[j] = sigmoid(scratch.logits[ids[j]]);
    sum += weights[j];
  }
  if (args.renormalize) {
    for (int j = 0; j < args.topK; ++j) weights[j] /= (sum + kRenormalizeEpsilon);
  }
}

template <typename Format>
void routeRows(const RoutingArgs& args, int64_t begin, int64_t end) {
  const int64_t experts = args.logits.dim(1);
  const auto* logits = args.logits.as<typename Format::Storage>();
  RowScratch scratch(experts, args.numGroups);
  for (int64_t t = begin; t < end; ++t) {
    toFloat<Format>(logits + t * experts, experts, scratch.logits.data());
    std::fill(scratch.taken.begin(), scratch.taken.end(), 0);
    int32_t* ids = args.topkIds.as<int32_t>() + t * args.topK;
    float* weights = args.topkWeights.as<float>() + t * args.topK;
    switch (args.method) {
      case RoutingMethod::SoftmaxTopK: softmaxTopK(args, scratch, ids, weights); break;
      case RoutingMethod::TopKSoftmax: topKSoftmax(args, scratch, ids, weights); break;
      case RoutingMethod::SigmoidGroupTopK: sigmoidGroupTopK(args, scratch, ids, weights); break;
    }
    for (int j = 0; j < args.topK; ++j) weights[j] *= args.scalingFactor;
  }
}

}  // namespace

void routing(const RoutingArgs& args) {
  const int64_t tokens = args.logits.dim(0);
  const int64_t experts = args.logits.dim(1);
  dispatchFloat(args.logits.dtype, "routing logits", [&](auto format) {
    using Format = decltype(format);
    parallelFor(0, tokens, kRowsPerChunk, [&](int64_t begin, int64_t end) { routeRows<Format>(args, begin, end); });
  });
  // Counts in one pass after the rows: deterministic and free of races.
  int32_t* counts = args.expertCounts.as<int32_t>();
  std::fill(counts, counts + experts, 0);
  const int32_t* ids = args.topkIds.as<int32_t>();
  for (int64_t i = 0; i < tokens * args.topK; ++i) ++counts[ids[i]];
}

}  // namespace moekit::cpu
