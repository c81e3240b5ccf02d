// Standalone harness for the CUDA backend (no Node): every op in moekit::cuda:: against the CPU
// reference backend (moekit::cpu::) on random inputs with awkward sizes, for float32, float16 and
// bfloat16, and FP8 (float8_e4m3 activations and block-scaled weights: fp8_ops_test.cu); then the
// CudaDevice itself (pool allocation, staged transfers, whenIdle, out of memory, graph capture and
// replay); then Mixtral-sized grouped GEMMs against float64 dot products. Checks only: the ops'
// timings are bench/native/ops_bench.cu. What the files share: harness.h.
//
//   cuda_ops_test            everything
//   cuda_ops_test --quick    small sizes only, no model-sized checks (for compute-sanitizer)
//   cuda_ops_test --sm90     the Hopper kernel's edges in bfloat16 only (with MOEKIT_GEMM=sm90: racecheck)
//   cuda_ops_test --permute  permute's cases in bfloat16 only, small sizes (racecheck)
//   cuda_ops_test --fp8      the FP8 tests only
//   cuda_ops_test --wq       the weight-only tests only
// MOEKIT_GEMM=sm90|small_m|mma forces a grouped GEMM family for the whole run.
//
// Prints one line per check with max abs / max rel / norm-relative error, a summary of the worst
// error per op and dtype, and exits 1 if any check failed.
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <numeric>
#include <string>
#include <utility>
#include <vector>

#include "core/dtype.h"
#include "core/errors.h"
#include "core/op_args.h"
#include "core/random.h"
#include "cpu/kernels.h"
#include "cuda/check.h"
#include "cuda/cuda_device.h"
#include "cuda/kernels.h"
#include "harness.h"

using namespace moekit;
using namespace moekit::harness;

