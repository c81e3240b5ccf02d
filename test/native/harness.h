// What the native CUDA harness's files share (cuda_ops_test.cu, fp8_ops_test.cu): host tensors
// with a device copy, random and sentinel contents, the checks against the CPU reference and their
// tally, and the shapes every GEMM test draws from.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <map>
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
#include "cuda/kernels.h"

namespace moekit::harness {

inline bool gQuick = false;
inline int gChecks = 0;
inline int gFailures = 0;
inline cudaStream_t gStream = nullptr;
inline std::map<std::string, double> gWorstNormError;  // "op dtype" -> worst norm-relative error

#define CUDA_OK(call) ::moekit::cuda::checkCuda((call), #call, __FILE__, __LINE__)

inline const DType kFloatDTypes[] = {DType::Float32, DType::Float16, DType::BFloat16};

// Norm-relative tolerance against the CPU, by the least precise dtype involved (float32
// accumulation on both sides, so the gap is rounding of inputs/outputs and summation order).
inline double toleranceFor(DType dtype) {
  switch (dtype) {
    case DType::Float16: return 2e-3;
    case DType::BFloat16: return 1e-2;
    default: return 1e-5;
  }
}

inline DType leastPrecise(std::initializer_list<DType> dtypes) {
  DType worst = DType::Float32;
  for (DType dtype : dtypes) {
    if (dtype == DType::BFloat16 || (dtype == DType::Float16 && worst == DType::Float32)) worst = dtype;
  }
  return worst;
}

// ---- Tensors: host bytes plus an optional device copy --------------------------------------------
struct Tensor {
  DType dtype = DType::Float32;
  std::vector<int64_t> shape;
  std::vector<uint8_t> host;
  void* device = nullptr;

  Tensor() = default;
  Tensor(DType type, std::vector<int64_t> dims) : dtype(type), shape(std::move(dims)), host(nbytes(), 0) {}
  Tensor(Tensor&& other) noexcept { *this = std::move(other); }
  Tensor& operator=(Tensor&& other) noexcept {
    std::swap(dtype, other.dtype);
    std::swap(shape, other.shape);
    std::swap(host, other.host);
    std::swap(device, other.device);
    return *this;
  }
  ~Tensor() {
    if (device != nullptr) cudaFreeAsync(device, gStream);
  }

  int64_t numel() const {
    int64_t count = 1;
    for (int64_t extent : shape) count *= extent;
    return count;
  }
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtypeSize(dtype); }

  float get(int64_t i) const {
    uint16_t half;
    switch (dtype) {
      case DType::Float16: std::memcpy(&half, host.data() + 2 * i, 2); return float16ToFloat(half);
      case DType::BFloat16: std::memcpy(&half, host.data() + 2 * i, 2); return bfloat16ToFloat(half);
      case DType::Int32: return static_cast<float>(reinterpret_cast<const int32_t*>(host.data())[i]);
      case DType::Float8E4M3: return float8e4m3ToFloat(host[i]);
      case DType::UInt8: return host[i];
      default: return reinterpret_cast<const float*>(host.data())[i];
    }
  }
  void set(int64_t i, float value) {
    uint16_t half;
    switch (dtype) {
      case DType::Float16: half = floatToFloat16(value); std::memcpy(host.data() + 2 * i, &half, 2); return;
      case DType::BFloat16: half = floatToBfloat16(value); std::memcpy(host.data() + 2 * i, &half, 2); return;
      case DType::Int32: reinterpret_cast<int32_t*>(host.data())[i] = static_cast<int32_t>(value); return;
      case DType::Float8E4M3: host[i] = floatToFloat8e4m3(value); return;
      case DType::UInt8: host[i] = static_cast<uint8_t>(value); return;
      default: reinterpret_cast<float*>(host.data())[i] = value; return;
    }
  }
  int32_t* ints() { return reinterpret_cast<int32_t*>(host.data()); }

