#include "graphs.h"

#include <memory>

#include "device_registry.h"
#include "js_errors.h"
#if MOEKIT_WITH_CUDA
#include "cuda/cuda_device.h"
#endif

namespace moekit::binding {
namespace {

#if MOEKIT_WITH_CUDA

cuda::CudaDevice& cudaDeviceFor(Napi::Env env, const Napi::Value& value) {
  if (!value.IsNumber()) throwJsError(env, "E_INVALID_ARGUMENT", "capture: expected a device index");
  const int index = value.As<Napi::Number>().Int32Value();
  if (index < 0) throwJsError(env, "E_DEVICE", "graph capture needs a CUDA device, not the CPU");
  return translateErrors(env, [&]() -> cuda::CudaDevice& { return dynamic_cast<cuda::CudaDevice&>(deviceFor(index)); });
}

// The JS handle of a captured graph; the finalizer destroys a graph that was never released.
class GraphHandle : public Napi::ObjectWrap<GraphHandle> {
 public:
  static Napi::FunctionReference* constructor;

  static void Register(Napi::Env env) {
    Napi::Function ctor = DefineClass(env, "Graph", {
      InstanceMethod<&GraphHandle::Launch>("launch"),
      InstanceMethod<&GraphHandle::Release>("release"),
    });
    constructor = new Napi::FunctionReference(Napi::Persistent(ctor));
  }

  static Napi::Object Wrap(std::unique_ptr<cuda::Graph> graph) {
    Napi::Object object = constructor->New({});
    Napi::ObjectWrap<GraphHandle>::Unwrap(object)->graph_ = std::move(graph);
    return object;
  }

  explicit GraphHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<GraphHandle>(info) {}

 private:
  void Launch(const Napi::CallbackInfo& info) {
    if (!graph_) throwJsError(info.Env(), "E_DISPOSED", "the captured graph was released");
    translateErrors(info.Env(), [&] { graph_->launch(); });
  }

  void Release(const Napi::CallbackInfo&) { graph_.reset(); }

  std::unique_ptr<cuda::Graph> graph_;
};

Napi::FunctionReference* GraphHandle::constructor = nullptr;

void BeginCapture(const Napi::CallbackInfo& info) {
  cuda::CudaDevice& device = cudaDeviceFor(info.Env(), info[0]);
  translateErrors(info.Env(), [&] { device.beginCapture(); });
}

Napi::Value EndCapture(const Napi::CallbackInfo& info) {
  cuda::CudaDevice& device = cudaDeviceFor(info.Env(), info[0]);
  std::unique_ptr<cuda::Graph> graph = translateErrors(info.Env(), [&] { return device.endCapture(); });
  return GraphHandle::Wrap(std::move(graph));
}

#else

void BeginCapture(const Napi::CallbackInfo& info) {
  throwJsError(info.Env(), "E_DEVICE", "graph capture needs a CUDA device; this build of moekit has no CUDA backend");
}

Napi::Value EndCapture(const Napi::CallbackInfo& info) {
  throwJsError(info.Env(), "E_DEVICE", "graph capture needs a CUDA device; this build of moekit has no CUDA backend");
}

#endif

}  // namespace

void RegisterGraphs(Napi::Env env, Napi::Object exports) {
#if MOEKIT_WITH_CUDA
  GraphHandle::Register(env);
#endif
  exports.Set("beginCapture", Napi::Function::New<BeginCapture>(env, "beginCapture"));
  exports.Set("endCapture", Napi::Function::New<EndCapture>(env, "endCapture"));
}

}  // namespace moekit::binding
