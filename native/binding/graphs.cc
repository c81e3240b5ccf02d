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

  static Napi::Object Wrap(std::unique_ptr<cuda::Graph> graph, int device, GraphHistory history) {
    Napi::Object object = constructor->New({});
    GraphHandle* handle = Napi::ObjectWrap<GraphHandle>::Unwrap(object);
    handle->graph_ = std::move(graph);
    handle->device_ = device;
    handle->history_ = std::move(history);
    return object;
  }

  explicit GraphHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<GraphHandle>(info) {}

 private:
  void Launch(const Napi::CallbackInfo& info) {
    if (!graph_) throwJsError(info.Env(), "E_DISPOSED", "the captured graph was released");
    translateErrors(info.Env(), [&] {
      OpLedger& ledger = ledgerFor(device_);
      auto lock = ledger.enqueueLock();
      ledger.recordLaunch(history_);
      graph_->launch();
    });
  }

  void Release(const Napi::CallbackInfo&) {
    graph_.reset();
    history_ = GraphHistory{};
  }

  std::unique_ptr<cuda::Graph> graph_;
  int device_ = 0;
  GraphHistory history_;  // what each replay reads and writes (op_ledger.h)
};

Napi::FunctionReference* GraphHandle::constructor = nullptr;

// While capturing, the ledger collects what the graph's ops read and write instead of recording
// them: they run only when the graph is replayed.
void BeginCapture(const Napi::CallbackInfo& info) {
  cuda::CudaDevice& device = cudaDeviceFor(info.Env(), info[0]);
  translateErrors(info.Env(), [&] {
    OpLedger& ledger = ledgerFor(device.index());
    device.beginCapture();
    ledger.beginCapture();
  });
}

Napi::Value EndCapture(const Napi::CallbackInfo& info) {
  cuda::CudaDevice& device = cudaDeviceFor(info.Env(), info[0]);
  GraphHistory history = translateErrors(info.Env(), [&] { return ledgerFor(device.index()).endCapture(); });
  std::unique_ptr<cuda::Graph> graph = translateErrors(info.Env(), [&] { return device.endCapture(); });
  return GraphHandle::Wrap(std::move(graph), device.index(), std::move(history));
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
