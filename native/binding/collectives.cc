#include "collectives.h"

#include <cstring>
#include <functional>
#include <memory>
#include <vector>

#include "device_registry.h"
#include "js_errors.h"
#include "library_info.h"
#include "nccl/nccl_library.h"
#include "tensor_args.h"
#if MOEKIT_WITH_CUDA
#include <cuda_runtime.h>

#include "cuda/check.h"
#include "cuda/cuda_device.h"
#endif

namespace moekit::binding {
namespace {

// ncclInfo() → { available, path, problem, version }: loads libnccl.so.2 on first call.
Napi::Value NcclInfo(const Napi::CallbackInfo& info) {
  return libraryInfo(info.Env(), nccl::probe());
}

#if MOEKIT_WITH_CUDA

Napi::Value NcclUniqueId(const Napi::CallbackInfo& info) {
  const nccl::UniqueId id = translateErrors(info.Env(), [] { return nccl::makeUniqueId(); });
  Napi::Uint8Array bytes = Napi::Uint8Array::New(info.Env(), nccl::kUniqueIdBytes);
  std::memcpy(bytes.Data(), id.bytes, nccl::kUniqueIdBytes);
  return bytes;
}

// A communicator bound to one CUDA device; its collectives run on that device's stream. The
// TypeScript layer (lib/parallel/collective_args.ts) has checked every argument with friendly
// messages; the checks here only keep NCCL inside the tensors' memory.
class Communicator : public Napi::ObjectWrap<Communicator> {
 public:
  static Napi::FunctionReference* constructor;

  static void Register(Napi::Env env) {
    Napi::Function ctor = DefineClass(env, "Communicator", {
      InstanceMethod<&Communicator::AllReduce>("allReduce"),
      InstanceMethod<&Communicator::ReduceScatter>("reduceScatter"),
      InstanceMethod<&Communicator::AllGather>("allGather"),
      InstanceMethod<&Communicator::Broadcast>("broadcast"),
      InstanceMethod<&Communicator::Send>("send"),
      InstanceMethod<&Communicator::Recv>("recv"),
      InstanceMethod<&Communicator::AllToAll>("allToAll"),
      InstanceMethod<&Communicator::AsyncError>("asyncError"),
      InstanceMethod<&Communicator::Abort>("abort"),
      InstanceMethod<&Communicator::Destroy>("destroy"),
    });
    constructor = new Napi::FunctionReference(Napi::Persistent(ctor));
  }

  static Napi::Object Wrap(nccl::Comm comm, int device, int worldSize, int rank) {
    Napi::Object object = constructor->New({});
    Communicator* self = Napi::ObjectWrap<Communicator>::Unwrap(object);
    self->comm_ = comm;
    self->device_ = device;
    self->worldSize_ = worldSize;
    self->rank_ = rank;
    return object;
  }