  TensorView hostView() { return TensorView{host.data(), dtype, shape}; }
  TensorView deviceView() {
    toDevice();
    return TensorView{device, dtype, shape};
  }
  // Allocates (once) and copies the host bytes to the device.
  void toDevice() {
    if (device == nullptr) CUDA_OK(cudaMallocAsync(&device, std::max<size_t>(nbytes(), 1), gStream));
    if (nbytes() > 0) CUDA_OK(cudaMemcpyAsync(device, host.data(), nbytes(), cudaMemcpyHostToDevice, gStream));
  }
  // The device bytes (waits for the stream).
  Tensor fromDevice() const {
    Tensor copy(dtype, shape);
    if (nbytes() > 0) CUDA_OK(cudaMemcpyAsync(copy.host.data(), device, nbytes(), cudaMemcpyDeviceToHost, gStream));
    CUDA_OK(cudaStreamSynchronize(gStream));
    return copy;
  }
};

inline Tensor randomTensor(DType dtype, std::vector<int64_t> shape, uint64_t seed, float scale) {
  Tensor tensor(dtype, std::move(shape));
  for (int64_t i = 0; i < tensor.numel(); ++i) tensor.set(i, scale * (2.0f * uniformHash(seed, i) - 1.0f));
  return tensor;
}

// Every byte set to the same pattern: outputs start equal on both sides, so rows an op must leave
// untouched are checked too.
inline Tensor sentinelTensor(DType dtype, std::vector<int64_t> shape) {
  Tensor tensor(dtype, std::move(shape));
  std::fill(tensor.host.begin(), tensor.host.end(), uint8_t{0x3c});
  return tensor;
}

inline uint32_t randomBelow(uint64_t seed, uint64_t index, uint32_t bound) {
  return static_cast<uint32_t>(mixHash(seed, index) % bound);
}

// ---- Checks ------------------------------------------------------------------------------------
struct ErrorStats {
  double maxAbs = 0;
  double maxRel = 0;   // over elements with |expected| above 1e-3 of the largest
  double normRel = 0;  // ||gpu - cpu|| / ||cpu||
  bool finite = true;
};

inline ErrorStats compare(const Tensor& gpu, const Tensor& cpu) {
  ErrorStats stats;
  double difference = 0, norm = 0, largest = 0;
  for (int64_t i = 0; i < cpu.numel(); ++i) largest = std::max(largest, std::fabs(static_cast<double>(cpu.get(i))));
  for (int64_t i = 0; i < cpu.numel(); ++i) {
    const double expected = cpu.get(i), actual = gpu.get(i);
    if (!std::isfinite(actual) && std::isfinite(expected)) stats.finite = false;
    const double error = std::fabs(actual - expected);
    stats.maxAbs = std::max(stats.maxAbs, error);
    if (std::fabs(expected) > 1e-3 * largest && expected != 0) stats.maxRel = std::max(stats.maxRel, error / std::fabs(expected));
    difference += error * error;
    norm += expected * expected;
  }
  stats.normRel = norm > 0 ? std::sqrt(difference / norm) : std::sqrt(difference);
  return stats;
}

inline void record(bool passed, const std::string& line) {
  ++gChecks;
  if (!passed) ++gFailures;
  std::printf("%s  %s\n", passed ? "PASS" : "FAIL", line.c_str());
  std::fflush(stdout);
}

inline void expectClose(const std::string& op, DType dtype, const std::string& what, const Tensor& gpu, const Tensor& cpu,
                 double tolerance) {
  const ErrorStats stats = compare(gpu, cpu);
  const std::string key = op + " " + dtypeName(dtype);
  gWorstNormError[key] = std::max(gWorstNormError[key], stats.normRel);
  char line[512];
  std::snprintf(line, sizeof(line), "%-14s %-8s %-60s maxAbs %.3e maxRel %.3e normRel %.3e (tol %.0e)", op.c_str(),
                dtypeName(dtype), what.c_str(), stats.maxAbs, stats.maxRel, stats.normRel, tolerance);
  record(stats.finite && stats.normRel <= tolerance, line);
}

