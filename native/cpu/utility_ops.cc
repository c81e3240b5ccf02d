// cast, fillRandom, quantizeWeights and addInt32 on the CPU.
#include <cstring>

#include "../core/random.h"
#include "float_access.h"
#include "fp8.h"
#include "kernels.h"
#include "parallel.h"
#include "weight_only.h"

namespace moekit::cpu {
namespace {

constexpr int64_t kElementsPerChunk = 1 << 16;

}  // namespace

void cast(const CastArgs& args) {
  const int64_t count = args.input.numel();
  if (args.input.dtype == args.output.dtype && (args.input.dtype == DType::Int32 || args.input.dtype == DType::UInt8)) {
    std::memcpy(args.output.data, args.input.data, args.input.nbytes());
    return;
  }
  dispatchConvertible(args.input.dtype, "cast input", [&](auto in) {
    dispatchConvertible(args.output.dtype, "cast output", [&](auto out) {
      using In = decltype(in);
      using Out = decltype(out);
      const auto* source = args.input.as<typename In::Storage>();
      auto* destination = args.output.as<typename Out::Storage>();
      parallelFor(0, count, kElementsPerChunk, [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) destination[i] = Out::store(In::load(source[i]));
      });
    });
  });
}

void fillRandom(const FillRandomArgs& args) {
  dispatchFloat(args.output.dtype, "fillRandom output", [&](auto out) {
    using Out = decltype(out);
    auto* destination = args.output.as<typename Out::Storage>();
    parallelFor(0, args.output.numel(), kElementsPerChunk, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        const float unit = uniformHash(args.seed, static_cast<uint64_t>(i));
        destination[i] = Out::store(args.scale * (2.0f * unit - 1.0f));
      }
    });
  });
}

void quantizeWeights(const QuantizeWeightsArgs& args) {
  if (args.format == WeightFormat::Fp8Block128) {
    quantizeWeightsFp8Block(args);
  } else {
    quantizeWeightsWeightOnly(args);
  }
}

void addInt32(const AddInt32Args& args) {
  const auto* input = args.input.as<int32_t>();
  auto* accumulator = args.accumulator.as<int32_t>();
  // Unsigned arithmetic: wrapping is defined (op_args.h), where signed overflow is not.
  for (int64_t i = 0, count = args.input.numel(); i < count; ++i) {
    accumulator[i] = static_cast<int32_t>(static_cast<uint32_t>(accumulator[i]) + static_cast<uint32_t>(input[i]));
  }
}

}  // namespace moekit::cpu
