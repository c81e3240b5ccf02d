#include "collectives.h"

#include <cstring>
#include <memory>

#include "device_registry.h"
#include "js_errors.h"
#include "nccl/nccl_library.h"
#include "tensor_args.h"
#if MOEKIT_WITH_CUDA
#include <cuda_runtime.h>

#include "cuda/cuda_device.h"
#endif

namespace moekit::binding {
namespace {

// ncclInfo() → { available, path, problem, version }: loads libnccl.so.2 on first call.
Napi::Value NcclInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const nccl::Availability availability = nccl::probe();
  Napi::Object result = Napi::Object::New(env);
  result.Set("available", availability.available);
  result.Set("path", availability.path);
  result.Set("problem", availability.problem);
  result.Set("version", availability.version);
  return result;
}

#if MOEKIT_WITH_CUDA

Napi::Value NcclUniqueId(const Napi::CallbackInfo& info) {
  const nccl::UniqueId id = translateErrors(info.Env(), [] { return nccl::makeUniqueId(); });
  Napi::Uint8Array bytes = Napi::Uint8Array::New(info.Env(), nccl::kUniqueIdBytes);
  std::memcpy(bytes.Data(), id.bytes, nccl::kUniqueIdBytes);
  return bytes;
}

// A communicator bound to one CUDA device; its collectives run on that device's stream.
class Communicator : public Napi::ObjectWrap<Communicator> {
 public:
  static Napi::FunctionReference* constructor;

  static void Register(Napi::Env env) {
    Napi::Function ctor = DefineClass(env, "Communicator", {
      InstanceMethod<&Communicator::AllReduce>("allReduce"),
      InstanceMethod<&Communicator::AsyncError>("asyncError"),
      InstanceMethod<&Communicator::Abort>("abort"),
      InstanceMethod<&Communicator::Destroy>("destroy"),
    });
    constructor = new Napi::FunctionReference(Napi::Persistent(ctor));
  }

  static Napi::Object Wrap(nccl::Comm comm, int device) {
    Napi::Object object = constructor->New({});
    Communicator* self = Napi::ObjectWrap<Communicator>::Unwrap(object);
    self->comm_ = comm;
    self->device_ = device;
    return object;
  }

  explicit Communicator(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Communicator>(info) {}
  ~Communicator() override { release(false); }

 private:
  nccl::Comm live(Napi::Env env) const {
    if (comm_ == nullptr) throwJsError(env, "E_NCCL", "the communicator was destroyed or aborted");
    return comm_;
  }

  // allReduce(device, { tensor }): in-place sum over the group, enqueued on the device's stream.
  void AllReduce(const Napi::CallbackInfo& info) {
    nccl::Comm comm = live(info.Env());
    OpArgs in(info, "allReduce");
    in.expect(in.device() == device_, "the tensor is not on the communicator's device");
    TensorView tensor = in.inPlace("tensor");
    in.enqueue([&](Device& device, uint64_t) {
      nccl::allReduceSum(comm, tensor.data, static_cast<size_t>(tensor.numel()), tensor.dtype,
                         reinterpret_cast<nccl::Stream>(dynamic_cast<cuda::CudaDevice&>(device).stream()));
    });
  }

  Napi::Value AsyncError(const Napi::CallbackInfo& info) {
    return Napi::String::New(info.Env(), comm_ == nullptr ? "" : nccl::asyncError(comm_));
  }

  void Abort(const Napi::CallbackInfo&) { release(true); }
  void Destroy(const Napi::CallbackInfo&) { release(false); }

  void release(bool abort) {
    if (comm_ == nullptr) return;
    if (abort) {
      nccl::abort(comm_);
    } else {
      nccl::destroy(comm_);
    }
    comm_ = nullptr;
  }

  nccl::Comm comm_ = nullptr;
  int device_ = 0;
};

Napi::FunctionReference* Communicator::constructor = nullptr;

// ncclCommInitRank blocks until every rank has joined, so it runs on a worker thread.
class InitWorker : public Napi::AsyncWorker {
 public:
  InitWorker(Napi::Env env, int device, nccl::UniqueId id, int worldSize, int rank)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), device_(device), id_(id),
        worldSize_(worldSize), rank_(rank) {}

  Napi::Promise promise() { return deferred_.Promise(); }

  void Execute() override {
    try {
      if (cudaSetDevice(device_) != cudaSuccess) throw NativeError("E_CUDA", "cannot select cuda:" + std::to_string(device_));
      comm_ = nccl::initRank(id_, worldSize_, rank_);
    } catch (const NativeError& error) {
      code_ = error.code();
      SetError(error.what());
    }
  }

  void OnOK() override { deferred_.Resolve(Communicator::Wrap(comm_, device_)); }

  void OnError(const Napi::Error& error) override {
    error.Set("code", Napi::String::New(Env(), code_.empty() ? "E_NCCL" : code_));
    deferred_.Reject(error.Value());
  }

 private:
  Napi::Promise::Deferred deferred_;
  int device_;
  nccl::UniqueId id_;
  int worldSize_;
  int rank_;
  nccl::Comm comm_ = nullptr;
  std::string code_;
};

// ncclInit(device, id, worldSize, rank) → Promise<Communicator>
Napi::Value NcclInit(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 4 || !info[0].IsNumber() || !info[1].IsTypedArray() || !info[2].IsNumber() || !info[3].IsNumber()) {
    throwJsError(env, "E_INVALID_ARGUMENT", "ncclInit: expected (device, id, worldSize, rank)");
  }
  const int device = info[0].As<Napi::Number>().Int32Value();
  translateErrors(env, [&] { deviceFor(device); });  // a real CUDA device, created before NCCL uses it
  Napi::Uint8Array bytes = info[1].As<Napi::Uint8Array>();
  if (bytes.ByteLength() != nccl::kUniqueIdBytes) throwJsError(env, "E_INVALID_ARGUMENT", "ncclInit: the id must be 128 bytes");
  nccl::UniqueId id{};
  std::memcpy(id.bytes, bytes.Data(), nccl::kUniqueIdBytes);
  auto* worker = new InitWorker(env, device, id, info[2].As<Napi::Number>().Int32Value(), info[3].As<Napi::Number>().Int32Value());
  Napi::Promise promise = worker->promise();
  worker->Queue();
  return promise;
}

#else

Napi::Value NcclUniqueId(const Napi::CallbackInfo& info) {
  throwJsError(info.Env(), "E_NCCL", "NCCL needs the CUDA backend; this build of moekit is CPU-only");
}

Napi::Value NcclInit(const Napi::CallbackInfo& info) {
  throwJsError(info.Env(), "E_NCCL", "NCCL needs the CUDA backend; this build of moekit is CPU-only");
}

#endif

}  // namespace

void RegisterCollectives(Napi::Env env, Napi::Object exports) {
#if MOEKIT_WITH_CUDA
  Communicator::Register(env);
#endif
  exports.Set("ncclInfo", Napi::Function::New<NcclInfo>(env, "ncclInfo"));
  exports.Set("ncclUniqueId", Napi::Function::New<NcclUniqueId>(env, "ncclUniqueId"));
  exports.Set("ncclInit", Napi::Function::New<NcclInit>(env, "ncclInit"));
}

}  // namespace moekit::binding
