#include "codes.h"

#include <cstdint>
#include <initializer_list>
#include <utility>

#include "core/dtype.h"
#include "core/op_args.h"

namespace moekit::binding {
namespace {

template <typename Enum>
using Names = std::initializer_list<std::pair<const char*, Enum>>;

constexpr Names<ActivationKind> kActivations = {
    {"swiglu", ActivationKind::SwiGLU}, {"geglu", ActivationKind::GeGLU}, {"gptoss_swiglu", ActivationKind::GptOssSwiGLU},
    {"silu", ActivationKind::SiLU},     {"gelu", ActivationKind::GELU},   {"relu", ActivationKind::ReLU}};

template <typename Enum>
Napi::Object table(Napi::Env env, Names<Enum> entries) {
  Napi::Object result = Napi::Object::New(env);
  for (const auto& [name, value] : entries) result.Set(name, static_cast<int32_t>(value));
  return result;
}

Napi::Array gatedActivations(Napi::Env env) {
  Napi::Array gated = Napi::Array::New(env);
  uint32_t next = 0;
  for (const auto& [name, kind] : kActivations) {
    if (isGated(kind)) gated.Set(next++, name);
  }
  return gated;
}

}  // namespace

void RegisterCodes(Napi::Env env, Napi::Object exports) {
  Napi::Object codes = Napi::Object::New(env);
  codes.Set("dtype", table<DType>(env, {{"float32", DType::Float32}, {"float16", DType::Float16}, {"bfloat16", DType::BFloat16},
                                        {"int32", DType::Int32}, {"float8_e4m3", DType::Float8E4M3}, {"uint8", DType::UInt8}}));
  codes.Set("routingMethod", table<RoutingMethod>(env, {{"softmax_topk", RoutingMethod::SoftmaxTopK},
                                                        {"topk_softmax", RoutingMethod::TopKSoftmax},
                                                        {"sigmoid_group_topk", RoutingMethod::SigmoidGroupTopK}}));
  codes.Set("activation", table(env, kActivations));
  codes.Set("gatedActivations", gatedActivations(env));
  codes.Set("gateLayout", table<GateLayout>(env, {{"halves", GateLayout::Halves}, {"interleaved", GateLayout::Interleaved}}));
  codes.Set("weightFormat", table<WeightFormat>(env, {{"dense", WeightFormat::Dense}, {"fp8_block128", WeightFormat::Fp8Block128},
                                                      {"int8", WeightFormat::Int8}, {"int4", WeightFormat::Int4},
                                                      {"mxfp4", WeightFormat::Mxfp4}}));
  exports.Set("codes", codes);
}

}  // namespace moekit::binding