  explicit Communicator(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Communicator>(info) {}
  ~Communicator() override { release(false); }

 private:
  // A collective's arguments (device, { tensors and numbers }), read as an op's, once the
  // communicator is known to be live and on the arguments' device.
  OpArgs argsOf(const Napi::CallbackInfo& info, const char* op) const {
    if (comm_ == nullptr) throwJsError(info.Env(), "E_NCCL", "the communicator was destroyed or aborted");
    OpArgs in(info, op);
    in.expect(in.device() == device_, "the tensors are not on the communicator's device");
    return in;
  }

  // Enqueues `collective` on the device's current stream, the one all of its ops are ordered on,
  // and records it in the device's ledger with the tensors `in` read and wrote.
  void enqueue(OpArgs& in, const std::function<void(nccl::Comm, nccl::Stream)>& collective) {
    in.enqueue([&](Device& device, uint64_t) {
      collective(comm_, reinterpret_cast<nccl::Stream>(dynamic_cast<cuda::CudaDevice&>(device).stream()));
    });
  }

  int32_t rankArg(const OpArgs& in, const char* key) const {
    const int32_t rank = in.int32(key);
    in.expectAbout(rank >= 0 && rank < worldSize_, key, " is not a rank of the group");
    return rank;
  }

  int32_t peerArg(const OpArgs& in) const {
    const int32_t peer = rankArg(in, "peer");
    in.expect(peer != rank_, "peer is this rank");
    return peer;
  }

  // allReduce(device, { tensor }): in place, the sum over the group.
  void AllReduce(const Napi::CallbackInfo& info) {
    OpArgs in = argsOf(info, "allReduce");
    TensorView tensor = in.inPlace("tensor");
    enqueue(in, [&](nccl::Comm comm, nccl::Stream stream) {
      nccl::allReduceSum(comm, tensor.data, static_cast<size_t>(tensor.numel()), tensor.dtype, stream);
    });
  }

  // reduceScatter(device, { input, output }): output = the sum over the group of input's
  // rank-th slice of output's size.
  void ReduceScatter(const Napi::CallbackInfo& info) {
    OpArgs in = argsOf(info, "reduceScatter");
    TensorView input = in.tensor("input");
    TensorView output = in.output("output");
    in.expect(input.dtype == output.dtype, "input and output differ in dtype");
    in.expect(input.nbytes() == output.nbytes() * static_cast<size_t>(worldSize_), "input must be worldSize times output's size");
    enqueue(in, [&](nccl::Comm comm, nccl::Stream stream) {
      nccl::reduceScatterSum(comm, input.data, output.data, static_cast<size_t>(output.numel()), output.dtype, stream);
    });
  }

  // allGather(device, { input, output }): output = every rank's input, in rank order.
  void AllGather(const Napi::CallbackInfo& info) {
    OpArgs in = argsOf(info, "allGather");
    TensorView input = in.tensor("input");
    TensorView output = in.output("output");
    in.expect(output.nbytes() == input.nbytes() * static_cast<size_t>(worldSize_), "output must be worldSize times input's size");
    enqueue(in, [&](nccl::Comm comm, nccl::Stream stream) { nccl::allGather(comm, input.data, output.data, input.nbytes(), stream); });
  }

  // broadcast(device, { tensor, root }): in place, rank root's tensor on every rank.
  void Broadcast(const Napi::CallbackInfo& info) {
    OpArgs in = argsOf(info, "broadcast");
    TensorView tensor = in.inPlace("tensor");
    const int32_t root = rankArg(in, "root");
    enqueue(in, [&](nccl::Comm comm, nccl::Stream stream) { nccl::broadcast(comm, tensor.data, tensor.nbytes(), root, stream); });
  }

  // send(device, { tensor, peer }) and recv(device, { tensor, peer }): one point-to-point transfer.
  void Send(const Napi::CallbackInfo& info) {
    OpArgs in = argsOf(info, "send");
    TensorView tensor = in.tensor("tensor");
    const int32_t peer = peerArg(in);
    enqueue(in, [&](nccl::Comm comm, nccl::Stream stream) { nccl::send(comm, tensor.data, tensor.nbytes(), peer, stream); });
  }

  void Recv(const Napi::CallbackInfo& info) {
    OpArgs in = argsOf(info, "recv");
    TensorView tensor = in.output("tensor");
    const int32_t peer = peerArg(in);
    enqueue(in, [&](nccl::Comm comm, nccl::Stream stream) { nccl::recv(comm, tensor.data, tensor.nbytes(), peer, stream); });
  }

  // allToAll(device, { input, output, sendSplits, recvSplits }): input's rows, split in rank
  // order by sendSplits, go one part to each rank; output's rows, split by recvSplits, come one
  // part from each.
  void AllToAll(const Napi::CallbackInfo& info) {
    OpArgs in = argsOf(info, "allToAll");
    TensorView input = in.tensor("input");
    TensorView output = in.output("output");
    const std::vector<nccl::Block> sendBlocks = blocksOf(in, input, "sendSplits");
    const std::vector<nccl::Block> recvBlocks = blocksOf(in, output, "recvSplits");
    enqueue(in, [&](nccl::Comm comm, nccl::Stream stream) { nccl::allToAll(comm, input.data, sendBlocks, output.data, recvBlocks, stream); });
  }

  // The byte range of each rank's rows of `tensor`, from row counts that must cover it exactly.
  std::vector<nccl::Block> blocksOf(const OpArgs& in, const TensorView& tensor, const char* key) const {
    const std::vector<int64_t> splits = in.counts(key);
    in.expectAbout(splits.size() == static_cast<size_t>(worldSize_), key, " must hold one row count per rank");
    in.expectAbout(!tensor.shape.empty(), key, " splits the rows of a tensor without any");
    const int64_t rows = tensor.dim(0);
    const size_t rowBytes = rows == 0 ? 0 : tensor.nbytes() / static_cast<size_t>(rows);
    std::vector<nccl::Block> blocks;
    int64_t row = 0;
    for (int64_t count : splits) {
      in.expectAbout(count <= rows - row, key, " count more rows than the tensor has");
      blocks.push_back({static_cast<size_t>(row) * rowBytes, static_cast<size_t>(count) * rowBytes});
      row += count;
    }
    in.expectAbout(row == rows, key, " count fewer rows than the tensor has");
    return blocks;
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
  int worldSize_ = 1;
  int rank_ = 0;
};

Napi::FunctionReference* Communicator::constructor = nullptr;

// A stream and a few bytes of device memory, freed in stream order (never waiting on the device)
// however connectPeers leaves.
struct PeerScratch {
  cudaStream_t stream = nullptr;
  uint8_t* bytes = nullptr;

  ~PeerScratch() {
    if (bytes != nullptr) cudaFreeAsync(bytes, stream);
    if (stream != nullptr) cudaStreamDestroy(stream);
  }
};

// NCCL connects two ranks for send and recv lazily, in the first point-to-point call between them,
// and that host call waits for the peer to make its own: a late peer would freeze the JS thread
// (and the watchdog with it) inside send(), recv() or allToAll(). One byte exchanged with every
// peer here, on the init worker under init()'s timeout, makes those connections up front (NCCL
// connects all of a peer's point-to-point channels on first use, whatever the size), as
// NCCL_RUNTIME_CONNECT=0 does for the collectives.
void connectPeers(nccl::Comm comm, int worldSize, int rank) {
  if (worldSize == 1) return;
  const size_t ranks = static_cast<size_t>(worldSize);
  PeerScratch scratch;
  MOEKIT_CUDA_CHECK(cudaStreamCreateWithFlags(&scratch.stream, cudaStreamNonBlocking));
  MOEKIT_CUDA_CHECK(cudaMallocAsync(reinterpret_cast<void**>(&scratch.bytes), 2 * ranks, scratch.stream));
  MOEKIT_CUDA_CHECK(cudaMemsetAsync(scratch.bytes, 0, 2 * ranks, scratch.stream));
  std::vector<nccl::Block> blocks(ranks);
  for (size_t peer = 0; peer < ranks; ++peer) {
    if (peer != static_cast<size_t>(rank)) blocks[peer] = {peer, 1};
  }
  nccl::allToAll(comm, scratch.bytes, blocks, scratch.bytes + ranks, blocks, reinterpret_cast<nccl::Stream>(scratch.stream));
  MOEKIT_CUDA_CHECK(cudaStreamSynchronize(scratch.stream));
}

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
      connectPeers(comm_, worldSize_, rank_);
    } catch (const NativeError& error) {
      if (comm_ != nullptr) nccl::abort(comm_);
      comm_ = nullptr;
      code_ = error.code();
      SetError(error.what());
    }
  }

  void OnOK() override { deferred_.Resolve(Communicator::Wrap(comm_, device_, worldSize_, rank_)); }

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