namespace {

// ---- Routing -----------------------------------------------------------------------------------
struct RoutingCase {
  int64_t tokens;
  int32_t experts;
  int32_t topK;
  RoutingMethod method;
  bool renormalize;
  int32_t numGroups;
  int32_t topkGroups;
  float scaling;
  bool bias;
  bool ties;  // logits rounded to halves: many exact ties
  bool specials = false;  // some logits NaN (ranked below every number) and some -0 (equal to +0)
};

const char* methodName(RoutingMethod method) {
  switch (method) {
    case RoutingMethod::SoftmaxTopK: return "softmax_topk";
    case RoutingMethod::TopKSoftmax: return "topk_softmax";
    default: return "sigmoid_group_topk";
  }
}

void testRouting(DType dtype, const RoutingCase& c) {
  Tensor logits = randomTensor(dtype, {c.tokens, c.experts}, 7 + c.tokens, 4.0f);
  if (c.ties) {
    for (int64_t i = 0; i < logits.numel(); ++i) logits.set(i, std::round(logits.get(i) * 2.0f) / 2.0f);
  }
  if (c.specials) {
    for (int64_t i = 0; i < logits.numel(); ++i) {
      if (i % 7 == 3) logits.set(i, NAN);
      if (i % 5 == 1) logits.set(i, -0.0f);
    }
  }
  Tensor bias = randomTensor(DType::Float32, {c.experts}, 8, 0.5f);
  Tensor ids[2] = {Tensor(DType::Int32, {c.tokens, c.topK}), Tensor(DType::Int32, {c.tokens, c.topK})};
  Tensor weights[2] = {Tensor(DType::Float32, {c.tokens, c.topK}), Tensor(DType::Float32, {c.tokens, c.topK})};
  // Counts start as garbage: routing zeroes them itself (by a memset, or inside a one-block grid).
  Tensor counts[2] = {sentinelTensor(DType::Int32, {c.experts}), sentinelTensor(DType::Int32, {c.experts})};
  for (int side = 0; side < 2; ++side) {
    const bool gpu = side == 1;
    RoutingArgs args;
    args.logits = gpu ? logits.deviceView() : logits.hostView();
    if (c.bias) args.correctionBias = gpu ? bias.deviceView() : bias.hostView();
    args.topkIds = gpu ? ids[side].deviceView() : ids[side].hostView();
    args.topkWeights = gpu ? weights[side].deviceView() : weights[side].hostView();
    args.expertCounts = gpu ? counts[side].deviceView() : counts[side].hostView();
    args.method = c.method;
    args.topK = c.topK;
    args.renormalize = c.renormalize;
    args.numGroups = c.numGroups;
    args.topkGroups = c.topkGroups;
    args.scalingFactor = c.scaling;
    if (gpu) {
      cuda::routing(args, gStream);
    } else {
      cpu::routing(args);
    }
  }
  const std::string what = describe("%s T=%lld E=%d K=%d G=%d/%d%s%s%s", methodName(c.method), static_cast<long long>(c.tokens),
                                    c.experts, c.topK, c.numGroups, c.topkGroups, c.bias ? " bias" : "", c.ties ? " ties" : "", c.specials ? " NaN/-0" : "");
  expectSameBytes("routing.ids", dtype, what, ids[1].fromDevice(), ids[0]);
  expectSameBytes("routing.counts", dtype, what, counts[1].fromDevice(), counts[0]);
  expectClose("routing.weights", dtype, what, weights[1].fromDevice(), weights[0], 1e-6);
}

// ---- Permute -----------------------------------------------------------------------------------
struct PermuteCase {
  int64_t tokens;
  int64_t hidden;
  int32_t totalExperts;
  int32_t topK;
  IdPattern pattern;
  int32_t firstExpert;  // expert parallel: local experts [first, first + local)
  int32_t localExperts;
};

void testPermute(DType dtype, const PermuteCase& c) {
  const int64_t pairs = c.tokens * c.topK;
  Tensor input = randomTensor(dtype, {c.tokens, c.hidden}, 4, 1.0f);
  Tensor ids = makeIds(c.tokens, c.topK, c.totalExperts, c.pattern, 11);
  Tensor permuted[2] = {sentinelTensor(dtype, {pairs, c.hidden}), sentinelTensor(dtype, {pairs, c.hidden})};
  Tensor offsets[2] = {Tensor(DType::Int32, {c.localExperts + 1}), Tensor(DType::Int32, {c.localExperts + 1})};
  Tensor toPermuted[2] = {Tensor(DType::Int32, {c.tokens, c.topK}), Tensor(DType::Int32, {c.tokens, c.topK})};
  Tensor toSource[2] = {sentinelTensor(DType::Int32, {pairs}), sentinelTensor(DType::Int32, {pairs})};
  for (int side = 0; side < 2; ++side) {
    const bool gpu = side == 1;
    PermuteArgs args;
    args.input = gpu ? input.deviceView() : input.hostView();
    args.topkIds = gpu ? ids.deviceView() : ids.hostView();
    args.permuted = gpu ? permuted[side].deviceView() : permuted[side].hostView();
    args.expertOffsets = gpu ? offsets[side].deviceView() : offsets[side].hostView();
    args.sourceToPermuted = gpu ? toPermuted[side].deviceView() : toPermuted[side].hostView();
    args.permutedToSource = gpu ? toSource[side].deviceView() : toSource[side].hostView();
    args.localExpertCount = c.localExperts;
    args.firstExpert = c.firstExpert;
    args.totalExperts = c.totalExperts;
    if (gpu) {
      cuda::permute(args, gStream);
    } else {
      cpu::permute(args);
    }
  }
  const std::string what =
      describe("T=%lld H=%lld E=%d K=%d%s local [%d, %d)", static_cast<long long>(c.tokens), static_cast<long long>(c.hidden),
               c.totalExperts, c.topK, c.pattern == IdPattern::SameExpert ? " same-expert" : "", c.firstExpert,
               c.firstExpert + c.localExperts);
  expectSameBytes("permute.offsets", dtype, what, offsets[1].fromDevice(), offsets[0]);
  expectSameBytes("permute.srcToPerm", dtype, what, toPermuted[1].fromDevice(), toPermuted[0]);
  expectSameBytes("permute.permToSrc", dtype, what, toSource[1].fromDevice(), toSource[0]);
  expectSameBytes("permute.rows", dtype, what, permuted[1].fromDevice(), permuted[0]);

  // Maps only (no `permuted`, no input), as a layer whose first GEMM gathers its rows asks.
  Tensor mapsOffsets(DType::Int32, {c.localExperts + 1});
  Tensor mapsToPermuted(DType::Int32, {c.tokens, c.topK});
  Tensor mapsToSource = sentinelTensor(DType::Int32, {pairs});
  PermuteArgs maps;
  maps.topkIds = ids.deviceView();
  maps.expertOffsets = mapsOffsets.deviceView();
  maps.sourceToPermuted = mapsToPermuted.deviceView();
  maps.permutedToSource = mapsToSource.deviceView();
  maps.localExpertCount = c.localExperts;
  maps.firstExpert = c.firstExpert;
  maps.totalExperts = c.totalExperts;
  cuda::permute(maps, gStream);
  expectSameBytes("permute.maps.offsets", dtype, what, mapsOffsets.fromDevice(), offsets[0]);
  expectSameBytes("permute.maps.srcToPerm", dtype, what, mapsToPermuted.fromDevice(), toPermuted[0]);
  expectSameBytes("permute.maps.permToSrc", dtype, what, mapsToSource.fromDevice(), toSource[0]);
}

// ---- Grouped GEMM and linear ---------------------------------------------------------------------
// Where a grouped GEMM's rows come from: the input's rows in order, or gathered (gatherRows): row r
// reads input row gatherRows[r] / kGatherDivisor, from a random index over an input of about half
// the rows (so rows repeat, as a token's do across its experts), as the layer gathers for top-2.
enum class RowSource { InPlace, Gathered };
constexpr int32_t kGatherDivisor = 2;

void testGemm(DType inputType, DType weightType, DType outputType, const GemmCase& c, RowSource source = RowSource::InPlace) {
  const bool grouped = c.experts > 0;
  const bool gathered = grouped && source == RowSource::Gathered;
  const int64_t inputRows = gathered ? c.rows / kGatherDivisor + 1 : c.rows;
  Tensor input = randomTensor(inputType, {inputRows, c.depth}, 21, 1.0f);
  Tensor gatherRows(DType::Int32, {c.rows});
  for (int64_t r = 0; gathered && r < c.rows; ++r) {
    gatherRows.ints()[r] = static_cast<int32_t>(randomBelow(25, r, static_cast<uint32_t>(inputRows * kGatherDivisor)));
  }
  Tensor weights = grouped ? randomTensor(weightType, {c.experts, c.cols, c.depth}, 22, 0.1f)
                           : randomTensor(weightType, {c.cols, c.depth}, 22, 0.1f);
  Tensor bias = grouped ? randomTensor(weightType, {c.experts, c.cols}, 23, 1.0f) : randomTensor(weightType, {c.cols}, 23, 1.0f);
  Tensor offsets = grouped ? makeOffsets(c.rows, c.experts, c.lead, c.tail, 24) : Tensor();
  const int64_t outCols = caseOutputCols(c);
  Tensor output[2] = {sentinelTensor(outputType, {c.rows, outCols}), sentinelTensor(outputType, {c.rows, outCols})};
  for (int side = 0; side < 2; ++side) {
    const bool gpu = side == 1;
    const auto view = [&](Tensor& t) { return gpu ? t.deviceView() : t.hostView(); };
    if (grouped) {
      GroupedGemmArgs args;
      args.input = view(input);
      args.weights = view(weights);
      if (gathered) {
        args.gatherRows = view(gatherRows);
        args.gatherDivisor = kGatherDivisor;
      }
      setCaseArgs(args, c, view(bias), view(offsets), view(output[side]));
      runOn(gpu, args);
    } else {
      LinearArgs args;
      args.input = view(input);
      args.weight = view(weights);
      setCaseArgs(args, c, view(bias), view(output[side]));
      runOn(gpu, args);
    }
  }
  const DType worst = leastPrecise({inputType, weightType, outputType});
  const std::string what = describe("%s M=%lld K=%lld N=%lld E=%d%s%s%s in %s w %s out %s",
                                    gathered ? "grouped gathered" : grouped ? "grouped" : "linear",
                                    static_cast<long long>(c.rows), static_cast<long long>(c.depth),
                                    static_cast<long long>(c.cols), c.experts, c.bias ? " bias" : "", activationLabel(c).c_str(),
                                    rowsHintLabel(c).c_str(), dtypeName(inputType), dtypeName(weightType), dtypeName(outputType));
  expectClose(grouped ? "groupedGemm" : "linear", inputType, what, output[1].fromDevice(), output[0], toleranceFor(worst));
}

// ---- Activation --------------------------------------------------------------------------------

void testActivation(DType inputType, DType outputType, ActivationKind kind, GateLayout layout, int64_t rows, int64_t width) {
  const bool gated = kind == ActivationKind::SwiGLU || kind == ActivationKind::GeGLU || kind == ActivationKind::GptOssSwiGLU;
  Tensor input = randomTensor(inputType, {rows, gated ? 2 * width : width}, 31, 8.0f);  // beyond the gpt-oss limit too
  Tensor output[2] = {Tensor(outputType, {rows, width}), Tensor(outputType, {rows, width})};
  for (int side = 0; side < 2; ++side) {
    const bool gpu = side == 1;
    ActivationArgs args;
    args.input = gpu ? input.deviceView() : input.hostView();
    args.output = gpu ? output[side].deviceView() : output[side].hostView();
    args.kind = kind;
    args.layout = layout;
    if (gpu) {
      cuda::activation(args, gStream);
    } else {
      cpu::activation(args);
    }
  }
  const std::string what = describe("%s %s %lldx%lld out %s", activationName(kind),
                                    layout == GateLayout::Interleaved ? "interleaved" : "halves", static_cast<long long>(rows),
                                    static_cast<long long>(width), dtypeName(outputType));
  // float32 out: libm differences only (expf/tanhf/erff against std::); else one output rounding.
  const double tolerance = outputType == DType::Float32 ? 1e-6 : toleranceFor(outputType);
  expectClose("activation", inputType, what, output[1].fromDevice(), output[0], tolerance);
}

// ---- Combine -----------------------------------------------------------------------------------
void testCombine(DType dtype, DType outputType, int64_t tokens, int64_t hidden, int32_t topK, bool shared, bool gate,
                 bool dropSome) {
  const int64_t pairs = tokens * topK;
  Tensor expertOutput = randomTensor(dtype, {pairs, hidden}, 41, 1.0f);
  Tensor weights = randomTensor(DType::Float32, {tokens, topK}, 42, 1.0f);
  Tensor toPermuted(DType::Int32, {tokens, topK});
  std::vector<int32_t> rows(pairs);
  std::iota(rows.begin(), rows.end(), 0);
  for (int64_t i = pairs - 1; i > 0; --i) std::swap(rows[i], rows[randomBelow(43, i, static_cast<uint32_t>(i + 1))]);
  for (int64_t i = 0; i < pairs; ++i) toPermuted.ints()[i] = (dropSome && i % 3 == 1) ? -1 : rows[i];
  Tensor sharedRows = randomTensor(dtype, {tokens, hidden}, 44, 1.0f);
  Tensor gateLogits = randomTensor(DType::Float32, {tokens, 1}, 45, 3.0f);
  Tensor output[2] = {Tensor(outputType, {tokens, hidden}), Tensor(outputType, {tokens, hidden})};
  for (int side = 0; side < 2; ++side) {
    const bool gpu = side == 1;
    const auto view = [&](Tensor& t) { return gpu ? t.deviceView() : t.hostView(); };
    CombineArgs args;
    args.expertOutput = view(expertOutput);
    args.topkWeights = view(weights);
    args.sourceToPermuted = view(toPermuted);
    if (shared) args.shared = view(sharedRows);
    if (shared && gate) args.sharedGateLogits = view(gateLogits);
    args.output = view(output[side]);
    if (gpu) {
      cuda::combine(args, gStream);
    } else {
      cpu::combine(args);
    }
  }
  const std::string what = describe("T=%lld H=%lld K=%d%s%s%s out %s", static_cast<long long>(tokens), static_cast<long long>(hidden),
                                    topK, shared ? " shared" : "", gate ? "+gate" : "", dropSome ? " dropped" : "",
                                    dtypeName(outputType));
  const double tolerance = outputType == DType::Float32 ? 1e-6 : toleranceFor(outputType);
  expectClose("combine", dtype, what, output[1].fromDevice(), output[0], tolerance);
}

// ---- cast and fillRandom -------------------------------------------------------------------------
void testCast(DType inputType, DType outputType, int64_t count) {
  Tensor input = inputType == DType::Int32 ? Tensor(DType::Int32, {count}) : randomTensor(inputType, {count}, 51, 70000.0f);
  if (inputType == DType::Int32) {
    for (int64_t i = 0; i < count; ++i) input.ints()[i] = static_cast<int32_t>(mixHash(52, i));
  } else {
    // Small magnitudes too (float16 subnormals and underflow).
    for (int64_t i = 0; i < count; i += 3) input.set(i, input.get(i) * 1e-9f);
  }
  Tensor output[2] = {Tensor(outputType, {count}), Tensor(outputType, {count})};
  for (int side = 0; side < 2; ++side) {
    const bool gpu = side == 1;
    CastArgs args;
    args.input = gpu ? input.deviceView() : input.hostView();
    args.output = gpu ? output[side].deviceView() : output[side].hostView();
    if (gpu) {
      cuda::cast(args, gStream);
    } else {
      cpu::cast(args);
    }
  }
  expectSameBytes("cast", inputType, describe("%lld -> %s", static_cast<long long>(count), dtypeName(outputType)),
                  output[1].fromDevice(), output[0]);
}

void testFillRandom(DType dtype, int64_t count) {
  Tensor output[2] = {Tensor(dtype, {count}), Tensor(dtype, {count})};
  for (int side = 0; side < 2; ++side) {
    const bool gpu = side == 1;
    FillRandomArgs args;
    args.output = gpu ? output[side].deviceView() : output[side].hostView();
    args.seed = 42;
    args.scale = 0.37f;
    if (gpu) {
      cuda::fillRandom(args, gStream);
    } else {
      cpu::fillRandom(args);
    }
  }
  expectSameBytes("fillRandom", dtype, describe("%lld values", static_cast<long long>(count)), output[1].fromDevice(), output[0]);
}

// ---- The CudaDevice ------------------------------------------------------------------------------
// A small MoE forward through the Device interface; temporaries come from device.allocate and go
// back with device.release, as the binding does. Writes `output` [T, H] float32.
struct ForwardWeights {
  void* w13;  // [E, 2I, H] bf16
  void* w2;   // [E, H, I] bf16
  int64_t experts, hidden, inter;
  int32_t topK;
};

void forwardThroughDevice(Device& device, const ForwardWeights& w, void* x, void* logits, int64_t tokens, void* output) {
  const int64_t pairs = tokens * w.topK, E = w.experts, H = w.hidden, I = w.inter;
  std::vector<void*> temporaries;
  const auto temporary = [&](size_t nbytes) {
    temporaries.push_back(device.allocate(nbytes));
    return temporaries.back();
  };
  const auto view = [](void* data, DType dtype, std::vector<int64_t> shape) { return TensorView{data, dtype, std::move(shape)}; };
  RoutingArgs routing;
  routing.logits = view(logits, DType::Float32, {tokens, E});
  routing.topkIds = view(temporary(pairs * 4), DType::Int32, {tokens, w.topK});
  routing.topkWeights = view(temporary(pairs * 4), DType::Float32, {tokens, w.topK});
  routing.expertCounts = view(temporary(E * 4), DType::Int32, {E});
  routing.topK = w.topK;
  routing.renormalize = true;
  device.routing(routing);
  PermuteArgs permute;
  permute.input = view(x, DType::BFloat16, {tokens, H});
  permute.topkIds = routing.topkIds;
  permute.permuted = view(temporary(pairs * H * 2), DType::BFloat16, {pairs, H});
  permute.expertOffsets = view(temporary((E + 1) * 4), DType::Int32, {E + 1});
  permute.sourceToPermuted = view(temporary(pairs * 4), DType::Int32, {tokens, w.topK});
  permute.permutedToSource = view(temporary(pairs * 4), DType::Int32, {pairs});
  permute.localExpertCount = static_cast<int32_t>(E);
  permute.totalExperts = static_cast<int32_t>(E);
  device.permute(permute);
  GroupedGemmArgs up;
  up.input = permute.permuted;
  up.weights = view(w.w13, DType::BFloat16, {E, 2 * I, H});
  up.expertOffsets = permute.expertOffsets;
  up.output = view(temporary(pairs * 2 * I * 2), DType::BFloat16, {pairs, 2 * I});
  device.groupedGemm(up);
  ActivationArgs act;
  act.input = up.output;
  act.output = view(temporary(pairs * I * 2), DType::BFloat16, {pairs, I});
  device.activation(act);
  GroupedGemmArgs down;
  down.input = act.output;
  down.weights = view(w.w2, DType::BFloat16, {E, H, I});
  down.expertOffsets = permute.expertOffsets;
  down.output = view(temporary(pairs * H * 2), DType::BFloat16, {pairs, H});
  device.groupedGemm(down);
  CombineArgs combine;
  combine.expertOutput = down.output;
  combine.topkWeights = routing.topkWeights;
  combine.sourceToPermuted = permute.sourceToPermuted;
  combine.output = view(temporary(tokens * H * 4), DType::Float32, {tokens, H});
  device.combine(combine);
  device.copy(output, combine.output.data, tokens * H * 4);
  for (void* pointer : temporaries) device.release(pointer);
}

std::vector<uint8_t> downloadAll(Device& device, const void* source, size_t nbytes) {
  std::vector<uint8_t> bytes(nbytes);
  device.download(bytes.data(), source, nbytes);
  device.waitIdle();
  return bytes;
}

void testDevice() {
  std::unique_ptr<Device> owned = cuda::makeDevice(0);
  Device& device = *owned;

  // Round trip through staging, odd size.
  {
    std::vector<uint8_t> bytes(1000003);
    for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<uint8_t>(mixHash(1, i));
    void* a = device.allocate(bytes.size());
    void* b = device.allocate(bytes.size());
    device.upload(a, bytes.data(), bytes.size());
    std::fill(bytes.begin(), bytes.end(), 0);  // upload() must have read it already
    device.copy(b, a, 1000003);
    std::vector<uint8_t> back = downloadAll(device, b, 1000003);
    bool same = true;
    for (size_t i = 0; i < back.size(); ++i) same = same && back[i] == static_cast<uint8_t>(mixHash(1, i));
    record(same, "device         upload → copy → download of 1000003 bytes");
    device.release(a);
    device.release(b);
  }

  // Many small transfers and whenIdle callbacks, in order, with the data visible in each.
  {
    constexpr int kRounds = 200;
    void* cell = device.allocate(sizeof(int32_t));
    std::vector<int32_t> seen(kRounds, -1);
    std::mutex mutex;
    std::condition_variable done;
    int fired = 0;
    bool ordered = true;
    for (int round = 0; round < kRounds; ++round) {
      device.upload(cell, &round, sizeof(round));
      device.download(&seen[round], cell, sizeof(int32_t));
      device.whenIdle([&, round](const std::string& code, const std::string&) {
        std::lock_guard<std::mutex> lock(mutex);
        ordered = ordered && code.empty() && fired == round && seen[round] == round;
        ++fired;
        done.notify_all();
      }, 0);
    }
    std::unique_lock<std::mutex> lock(mutex);
    done.wait(lock, [&] { return fired == kRounds; });
    record(ordered, "device         200 upload/download/whenIdle rounds: callbacks in order, downloads landed");
    lock.unlock();
    device.release(cell);
  }

  // A transfer larger than the staging budget (chunked, buffers recycled while it runs).
  if (!gQuick) {
    const size_t nbytes = size_t{600} << 20;
    std::vector<uint8_t> bytes(nbytes);
    for (size_t i = 0; i < nbytes; i += 4096) bytes[i] = static_cast<uint8_t>(i >> 12);
    void* big = device.allocate(nbytes);
    const auto start = std::chrono::steady_clock::now();
    device.upload(big, bytes.data(), nbytes);
    std::vector<uint8_t> back = downloadAll(device, big, nbytes);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    record(back == bytes, describe("device         600 MiB upload + download round trip (%.2f GB/s each way)", 2 * nbytes / seconds / 1e9));
    device.release(big);
  }

  // Out of memory: E_OOM, then the device still works.
  {
    std::string code;
    try {
      device.allocate(size_t{4} << 40);
    } catch (const NativeError& error) {
      code = error.code();
    }
    int32_t value = 1234, back = 0;
    void* small = device.allocate(sizeof(value));
    device.upload(small, &value, sizeof(value));
    device.download(&back, small, sizeof(back));
    device.waitIdle();
    device.release(small);
    record(code == "E_OOM" && back == 1234, "device         4 TiB allocation throws E_OOM (got '" + code + "'), device usable after");
  }

  // Graph capture of a whole forward, replayed with new inputs.
  {
    auto& capturer = dynamic_cast<cuda::CudaDevice&>(device);
    const int64_t tokens = gQuick ? 5 : 37, E = 8, H = 128, I = 72;
    ForwardWeights w{nullptr, nullptr, E, H, I, 2};
    const auto randomOnDevice = [&](DType dtype, int64_t count, uint64_t seed, float scale) {
      void* data = device.allocate(count * dtypeSize(dtype));
      FillRandomArgs fill;
      fill.output = TensorView{data, dtype, {count}};
      fill.seed = seed;
      fill.scale = scale;
      device.fillRandom(fill);
      return data;
    };
    w.w13 = randomOnDevice(DType::BFloat16, E * 2 * I * H, 61, 0.1f);
    w.w2 = randomOnDevice(DType::BFloat16, E * H * I, 62, 0.1f);
    void* x = device.allocate(tokens * H * 2);
    void* logits = device.allocate(tokens * E * 4);
    void* captured = device.allocate(tokens * H * 4);
    void* plain = device.allocate(tokens * H * 4);
    void* releasedInCapture = device.allocate(256);

    capturer.beginCapture();
    std::string uploadCode;
    try {
      int32_t value = 0;
      device.upload(x, &value, sizeof(value));
    } catch (const NativeError& error) {
      uploadCode = error.code();
    }
    forwardThroughDevice(device, w, x, logits, tokens, captured);
    device.release(releasedInCapture);  // allocated before the capture: freed after it
    std::unique_ptr<cuda::Graph> graph = capturer.endCapture();
    record(uploadCode == "E_DEVICE", "capture        upload during capture refused with E_DEVICE (got '" + uploadCode + "')");

    bool allSame = true;
    for (int replay = 0; replay < 3; ++replay) {
      Tensor hostX = randomTensor(DType::BFloat16, {tokens, H}, 70 + replay, 1.0f);
      Tensor hostLogits = randomTensor(DType::Float32, {tokens, E}, 80 + replay, 3.0f);
      device.upload(x, hostX.host.data(), hostX.nbytes());
      device.upload(logits, hostLogits.host.data(), hostLogits.nbytes());
      graph->launch();
      forwardThroughDevice(device, w, x, logits, tokens, plain);
      std::vector<uint8_t> fromGraph = downloadAll(device, captured, tokens * H * 4);
      std::vector<uint8_t> fromPlain = downloadAll(device, plain, tokens * H * 4);
      bool nonZero = false;
      for (uint8_t byte : fromPlain) nonZero = nonZero || byte != 0;
      allSame = allSame && fromGraph == fromPlain && nonZero;
    }
    record(allSame, "capture        3 replays with new inputs equal plain forwards bit for bit");
    graph.reset();
    for (void* pointer : {w.w13, w.w2, x, logits, captured, plain}) device.release(pointer);
    device.waitIdle();
  }
}

// Faults (native/core/op_args.h): kernels given bad indices stay in bounds and report under their
// op's ticket; the FailureSink hears of them at the next idle marker, graph replays included.
void testFaults() {
  std::unique_ptr<Device> owned = cuda::makeDevice(0);
  Device& device = *owned;
  std::mutex mutex;
  std::vector<OpFailure> heard;
  FailureReport last;
  device.setFailureSink([&](FailureReport report) {
    std::lock_guard<std::mutex> lock(mutex);
    for (OpFailure& failure : report.failures) heard.push_back(failure);
    last = std::move(report);
  });
  const auto take = [&] {
    std::lock_guard<std::mutex> lock(mutex);
    return std::exchange(heard, {});
  };
  const auto upload = [&](const std::vector<int32_t>& values) {
    void* data = device.allocate(values.size() * sizeof(int32_t));
    device.upload(data, values.data(), values.size() * sizeof(int32_t));
    return data;
  };
  constexpr int64_t H = 64;
  void* rows = device.allocate(8 * H * 4);
  void* out = device.allocate(8 * H * 4);

  // permute: ids 9 and -5 of 4 experts, on both sorting paths (one block, and the general one).
  for (const int64_t tokens : {int64_t{3}, int64_t{3000}}) {
    std::vector<int32_t> idValues(tokens, 1);
    idValues[1] = 9;
    idValues[tokens - 1] = -5;
    void* ids = upload(idValues);
    void* x = device.allocate(tokens * H * 4);
    void* permuted = device.allocate(tokens * H * 4);
    void* offsets = device.allocate(5 * 4);
    void* sourceToPermuted = device.allocate(tokens * 4);
    void* permutedToSource = device.allocate(tokens * 4);
    PermuteArgs permute;
    permute.ticket = 11;
    permute.input = TensorView{x, DType::Float32, {tokens, H}};
    permute.topkIds = TensorView{ids, DType::Int32, {tokens, 1}};
    permute.permuted = TensorView{permuted, DType::Float32, {tokens, H}};
    permute.expertOffsets = TensorView{offsets, DType::Int32, {5}};
    permute.sourceToPermuted = TensorView{sourceToPermuted, DType::Int32, {tokens, 1}};
    permute.permutedToSource = TensorView{permutedToSource, DType::Int32, {tokens}};
    permute.localExpertCount = permute.totalExperts = 4;
    device.permute(permute);
    device.waitIdle(11);
    const std::vector<OpFailure> failures = take();
    const bool named = failures.size() == 1 && failures[0].ticket == 11 && failures[0].code == "E_INVALID_ARGUMENT" &&
                       failures[0].message.find("permute: topkIds holds expert id") != std::string::npos;
    record(named && last.completedThrough == 11,
           describe("faults         permute of %lld pairs with ids 9 and -5: one fault under its ticket (%s)", static_cast<long long>(tokens),
                    failures.empty() ? "none" : failures[0].message.c_str()));
    for (void* pointer : {ids, x, permuted, offsets, sourceToPermuted, permutedToSource}) device.release(pointer);
  }

  // combine reading row 10^6 of 8, and a grouped GEMM whose offsets run past its rows; a clean op
  // between them reports nothing.
  void* sources = upload({0, 1000000, 2, 3, 4, 5, 6, 7});
  void* topkWeights = upload({0, 0, 0, 0, 0, 0, 0, 0});  // float zeros
  CombineArgs combine;
  combine.ticket = 21;
  combine.expertOutput = TensorView{rows, DType::Float32, {8, H}};
  combine.topkWeights = TensorView{topkWeights, DType::Float32, {4, 2}};
  combine.sourceToPermuted = TensorView{sources, DType::Int32, {4, 2}};
  combine.output = TensorView{out, DType::Float32, {4, H}};
  device.combine(combine);
  CastArgs clean;
  clean.ticket = 22;
  clean.input = TensorView{rows, DType::Float32, {8, H}};
  clean.output = TensorView{out, DType::Float32, {8, H}};
  device.cast(clean);
  void* offsets = upload({0, 2, 1, 30});
  void* weights = device.allocate(3 * 32 * H * 4);
  GroupedGemmArgs gemm;
  gemm.ticket = 23;
  gemm.input = TensorView{rows, DType::Float32, {8, H}};
  gemm.weights = TensorView{weights, DType::Float32, {3, 32, H}};
  gemm.expertOffsets = TensorView{offsets, DType::Int32, {4}};
  gemm.output = TensorView{out, DType::Float32, {8, 32}};
  device.groupedGemm(gemm);
  device.waitIdle(23);
  std::vector<OpFailure> failures = take();
  std::sort(failures.begin(), failures.end(), [](const OpFailure& a, const OpFailure& b) { return a.ticket < b.ticket; });
  record(failures.size() == 2 && failures[0].ticket == 21 && failures[1].ticket == 23 &&
             failures[0].message.find("holds row 1000000") != std::string::npos &&
             failures[1].message.find("expertOffsets[") != std::string::npos,
         describe("faults         combine row 10^6 and gemm offsets past the rows: faults under tickets 21 and 23 only (%zu heard)",
                  failures.size()));

  // A replayed graph reports under the ticket its op was captured with, on every replay.
  auto& capturer = dynamic_cast<cuda::CudaDevice&>(device);
  capturer.beginCapture();
  combine.ticket = 31;
  device.combine(combine);
  std::unique_ptr<cuda::Graph> graph = capturer.endCapture();
  bool everyReplay = true;
  for (int replay = 0; replay < 2; ++replay) {
    graph->launch();
    device.waitIdle(40 + replay);
    failures = take();
    everyReplay = everyReplay && failures.size() == 1 && failures[0].ticket == 31;
  }
  record(everyReplay, "faults         a captured combine with a bad row reports ticket 31 on each of 2 replays");

  // More failing ops than slots: the ones past the slots are known by their marks.
  for (int op = 0; op < kFaultSlots + 4; ++op) {
    combine.ticket = 100 + op;
    device.combine(combine);
  }
  device.waitIdle(200);
  failures = take();
  bool allMarked = true;
  for (int op = 0; op < kFaultSlots + 4; ++op) allMarked = allMarked && last.marked(100 + op);
  record(failures.size() == static_cast<size_t>(kFaultSlots) && allMarked && !last.marked(99) && !last.marked(200),
         describe("faults         %d failing ops between two markers: %d named, all %d marked, no other ticket (%zu heard)",
                  kFaultSlots + 4, kFaultSlots, kFaultSlots + 4, failures.size()));

  // The device works after all of it.
  int32_t value = 4321, back = 0;
  void* cell = device.allocate(sizeof(value));
  device.upload(cell, &value, sizeof(value));
  device.download(&back, cell, sizeof(back));
  device.waitIdle();
  record(back == 4321 && take().empty(), "faults         the device still works, and a clean stretch reports nothing");
  graph.reset();
  for (void* pointer : {rows, out, sources, topkWeights, offsets, weights, cell}) device.release(pointer);
  device.waitIdle();
}

// ---- Model-sized checks (their timings: bench/native/ops_bench.cu) -----------------------------
void* deviceRandom(DType dtype, int64_t count, uint64_t seed, float scale) {
  void* data;
  CUDA_OK(cudaMallocAsync(&data, count * dtypeSize(dtype), gStream));
  FillRandomArgs fill;
  fill.output = TensorView{data, dtype, {count}};
  fill.seed = seed;
  fill.scale = scale;
  cuda::fillRandom(fill, gStream);
  return data;
}

// Mixtral-8x7B expert GEMM (H 4096, I 14336, 8 experts, top-2) for `tokens` tokens: a few output
// rows of w13 checked against float64 dot products on the host.
void checkMixtralSized(DType dtype, int64_t tokens) {
  const int64_t E = 8, H = 4096, I = 14336, rows = tokens * 2;
  Tensor offsets = makeOffsets(rows, E, 0, 0, 90);
  offsets.ints()[2] = offsets.ints()[1] + 1;  // no empty expert here; expert 1 gets one row
  offsets.toDevice();
  void* x = deviceRandom(dtype, rows * H, 91, 1.0f);
  void* w13 = deviceRandom(dtype, E * 2 * I * H, 92, 0.02f);
  void* hidden;
  CUDA_OK(cudaMallocAsync(&hidden, rows * 2 * I * dtypeSize(dtype), gStream));
  GroupedGemmArgs up;
  up.input = TensorView{x, dtype, {rows, H}};
  up.weights = TensorView{w13, dtype, {E, 2 * I, H}};
  up.expertOffsets = TensorView{offsets.device, DType::Int32, {E + 1}};
  up.output = TensorView{hidden, dtype, {rows, 2 * I}};
  // Spot check: rows 0 and rows - 1 of the w13 output (experts 0 and 7) in float64.
  cuda::groupedGemm(up, gStream);
  const size_t elementBytes = dtypeSize(dtype);
  double worst = 0;
  for (int64_t row : {int64_t{0}, rows - 1}) {
    const int64_t expert = row == 0 ? 0 : E - 1;
    Tensor inputRow(dtype, {H}), weightRows(dtype, {256, H}), outputRow(dtype, {256});
    CUDA_OK(cudaMemcpyAsync(inputRow.host.data(), static_cast<uint8_t*>(x) + row * H * elementBytes, H * elementBytes,
                            cudaMemcpyDeviceToHost, gStream));
    CUDA_OK(cudaMemcpyAsync(weightRows.host.data(), static_cast<uint8_t*>(w13) + expert * 2 * I * H * elementBytes,
                            256 * H * elementBytes, cudaMemcpyDeviceToHost, gStream));
    CUDA_OK(cudaMemcpyAsync(outputRow.host.data(), static_cast<uint8_t*>(hidden) + row * 2 * I * elementBytes,
                            256 * elementBytes, cudaMemcpyDeviceToHost, gStream));
    CUDA_OK(cudaStreamSynchronize(gStream));
    double difference = 0, norm = 0;
    for (int64_t n = 0; n < 256; ++n) {
      double sum = 0;
      for (int64_t k = 0; k < H; ++k) sum += static_cast<double>(inputRow.get(k)) * weightRows.get(n * H + k);
      difference += (outputRow.get(n) - sum) * (outputRow.get(n) - sum);
      norm += sum * sum;
    }
    worst = std::max(worst, std::sqrt(difference / norm));
  }
  char line[256];
  std::snprintf(line, sizeof(line), "%-14s %-8s %-60s normRel %.3e", "groupedGemm", dtypeName(dtype),
                "Mixtral-sized w13 rows vs float64 host dot products", worst);
  record(worst <= toleranceFor(dtype), line);
  for (void* pointer : {x, w13, hidden}) CUDA_OK(cudaFreeAsync(pointer, gStream));
}

// ---- The suite ---------------------------------------------------------------------------------
// Permute's cases, alone with --permute (a run short enough for racecheck).
void testPermuteCases(DType dtype, int64_t bigTokens) {
  // Permute
  const PermuteCase permuteCases[] = {
      {1, 100, 8, 2, IdPattern::Distinct, 0, 8},
      {257, 64, 16, 4, IdPattern::Distinct, 0, 16},
      {bigTokens, 36, 256, 8, IdPattern::Distinct, 0, 256},
      {300, 7, 5, 3, IdPattern::Distinct, 0, 5},
      {100, 50, 6, 4, IdPattern::SameExpert, 0, 6},
      {257, 64, 16, 4, IdPattern::Distinct, 4, 8},  // expert parallel: pairs of other ranks dropped
      {0, 64, 8, 2, IdPattern::Distinct, 0, 8},     // no tokens
      // Decode batches take the one-block sort (up to 1024 pairs and 1024 local experts).
      {16, 2048, 128, 8, IdPattern::Distinct, 0, 128},
      {200, 64, 16, 4, IdPattern::Distinct, 4, 8},  // expert parallel, one block
      {256, 32, 1024, 4, IdPattern::Distinct, 0, 1024},
      {256, 32, 1, 4, IdPattern::SameExpert, 0, 1},  // all 1024 pairs on one expert
      {4, 32, 2048, 8, IdPattern::Distinct, 0, 2048},  // too many experts for the one-block sort
      // The smallest (up to 256 pairs, rows copied as they are) sort and gather in one launch.
      {32, 64, 16, 8, IdPattern::Distinct, 4, 8},     // 256 pairs, expert parallel: some dropped
      {33, 64, 16, 8, IdPattern::Distinct, 4, 8},     // 264 pairs: the one-block sort and a gather
      {64, 40, 1, 4, IdPattern::SameExpert, 0, 1},    // 256 pairs on one expert
      {3, 7, 5, 3, IdPattern::Distinct, 0, 5},        // odd rows: narrow copy units
      {20, 64, 2048, 8, IdPattern::Distinct, 0, 2048},  // 160 pairs, too many experts for one block
      {2, 64, 16, 8, IdPattern::Distinct, 8, 0},      // no local experts: every pair dropped
      // The general sort by chunks of 1024 pairs: up to 1024 local experts, more take one block each.
      {1025, 8, 64, 1, IdPattern::SameExpert, 0, 64},   // two chunks, the second of one pair
      {3000, 16, 1024, 4, IdPattern::Distinct, 0, 1024},
      {3000, 16, 2048, 4, IdPattern::Distinct, 1000, 1024},  // expert parallel at the most experts
      {300, 16, 1025, 4, IdPattern::Distinct, 0, 1025},
  };
  for (const PermuteCase& c : permuteCases) testPermute(dtype, c);
}

// The Hopper kernel's edges, alone with --sm90 (a run short enough for racecheck).
void testSm90Edges(DType dtype) {
  // The Hopper kernel's edges (it takes K a multiple of 8 from 64 and N a multiple of 16; its
  // tiles are 128 rows × 256 columns, or 128 outputs of gate/up pairs): row tiles straddling
  // experts (whose next expert's rows it must not write), empty experts, N and K tails, every
  // activation in both layouts, bias, untouched lead/tail rows, fewer rows than one tile.
  const GemmCase sm90Cases[] = {
      {2000, 128, 256, 64, false, 7, 5},                                // many experts, expert 1 empty
      {4000, 64, 128, 200, true, 0, 0, kSwiGLU},                         // 200 experts of ~20 rows
      {1500, 200, 272, 6, true, 3, 0},                                  // K = 3·64 + 8, N = 256 + 16
      {1500, 72, 400, 6, true, 0, 4, kSwiGLU},                           // gated halves of 200 (128 + 72)
      {1500, 136, 336, 6, true, 2, 2, kGptOss, GateLayout::Interleaved},  // 168 outputs: 128 + 40
      {1500, 128, 400, 5, true, 0, 0, kGeGLU, GateLayout::Interleaved},
      {1500, 128, 400, 5, true, 0, 0, kGptOss},
      {1500, 128, 400, 5, false, 0, 0, kGeGLU},
      {1500, 128, 272, 5, true, 0, 0, kGELU},
      {1500, 128, 272, 5, false, 0, 0, kReLU},
      {1500, 128, 272, 5, true, 1, 1, kSiLU},
      {100, 256, 512, 2, true, 3, 3, kSwiGLU},                           // fewer rows than one tile
      {gQuick ? 1200 : 5000, 1024, 768, 8, false, 0, 0, kSwiGLU},        // longer K, several N tiles
      // Dense projections too many rows for the skinny kernel run as one expert without offsets.
      {1000, 512, 384, 0, true, 0, 0},
      {300, 200, 272, 0, false, 0, 0},
  };
  for (const GemmCase& c : sm90Cases) {
    testGemm(dtype, dtype, DType::Float32, c);
    if (dtype != DType::Float32) testGemm(dtype, dtype, dtype, c);
    if (c.experts > 0) testGemm(dtype, dtype, dtype, c, RowSource::Gathered);
  }
}

void runOpTests() {
  const int64_t bigTokens = gQuick ? 300 : 20000;
  for (DType dtype : kFloatDTypes) {
    // Routing
    const RoutingCase routingCases[] = {
        {1, 8, 2, RoutingMethod::SoftmaxTopK, true, 1, 1, 1.0f, false, false},
        {257, 64, 8, RoutingMethod::SoftmaxTopK, false, 1, 1, 1.0f, false, false},
        {bigTokens, 128, 8, RoutingMethod::SoftmaxTopK, true, 1, 1, 1.0f, false, false},
        {257, 64, 8, RoutingMethod::SoftmaxTopK, true, 1, 1, 1.0f, false, true},
        {33, 32, 32, RoutingMethod::SoftmaxTopK, true, 1, 1, 1.0f, false, false},
        {257, 16, 4, RoutingMethod::TopKSoftmax, false, 1, 1, 1.0f, false, false},
        {257, 60, 4, RoutingMethod::TopKSoftmax, false, 1, 1, 1.0f, false, true},
        {bigTokens, 256, 8, RoutingMethod::SigmoidGroupTopK, true, 8, 4, 2.5f, true, false},
        {257, 64, 6, RoutingMethod::SigmoidGroupTopK, false, 1, 1, 1.0f, true, false},
        {257, 64, 4, RoutingMethod::SigmoidGroupTopK, true, 4, 2, 2.5f, true, true},
        {5, 8, 2, RoutingMethod::SigmoidGroupTopK, true, 4, 1, 1.0f, false, false},  // K = the eligible experts
        {100, 512, 8, RoutingMethod::SoftmaxTopK, true, 1, 1, 1.0f, false, false},
        // NaN below every number, -0 tied with +0 (weights stay finite: no NaN is ever chosen).
        {257, 64, 4, RoutingMethod::TopKSoftmax, false, 1, 1, 1.0f, false, true, true},
        {257, 256, 8, RoutingMethod::SigmoidGroupTopK, true, 8, 4, 2.5f, true, false, true},
        {33, 200, 6, RoutingMethod::TopKSoftmax, false, 1, 1, 1.0f, false, true, true},
    };
    for (const RoutingCase& c : routingCases) testRouting(dtype, c);

    testPermuteCases(dtype, bigTokens);

    // Grouped GEMM and linear, output float32 and the input dtype.
    const GemmCase gemmCases[] = {
        {8, 100, 72, 8, false, 0, 0},     // 1 token × top-8 (decode)
        {1028, 100, 72, 8, true, 3, 5},   // gate/up of H=100, I=36; untouched lead/tail rows
        {1028, 36, 100, 8, false, 0, 0},  // down of I=36
        {2056, 64, 511, 16, true, 0, 7},
        {1000, 511, 257, 4, false, 0, 0},
        {gQuick ? 600 : 40000, 128, 96, 64, false, 0, 0},
        {1, 100, 36, 0, true, 0, 0},  // linear
        {257, 64, 511, 0, false, 0, 0},
        {bigTokens, 36, 100, 0, true, 0, 0},
        {130, 0, 20, 0, true, 0, 0},  // K = 0: bias only
    };
    for (const GemmCase& c : gemmCases) {
      testGemm(dtype, dtype, DType::Float32, c);
      if (dtype != DType::Float32) testGemm(dtype, dtype, dtype, c);
      if (c.experts > 0) testGemm(dtype, dtype, dtype, c, RowSource::Gathered);
    }
    if (!gQuick) testGemm(dtype, dtype, DType::Float32, GemmCase{2048, 4096, 512, 8, true, 0, 0});  // long K

    // Linear with a few rows (the router at decode: the skinny kernel for bfloat16/float16):
    // N not a multiple of its 4 columns, K not a multiple of a warp's 256, rows across row groups.
    const GemmCase skinnyCases[] = {
        {1, 4096, 8, 0, false, 0, 0},
        {7, 2048, 128, 0, true, 0, 0},
        {64, 7168, 256, 0, false, 0, 0},
        {33, 200, 22, 0, true, 0, 0},
        {16, 8, 3, 0, true, 0, 0},
        {gQuick ? 1027 : 16387, 4096, 8, 0, true, 0, 0},  // narrow: any number of rows (Mixtral's router)
        {300, 520, 12, 0, false, 0, 0},
        // A shared expert at decode: over 16 MB of 16-bit weights for a few rows go to small_m.
        {1, 2048, 4608, 0, true, 0, 0},
        {16, 2048, 4608, 0, false, 0, 0},
    };
    for (const GemmCase& c : skinnyCases) {
      testGemm(dtype, dtype, DType::Float32, c);
      if (dtype != DType::Float32) testGemm(dtype, dtype, dtype, c);
    }

    // Shapes the Hopper and decode kernels take (K a multiple of 64, N of 128), fused activations,
    // experts with no rows, untouched lead/tail rows, and the decode hint.
    const GemmCase fastPathCases[] = {
        {3000, 256, 384, 8, false, 0, 0},
        {3000, 256, 384, 8, true, 5, 9, kSwiGLU},
        {3000, 256, 384, 8, false, 0, 0, kGptOss, GateLayout::Interleaved},
        {3000, 256, 384, 8, false, 0, 0, kGeGLU},
        {3000, 256, 384, 8, false, 0, 0, kSiLU},
        {gQuick ? 1000 : 9000, 1024, 512, 64, false, 3, 0, kSwiGLU},  // many experts, some empty
        {1100, 192, 256, 128, false, 0, 0},
        {8, 512, 768, 8, false, 0, 0, kSwiGLU, GateLayout::Halves, 1},  // decode: 1 token, top-8
        {8, 512, 512, 8, true, 0, 0, -1, GateLayout::Halves, 1},
        {64, 512, 768, 8, false, 0, 2, kSwiGLU, GateLayout::Halves, 16},  // 16 tokens
        {16, 1024, 256, 8, false, 0, 0, -1, GateLayout::Halves, 2},  // the hint is only a hint: rows exceed it
        {300, 512, 256, 4, false, 0, 0, kSwiGLU, GateLayout::Halves, 300},
        {200, 100, 72, 4, false, 0, 0, kSwiGLU},  // shapes no fast path takes fall back
        // K a multiple of 8 but not of 32 or 64: lanes of one vector load end on both sides of K.
        {40, 72, 128, 8, true, 0, 3, -1, GateLayout::Halves, 4},
        {24, 200, 96, 4, false, 2, 0, kSwiGLU, GateLayout::Interleaved, 8},
        {70, 136, 64, 2, false, 0, 0, -1, GateLayout::Halves, 64},  // one expert has over 32 rows: two passes
    };
    for (const GemmCase& c : fastPathCases) {
      testGemm(dtype, dtype, DType::Float32, c);
      if (dtype != DType::Float32) testGemm(dtype, dtype, dtype, c);
      if (c.experts > 0) testGemm(dtype, dtype, dtype, c, RowSource::Gathered);
    }

    testSm90Edges(dtype);

    // Activation
    for (ActivationKind kind : {ActivationKind::SwiGLU, ActivationKind::GeGLU, ActivationKind::GptOssSwiGLU}) {
      for (GateLayout layout : {GateLayout::Halves, GateLayout::Interleaved}) {
        testActivation(dtype, DType::Float32, kind, layout, 33, 70);
        testActivation(dtype, dtype, kind, layout, 257, 511);
      }
    }
    for (ActivationKind kind : {ActivationKind::SiLU, ActivationKind::GELU, ActivationKind::ReLU}) {
      testActivation(dtype, DType::Float32, kind, GateLayout::Halves, 33, 70);
      testActivation(dtype, dtype, kind, GateLayout::Halves, 257, 36);
    }

    // Combine
    testCombine(dtype, DType::Float32, 1, 100, 2, false, false, false);
    testCombine(dtype, dtype, 257, 64, 4, true, false, false);
    testCombine(dtype, DType::Float32, 257, 64, 4, true, true, true);
    testCombine(dtype, DType::Float32, bigTokens, 36, 8, true, true, false);
    // Rows of whole 16-byte chunks (the vector path) over several blocks: a decode token of a wide layer.
    testCombine(dtype, dtype, 3, 7168, 8, true, false, true);
    testCombine(dtype, DType::Float32, 2, 4104, 9, true, true, false);

    // cast and fillRandom
    for (DType target : kFloatDTypes) testCast(dtype, target, 1001);
    testFillRandom(dtype, 1001);
    testFillRandom(dtype, gQuick ? 4099 : (1 << 22) + 3);
  }
  // Mixed dtypes: float32 input with 16-bit weights and the reverse (SIMT path).
  testGemm(DType::Float32, DType::BFloat16, DType::Float32, GemmCase{1028, 100, 72, 8, true, 2, 2});
  testGemm(DType::BFloat16, DType::Float32, DType::BFloat16, GemmCase{257, 64, 511, 0, true, 0, 0});
  testGemm(DType::Float16, DType::BFloat16, DType::Float32, GemmCase{300, 36, 100, 4, false, 0, 0});
  testCast(DType::Int32, DType::Int32, 1001);
}

}  // namespace

