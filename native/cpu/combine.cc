// Combine (unpermute) on the CPU: one token at a time, slots summed in order j = 0..K-1, then
// the shared expert — a fixed order, so the result is deterministic.
#include <cmath>
#include <vector>

#include "../core/errors.h"
#include "float_access.h"
#include "kernels.h"
#include "parallel.h"

namespace moekit::cpu {
namespace {

constexpr int64_t kTokensPerChunk = 16;

// Rows come from users as well as from permute(): check them all before reading any (a fault
// throws, so the sum below only ever meets rows inside expertOutput).
void checkSourceRows(const CombineArgs& args) {
  const int64_t pairs = args.sourceToPermuted.numel();
  const int64_t rows = args.expertOutput.dim(0);
  const int32_t* sourceToPermuted = args.sourceToPermuted.as<int32_t>();
  for (int64_t i = 0; i < pairs; ++i) {
    if (sourceToPermuted[i] < -1 || sourceToPermuted[i] >= rows) {
      throw NativeError("E_INVALID_ARGUMENT", describeFault(FaultKind::SourceRowOutOfRange, sourceToPermuted[i], i, rows));
    }
  }
}

template <typename In, typename Shared, typename Out>
void combineTokens(const CombineArgs& args, int64_t begin, int64_t end) {
  const int64_t hidden = args.output.dim(1);
  const int64_t slots = args.topkWeights.dim(1);
  const auto* rows = args.expertOutput.as<typename In::Storage>();
  const float* weights = args.topkWeights.as<float>();
  const int32_t* sourceToPermuted = args.sourceToPermuted.as<int32_t>();
  const auto* shared = args.shared.present() ? args.shared.as<typename Shared::Storage>() : nullptr;
  const float* gateLogits = args.sharedGateLogits.present() ? args.sharedGateLogits.as<float>() : nullptr;
  auto* output = args.output.as<typename Out::Storage>();
  std::vector<float> sum(hidden);
  for (int64_t t = begin; t < end; ++t) {
    std::fill(sum.begin(), sum.end(), 0.0f);
    for (int64_t j = 0; j < slots; ++j) {
      const int32_t source = sourceToPermuted[t * slots + j];
      if (source < 0) continue;  // routed to an expert on another rank
      const float weight = weights[t * slots + j];
      const auto* row = rows + static_cast<int64_t>(source) * hidden;
      for (int64_t h = 0; h < hidden; ++h) sum[h] += weight * In::load(row[h]);
    }
    if (shared != nullptr) {
      const float scale = gateLogits ? 1.0f / (1.0f + std::exp(-gateLogits[t])) : 1.0f;
      for (int64_t h = 0; h < hidden; ++h) sum[h] += scale * Shared::load(shared[t * hidden + h]);
    }
    for (int64_t h = 0; h < hidden; ++h) output[t * hidden + h] = Out::store(sum[h]);
  }
}

}  // namespace

void combine(const CombineArgs& args) {
  checkSourceRows(args);
  // Without a shared expert its format is irrelevant; dispatch on the expert output's.
  const DType sharedDType = args.shared.present() ? args.shared.dtype : args.expertOutput.dtype;
  dispatchFloat(args.expertOutput.dtype, "combine expertOutput", [&](auto in) {
    dispatchFloat(sharedDType, "combine shared", [&](auto shared) {
      dispatchFloat(args.output.dtype, "combine output", [&](auto out) {
        using In = decltype(in);
        using Shared = decltype(shared);
        using Out = decltype(out);
        parallelFor(0, args.output.dim(0), kTokensPerChunk,
                    [&](int64_t begin, int64_t end) { combineTokens<In, Shared, Out>(args, begin, end); });
      });
    });
  });
}

}  // namespace moekit::cpu