inline void expectSameBytes(const std::string& op, DType dtype, const std::string& what, const Tensor& gpu, const Tensor& cpu) {
  int64_t firstDifference = -1;
  const size_t elementBytes = dtypeSize(cpu.dtype);
  for (size_t i = 0; i < cpu.host.size(); ++i) {
    if (gpu.host[i] != cpu.host[i]) {
      firstDifference = static_cast<int64_t>(i / elementBytes);
      break;
    }
  }
  const std::string key = op + " " + dtypeName(dtype);
  gWorstNormError.emplace(key, 0.0);
  if (firstDifference >= 0) gWorstNormError[key] = INFINITY;
  char line[512];
  if (firstDifference < 0) {
    std::snprintf(line, sizeof(line), "%-14s %-8s %-60s identical", op.c_str(), dtypeName(dtype), what.c_str());
  } else {
    std::snprintf(line, sizeof(line), "%-14s %-8s %-60s differs first at element %lld: gpu %g cpu %g", op.c_str(),
                  dtypeName(dtype), what.c_str(), static_cast<long long>(firstDifference), gpu.get(firstDifference),
                  cpu.get(firstDifference));
  }
  record(firstDifference < 0, line);
}

inline std::string describe(const char* format, ...) __attribute__((format(printf, 1, 2)));
inline std::string describe(const char* format, ...) {
  char buffer[256];
  va_list arguments;
  va_start(arguments, format);
  std::vsnprintf(buffer, sizeof(buffer), format, arguments);
  va_end(arguments);
  return buffer;
}

// ---- Routings and offsets ----------------------------------------------------------------------
enum class IdPattern {
  Distinct,     // K distinct experts per token, one expert never chosen
  SameExpert,   // every slot of a token picks the same expert
};

inline Tensor makeIds(int64_t tokens, int32_t topK, int32_t experts, IdPattern pattern, uint64_t seed) {
  Tensor ids(DType::Int32, {tokens, topK});
  const int32_t unused = experts > topK ? experts / 2 : -1;
  std::vector<int32_t> choices;
  for (int64_t t = 0; t < tokens; ++t) {
    if (pattern == IdPattern::SameExpert) {
      for (int32_t j = 0; j < topK; ++j) ids.ints()[t * topK + j] = static_cast<int32_t>(t % experts);
      continue;
    }
    choices.clear();
    for (int32_t e = 0; e < experts; ++e) {
      if (e != unused) choices.push_back(e);
    }
    for (int32_t j = 0; j < topK; ++j) {  // partial Fisher-Yates
      const uint32_t pick = j + randomBelow(seed, t * topK + j, static_cast<uint32_t>(choices.size() - j));
      std::swap(choices[j], choices[pick]);
      ids.ints()[t * topK + j] = choices[j];
    }
  }
  return ids;
}

// Offsets splitting rows [lead, rows - tail) among experts at random, expert 1 left empty.
inline Tensor makeOffsets(int64_t rows, int32_t experts, int64_t lead, int64_t tail, uint64_t seed) {
  Tensor offsets(DType::Int32, {experts + 1});
  std::vector<double> shares(experts);
  for (int32_t e = 0; e < experts; ++e) shares[e] = (e == 1 && experts > 2) ? 0.0 : 0.2 + uniformHash(seed, e);
  const double total = std::accumulate(shares.begin(), shares.end(), 0.0);
  const int64_t usable = rows - lead - tail;
  double running = 0;
  offsets.ints()[0] = static_cast<int32_t>(lead);
  for (int32_t e = 0; e < experts; ++e) {
    running += shares[e];
    offsets.ints()[e + 1] = static_cast<int32_t>(lead + (e + 1 == experts ? usable : static_cast<int64_t>(usable * running / total)));
  }
  return offsets;
}