int main(int argc, char** argv) {
  bool fp8Only = false;
  bool wqOnly = false;
  bool sm90Only = false;
  bool permuteOnly = false;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--quick") == 0) gQuick = true;
    if (std::strcmp(argv[i], "--sm90") == 0) sm90Only = gQuick = true;
    if (std::strcmp(argv[i], "--permute") == 0) permuteOnly = gQuick = true;
    if (std::strcmp(argv[i], "--fp8") == 0) fp8Only = true;
    if (std::strcmp(argv[i], "--wq") == 0) wqOnly = true;
  }
  const int devices = cuda::deviceCount();
  const char* forced = std::getenv("MOEKIT_GEMM");
  std::printf("moekit CUDA harness: %d device(s)%s%s, MOEKIT_GEMM=%s\n", devices, gQuick ? ", quick mode" : "",
              wqOnly ? ", weight-only only" : fp8Only ? ", FP8 only" : "", forced != nullptr ? forced : "(auto)");
  if (devices == 0) {
    std::printf("no CUDA device: only deviceCount() == 0 was checked\n");
    return 0;
  }
  const cuda::DeviceInfo info = cuda::deviceInfo(0);
  std::printf("cuda:0 %s, sm_%d%d, %d SMs, %.1f GiB\n", info.name.c_str(), info.major, info.minor, info.multiprocessors,
              info.totalMemory / 1073741824.0);
  try {
    CUDA_OK(cudaSetDevice(0));
    CUDA_OK(cudaStreamCreateWithFlags(&gStream, cudaStreamNonBlocking));
    if (sm90Only || permuteOnly) {
      if (sm90Only) testSm90Edges(DType::BFloat16);
      if (permuteOnly) testPermuteCases(DType::BFloat16, 300);
      fp8Only = true;  // nothing else below
    } else if (wqOnly) {
      runWeightOnlyTests();
      fp8Only = true;  // nothing else below
    } else {
      if (!fp8Only) runOpTests();
      runFp8Tests();
      if (!fp8Only) runWeightOnlyTests();
    }
    if (!fp8Only) {
      testDevice();
      testFaults();
    }
    if (!gQuick && !fp8Only) {
      checkMixtralSized(DType::BFloat16, 8192);
      checkMixtralSized(DType::BFloat16, 20000);
      checkMixtralSized(DType::Float16, 20000);
      checkMixtralSized(DType::Float32, 8192);
    }
    CUDA_OK(cudaStreamSynchronize(gStream));
  } catch (const NativeError& error) {
    std::printf("FAIL  aborted by %s: %s\n", error.code().c_str(), error.what());
    return 1;
  }

  std::printf("\nworst norm-relative error per op and input dtype (inf: a bit-exact check failed):\n");
  for (const auto& [key, error] : gWorstNormError) std::printf("  %-28s %.3e\n", key.c_str(), error);
  std::printf("\n%d checks, %d failed: %s\n", gChecks, gFailures, gFailures == 0 ? "PASS" : "FAIL");
  return gFailures == 0 ? 0 : 1;
}
