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

// Indices of the k largest values (first index wins ties), best first. Chosen entries are
// overwritten with -inf in `values`.
void takeTopK(float* values, int64_t count, int k, int32_t* chosen) {
  for (int slot = 0; slot < k; ++slot) {
    int64_t best = 0;
    for (int64_t i = 1; i < count; ++i) {
      if (values[i] > values[best]) best = i;
    }
    chosen[slot] = static_cast<int32_t>(best);
    values[best] = kNegativeInfinity;
  }
}

struct RowScratch {
  std::vector<float> logits;
  std::vector<float> work;
  std::vector<float> groupScores;
  std::vector<int32_t> groups;
};

// softmax over all experts, then top-k of the probabilities.
void softmaxTopK(const RoutingArgs& args, RowScratch& scratch, int32_t* ids, float* weights) {
  const int64_t experts = args.logits.dim(1);
  std::vector<float>& probabilities = scratch.work;
  const float maximum = *std::max_element(scratch.logits.begin(), scratch.logits.end());
  float sum = 0.0f;
  for (int64_t e = 0; e < experts; ++e) {
    probabilities[e] = std::exp(scratch.logits[e] - maximum);
    sum += probabilities[e];
  }
  for (int64_t e = 0; e < experts; ++e) probabilities[e] /= sum;
  std::vector<float> ranked(probabilities.begin(), probabilities.end());
  takeTopK(ranked.data(), experts, args.topK, ids);
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
  std::copy(scratch.logits.begin(), scratch.logits.end(), scratch.work.begin());
  takeTopK(scratch.work.data(), experts, args.topK, ids);
  const float maximum = scratch.logits[ids[0]];
  float sum = 0.0f;
  for (int j = 0; j < args.topK; ++j) {
    weights[j] = std::exp(scratch.logits[ids[j]] - maximum);
    sum += weights[j];
  }
  for (int j = 0; j < args.topK; ++j) weights[j] /= sum;
}

// DeepSeek-V3: sigmoid scores; choice = scores + bias; group-limited top-k on choice; weights
// from the unbiased scores. Experts outside the chosen groups are ineligible (-inf).
void sigmoidGroupTopK(const RoutingArgs& args, RowScratch& scratch, int32_t* ids, float* weights) {
  const int64_t experts = args.logits.dim(1);
  const int64_t groupSize = experts / args.numGroups;
  const float* bias = args.correctionBias.present() ? args.correctionBias.as<float>() : nullptr;
  std::vector<float>& choice = scratch.work;
  for (int64_t e = 0; e < experts; ++e) choice[e] = sigmoid(scratch.logits[e]) + (bias ? bias[e] : 0.0f);

  if (args.numGroups > 1) {
    for (int g = 0; g < args.numGroups; ++g) {
      std::vector<float> members(choice.begin() + g * groupSize, choice.begin() + (g + 1) * groupSize);
      const int best = static_cast<int>(std::min<int64_t>(kExpertsPerGroupScore, groupSize));
      std::partial_sort(members.begin(), members.begin() + best, members.end(), std::greater<float>());
      float score = 0.0f;
      for (int i = 0; i < best; ++i) score += members[i];
      scratch.groupScores[g] = score;
    }
    takeTopK(scratch.groupScores.data(), args.numGroups, args.topkGroups, scratch.groups.data());
    std::vector<bool> eligible(args.numGroups, false);
    for (int i = 0; i < args.topkGroups; ++i) eligible[scratch.groups[i]] = true;
    for (int64_t e = 0; e < experts; ++e) {
      if (!eligible[e / groupSize]) choice[e] = kNegativeInfinity;
    }
  }
  takeTopK(choice.data(), experts, args.topK, ids);
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
  RowScratch scratch;
  scratch.logits.resize(experts);
  scratch.work.resize(experts);
  scratch.groupScores.resize(args.numGroups);
  scratch.groups.resize(args.numGroups);
  for (int64_t t = begin; t < end; ++t) {
    toFloat<Format>(logits + t * experts, experts, scratch.logits.data());
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