inline const char* activationName(ActivationKind kind) {
  const char* names[] = {"swiglu", "geglu", "gptoss_swiglu", "silu", "gelu", "relu"};
  return names[static_cast<int>(kind)];
}

// GemmCase's activation field for each kind (its ActivationKind as an int; -1 is none).
constexpr int kSwiGLU = static_cast<int>(ActivationKind::SwiGLU);
constexpr int kGeGLU = static_cast<int>(ActivationKind::GeGLU);
constexpr int kGptOss = static_cast<int>(ActivationKind::GptOssSwiGLU);
constexpr int kSiLU = static_cast<int>(ActivationKind::SiLU);
constexpr int kGELU = static_cast<int>(ActivationKind::GELU);
constexpr int kReLU = static_cast<int>(ActivationKind::ReLU);

struct GemmCase {
  int64_t rows, depth, cols;
  int32_t experts;  // 0: linear
  bool bias;
  int64_t lead, tail;  // grouped: rows before offsets[0] and after offsets[E] (left untouched)
  int activation = -1;  // grouped: an ActivationKind fused after the product, or -1 for none
  GateLayout layout = GateLayout::Halves;
  int64_t maxRowsPerExpert = 0;  // grouped: the kernel-picking hint (0: none)
};

// ---- What every GEMM check takes from its case ----------------------------------------------------
inline bool caseActivated(const GemmCase& c) { return c.experts > 0 && c.activation >= 0; }
inline ActivationKind caseActivation(const GemmCase& c) { return static_cast<ActivationKind>(c.activation); }
// Output columns: half of N for a gated activation.
inline int64_t caseOutputCols(const GemmCase& c) {
  return caseActivated(c) && isGated(caseActivation(c)) ? c.cols / 2 : c.cols;
}

// The grouped call's case-given parts: bias (where the case has one), offsets, output, rows hint,
// activation. The operands and their format are each test's own.
inline void setCaseArgs(GroupedGemmArgs& args, const GemmCase& c, const TensorView& bias, const TensorView& offsets,
                        const TensorView& output) {
  if (c.bias) args.bias = bias;
  args.expertOffsets = offsets;
  args.output = output;
  args.maxRowsPerExpert = c.maxRowsPerExpert;
  if (caseActivated(c)) {
    args.activation.enabled = true;
    args.activation.kind = caseActivation(c);
    args.activation.layout = c.layout;
  }
}
inline void setCaseArgs(LinearArgs& args, const GemmCase& c, const TensorView& bias, const TensorView& output) {
  if (c.bias) args.bias = bias;
  args.output = output;
}

// The call on the GPU (on gStream) or on the CPU backend, the reference.
inline void runOn(bool gpu, const GroupedGemmArgs& args) {
  if (gpu) {
    cuda::groupedGemm(args, gStream);
  } else {
    cpu::groupedGemm(args);
  }
}
inline void runOn(bool gpu, const LinearArgs& args) {
  if (gpu) {
    cuda::linear(args, gStream);
  } else {
    cpu::linear(args);
  }
}

// " +kind" (and "(interleaved)") for an activated case, "" otherwise: part of a check's name.
inline std::string activationLabel(const GemmCase& c) {
  if (!caseActivated(c)) return "";
  return describe(" +%s%s", activationName(caseActivation(c)), c.layout == GateLayout::Interleaved ? "(interleaved)" : "");
}
// " maxRows=N" where the case gives the hint.
inline std::string rowsHintLabel(const GemmCase& c) {
  return c.maxRowsPerExpert > 0 ? describe(" maxRows=%lld", static_cast<long long>(c.maxRowsPerExpert)) : "";
}

// The FP8 half of the op tests (fp8_ops_test.cu).
void runFp8Tests();
// The weight-only tests (weight_only_test.cu).
void runWeightOnlyTests();

}  // namespace moekit::harness
