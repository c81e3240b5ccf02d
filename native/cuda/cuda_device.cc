// A CUDA device: one non-blocking stream that every call enqueues on, memory from the device's
// stream-ordered pool, host transfers through pooled pinned staging buffers, a waiter thread that
// reports when the stream drains, and CUDA graph capture of the stream.
#include "cuda_device.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <deque>
#include <exception>
#include <mutex>
#include <thread>
#include <unordered_set>
#include <vector>

#include "../core/errors.h"
#include "check.h"
#include "kernels.h"

namespace moekit::cuda {
namespace {

// Host transfers are cut into chunks of at most this size, each staged in its own pinned buffer,
// so a multi-gigabyte upload never needs a multi-gigabyte pinned buffer.
constexpr size_t kStagingChunkBytes = size_t{16} << 20;
// Pinned memory a device keeps for staging (in flight and idle). Past it, a transfer first waits
// for older copies to finish and reuses their buffers.
constexpr size_t kStagingBudgetBytes = size_t{256} << 20;
// Staging buffers come in powers of two from this size up, so small transfers share buffers.
constexpr size_t kSmallestStagingBytes = size_t{64} << 10;
// The pool's release threshold: the pool keeps memory freed with cudaFreeAsync for reuse instead
// of returning it to the driver at every synchronization. A forward frees and re-allocates the
// same temporaries every call; with an unlimited threshold those allocations never go back to
// the driver, so steady-state allocation costs a pool lookup, and a captured graph's replays see
// the same warm pool. Memory is still handed back when it matters: allocate() trims the pool to
// zero and retries once before reporting E_OOM.
constexpr uint64_t kPoolReleaseThreshold = UINT64_MAX;

void useDevice(int index) { MOEKIT_CUDA_CHECK(cudaSetDevice(index)); }

std::string deviceName(int index) { return "cuda:" + std::to_string(index); }

// Runs a CUDA call whose failure cannot be reported (destructors, release at process teardown):
// the failure is dropped, and the per-thread last error cleared so no later check reports it.
void ignoreFailure(cudaError_t status) {
  if (status != cudaSuccess) (void)cudaGetLastError();
}

size_t stagingCapacityFor(size_t nbytes) {
  size_t capacity = kSmallestStagingBytes;
  while (capacity < nbytes) capacity *= 2;
  return capacity;
}

// ---- Events ------------------------------------------------------------------------------------
// Timing-free events, recycled (creating one per transfer would cost a driver call each).
class EventPool {
 public:
  ~EventPool() {
    for (cudaEvent_t event : free_) ignoreFailure(cudaEventDestroy(event));
  }

  cudaEvent_t take() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!free_.empty()) {
        cudaEvent_t event = free_.back();
        free_.pop_back();
        return event;
      }
    }
    cudaEvent_t event;
    MOEKIT_CUDA_CHECK(cudaEventCreateWithFlags(&event, cudaEventDisableTiming));
    return event;
  }

  void give(cudaEvent_t event) {
    std::lock_guard<std::mutex> lock(mutex_);
    free_.push_back(event);
  }

 private:
  std::mutex mutex_;
  std::vector<cudaEvent_t> free_;
};

// ---- Pinned staging ----------------------------------------------------------------------------
struct StagingBuffer {
  void* host = nullptr;
  size_t capacity = 0;
};

// One chunk of a transfer that went through a staging buffer and is not yet retired.
struct StagedCopy {
  uint64_t sequence;     // enqueue order on the stream
  cudaEvent_t finished;  // recorded right after the copy
  StagingBuffer buffer;
  void* hostDestination;  // downloads: where the bytes go once the copy is done; uploads: nullptr
  size_t nbytes;
};

// Staging buffers and the copies using them. Copies are retired in stream order: an upload's
// buffer returns to the free list once its copy has run; a download's bytes are first copied on
// to the caller's memory. Retiring happens on the calling thread when it needs a buffer, and on
// the waiter thread before a whenIdle() callback fires (which is what makes downloaded bytes
// visible by then).
class StagingArea {
 public:
  explicit StagingArea(EventPool& events) : events_(events) {}

  ~StagingArea() {
    for (StagedCopy& copy : inFlight_) {
      ignoreFailure(cudaEventSynchronize(copy.finished));
      free_.push_back(copy.buffer);
      events_.give(copy.finished);
    }
    for (StagingBuffer& buffer : free_) ignoreFailure(cudaFreeHost(buffer.host));
  }

  void upload(void* deviceDestination, const void* hostSource, size_t nbytes, cudaStream_t stream) {
    for (size_t offset = 0; offset < nbytes; offset += kStagingChunkBytes) {
      const size_t length = std::min(kStagingChunkBytes, nbytes - offset);
      std::unique_lock<std::mutex> lock(mutex_);
      StagingBuffer buffer = acquire(length);
      lock.unlock();  // the buffer is ours alone: fill it without blocking the waiter thread
      std::memcpy(buffer.host, static_cast<const uint8_t*>(hostSource) + offset, length);
      lock.lock();
      enqueue(static_cast<uint8_t*>(deviceDestination) + offset, buffer.host, buffer, nullptr, length,
              cudaMemcpyHostToDevice, stream);
    }
  }

  void download(void* hostDestination, const void* deviceSource, size_t nbytes, cudaStream_t stream) {
    for (size_t offset = 0; offset < nbytes; offset += kStagingChunkBytes) {
      const size_t length = std::min(kStagingChunkBytes, nbytes - offset);
      std::lock_guard<std::mutex> lock(mutex_);
      StagingBuffer buffer = acquire(length);
      enqueue(buffer.host, static_cast<const uint8_t*>(deviceSource) + offset, buffer,
              static_cast<uint8_t*>(hostDestination) + offset, length, cudaMemcpyDeviceToHost, stream);
    }
  }

  // Records `marker` on the stream behind every copy enqueued so far; returns the sequence number
  // that retireBefore() takes once the marker has completed.
  uint64_t recordMarker(cudaEvent_t marker, cudaStream_t stream) {
    std::lock_guard<std::mutex> lock(mutex_);
    MOEKIT_CUDA_CHECK(cudaEventRecord(marker, stream));
    return nextSequence_;
  }

  // Retires every copy enqueued before `sequence` (their marker has completed). With
  // streamFailed, downloads are not copied on: their staging buffers hold nothing reliable.
  void retireBefore(uint64_t sequence, bool streamFailed) {
    std::lock_guard<std::mutex> lock(mutex_);
    while (!inFlight_.empty() && inFlight_.front().sequence < sequence) {
      retireFront(!streamFailed && cudaEventSynchronize(inFlight_.front().finished) == cudaSuccess);
    }
    if (streamFailed) (void)cudaGetLastError();
  }

 private:
  // Puts the copy to → from on the stream and tracks it. Called with the lock held.
  void enqueue(void* to, const void* from, StagingBuffer buffer, void* hostDestination, size_t nbytes,
               cudaMemcpyKind kind, cudaStream_t stream) {
    cudaEvent_t finished = nullptr;
    try {
      finished = events_.take();
      MOEKIT_CUDA_CHECK(cudaMemcpyAsync(to, from, nbytes, kind, stream));
      MOEKIT_CUDA_CHECK(cudaEventRecord(finished, stream));
    } catch (...) {
      free_.push_back(buffer);
      if (finished != nullptr) events_.give(finished);
      throw;
    }
    inFlight_.push_back(StagedCopy{nextSequence_++, finished, buffer, hostDestination, nbytes});
  }

  // A free buffer of at least nbytes: reused, newly allocated while under budget, or freed up by
  // waiting for the oldest copy in flight. Called with the lock held.
  StagingBuffer acquire(size_t nbytes) {
    const size_t capacity = stagingCapacityFor(nbytes);
    for (;;) {
      retireCompleted();
      auto best = free_.end();
      for (auto it = free_.begin(); it != free_.end(); ++it) {
        if (it->capacity >= nbytes && (best == free_.end() || it->capacity < best->capacity)) best = it;
      }
      if (best != free_.end()) {
        StagingBuffer buffer = *best;
        free_.erase(best);
        return buffer;
      }
      if (pinnedBytes_ + capacity <= kStagingBudgetBytes || inFlight_.empty()) {
        // Idle buffers too small for this request make room for it.
        while (!free_.empty() && pinnedBytes_ + capacity > kStagingBudgetBytes) {
          ignoreFailure(cudaFreeHost(free_.back().host));
          pinnedBytes_ -= free_.back().capacity;
          free_.pop_back();
        }
        StagingBuffer buffer;
        MOEKIT_CUDA_CHECK(cudaMallocHost(&buffer.host, capacity));
        buffer.capacity = capacity;
        pinnedBytes_ += capacity;
        return buffer;
      }
      // At the budget: the oldest copy will free its buffer soonest.
      const bool succeeded = cudaEventSynchronize(inFlight_.front().finished) == cudaSuccess;
      if (!succeeded) (void)cudaGetLastError();
      retireFront(succeeded);
    }
  }

  // Retires the leading copies that have already run. Called with the lock held.
  void retireCompleted() {
    while (!inFlight_.empty()) {
      const cudaError_t status = cudaEventQuery(inFlight_.front().finished);
      if (status == cudaErrorNotReady) {
        (void)cudaGetLastError();
        return;
      }
      if (status != cudaSuccess) (void)cudaGetLastError();
      retireFront(status == cudaSuccess);
    }
  }

  void retireFront(bool copyCompleted) {
    StagedCopy& copy = inFlight_.front();
    if (copyCompleted && copy.hostDestination != nullptr) std::memcpy(copy.hostDestination, copy.buffer.host, copy.nbytes);
    free_.push_back(copy.buffer);
    events_.give(copy.finished);
    inFlight_.pop_front();
  }

  EventPool& events_;
  std::mutex mutex_;
  std::deque<StagedCopy> inFlight_;
  std::vector<StagingBuffer> free_;
  size_t pinnedBytes_ = 0;  // every staging buffer, idle or in flight
  uint64_t nextSequence_ = 0;
};

// ---- Idle notifications ------------------------------------------------------------------------
// One thread per device waits for whenIdle() markers in order and runs their callbacks, so the
// JS thread never blocks on the GPU.
class IdleWaiter {
 public:
  IdleWaiter(int device, StagingArea& staging, EventPool& events)
      : device_(device), staging_(staging), events_(events), thread_([this] { serve(); }) {}

  ~IdleWaiter() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    thread_.join();
  }

  void push(cudaEvent_t marker, uint64_t sequence, IdleCallback done) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      requests_.push_back(Request{marker, sequence, std::move(done)});
    }
    wake_.notify_all();
  }

 private:
  struct Request {
    cudaEvent_t marker;
    uint64_t sequence;  // staged copies before this one belong to the request
    IdleCallback done;
  };

  void serve() {
    ignoreFailure(cudaSetDevice(device_));
    for (;;) {
      Request request;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [this] { return stopping_ || !requests_.empty(); });
        if (requests_.empty()) return;  // stopping and drained
        request = std::move(requests_.front());
        requests_.pop_front();
      }
      const cudaError_t status = cudaEventSynchronize(request.marker);
      staging_.retireBefore(request.sequence, status != cudaSuccess);
      events_.give(request.marker);
      std::string code, message;
      if (status != cudaSuccess) {
        (void)cudaGetLastError();
        code = errorCodeFor(status);
        message = deviceName(device_) + ": " + cudaGetErrorString(status) + " (" + cudaGetErrorName(status) +
                  ") while running earlier work";
      }
      try {
        request.done(code, message);
      } catch (...) {
        // A callback must not take the waiter down; the binding's callbacks do not throw.
      }
    }
  }

  const int device_;
  StagingArea& staging_;
  EventPool& events_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Request> requests_;
  bool stopping_ = false;
  std::thread thread_;  // last: starts after the members it uses exist
};

// ---- Graphs ------------------------------------------------------------------------------------
class CudaGraph final : public Graph {
 public:
  // Replays go to the owner's current stream, so they stay ordered with its other work even after
  // setStream().
  CudaGraph(int device, const CudaDevice& owner, cudaGraphExec_t executable)
      : device_(device), owner_(owner), executable_(executable) {}

  // An executable graph still in flight is freed by CUDA once it completes.
  ~CudaGraph() override {
    ignoreFailure(cudaSetDevice(device_));
    ignoreFailure(cudaGraphExecDestroy(executable_));
  }

  void launch() override {
    useDevice(device_);
    MOEKIT_CUDA_CHECK(cudaGraphLaunch(executable_, owner_.stream()));
  }

 private:
  const int device_;
  const CudaDevice& owner_;  // devices live as long as the process
  const cudaGraphExec_t executable_;
};

// ---- The device --------------------------------------------------------------------------------
// The device's stream, destroyed after everything that enqueues on it or waits for it.
class OwnedStream {
 public:
  explicit OwnedStream(cudaStream_t stream) : stream_(stream) {}
  OwnedStream(const OwnedStream&) = delete;
  OwnedStream& operator=(const OwnedStream&) = delete;
  ~OwnedStream() {
    ignoreFailure(cudaStreamSynchronize(stream_));
    ignoreFailure(cudaStreamDestroy(stream_));
  }
  cudaStream_t get() const { return stream_; }

 private:
  const cudaStream_t stream_;
};

cudaStream_t createStream(int index) {
  useDevice(index);
  int poolsSupported = 0;
  MOEKIT_CUDA_CHECK(cudaDeviceGetAttribute(&poolsSupported, cudaDevAttrMemoryPoolsSupported, index));
  if (!poolsSupported) {
    throw CudaError("E_CUDA", deviceName(index) + " does not support stream-ordered memory pools (cudaMallocAsync)");
  }
  cudaStream_t stream;
  // Non-blocking: no implicit synchronization with the legacy default stream that other
  // libraries in the process may use.
  MOEKIT_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  return stream;
}

cudaMemPool_t configurePool(int index) {
  cudaMemPool_t pool;
  MOEKIT_CUDA_CHECK(cudaDeviceGetDefaultMemPool(&pool, index));
  uint64_t threshold = kPoolReleaseThreshold;
  MOEKIT_CUDA_CHECK(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &threshold));
  return pool;
}

class CudaDeviceImpl final : public CudaDevice {
 public:
  explicit CudaDeviceImpl(int index)
      : index_(index),
        ownedStream_(createStream(index)),
        stream_(ownedStream_.get()),
        pool_(configurePool(index)),
        staging_(events_),
        waiter_(index, staging_, events_) {}

  ~CudaDeviceImpl() override {
    if (capturing_) {
      cudaGraph_t abandoned = nullptr;
      if (cudaStreamEndCapture(stream_, &abandoned) == cudaSuccess && abandoned != nullptr) ignoreFailure(cudaGraphDestroy(abandoned));
      (void)cudaGetLastError();
    }
    ignoreFailure(cudaSetDevice(index_));
    ignoreFailure(cudaStreamSynchronize(stream_));
    releaseDeferred();
    // Members go in reverse order: the waiter (running the callbacks still queued), the staging
    // buffers, the events, and the stream last.
  }

  int index() const override { return index_; }
  cudaStream_t stream() const override { return stream_; }

  void setStream(cudaStream_t next) override {
    if (capturing_) throw NativeError("E_DEVICE", deviceName(index_) + ": cannot change streams while capturing a graph");
    useDevice(index_);
    if (next == nullptr) next = ownedStream_.get();
    if (next == stream_) return;
    // The new stream waits for everything enqueued so far; the event can go at once (CUDA frees
    // it once the wait is resolved).
    cudaEvent_t handOver;
    MOEKIT_CUDA_CHECK(cudaEventCreateWithFlags(&handOver, cudaEventDisableTiming));
    MOEKIT_CUDA_CHECK(cudaEventRecord(handOver, stream_));
    MOEKIT_CUDA_CHECK(cudaStreamWaitEvent(next, handOver, 0));
    MOEKIT_CUDA_CHECK(cudaEventDestroy(handOver));
    stream_ = next;
  }

  // ---- Memory ----
  void* allocate(size_t nbytes) override {
    useDevice(index_);
    void* pointer = nullptr;
    cudaError_t status = cudaMallocAsync(&pointer, nbytes, stream_);
    if (status == cudaErrorMemoryAllocation && !capturing_) {
      (void)cudaGetLastError();
      // Hand unused pool memory back to the driver (fragmented free blocks included) once the
      // stream has run the frees enqueued so far, then try once more.
      MOEKIT_CUDA_CHECK(cudaStreamSynchronize(stream_));
      MOEKIT_CUDA_CHECK(cudaMemPoolTrimTo(pool_, 0));
      status = cudaMallocAsync(&pointer, nbytes, stream_);
    }
    if (status != cudaSuccess) {
      (void)cudaGetLastError();
      throw CudaError(errorCodeFor(status), deviceName(index_) + ": cannot allocate " + std::to_string(nbytes) +
                                                " bytes: " + cudaGetErrorString(status));
    }
    if (capturing_) {
      std::lock_guard<std::mutex> lock(captureMutex_);
      capturedAllocations_.insert(pointer);
    }
    return pointer;
  }

  // Never throws: it runs from finalizers, possibly after the CUDA runtime has shut down.
  void release(void* pointer) override {
    if (pointer == nullptr) return;
    ignoreFailure(cudaSetDevice(index_));
    if (capturing_) {
      std::lock_guard<std::mutex> lock(captureMutex_);
      // Inside a capture only the graph's own allocations can be freed (as free nodes); memory
      // from before the capture is freed on the stream once the capture ends.
      if (capturedAllocations_.erase(pointer) == 0) {
        deferredReleases_.push_back(pointer);
        return;
      }
    }
    ignoreFailure(cudaFreeAsync(pointer, stream_));
  }

  // ---- Copies ----
  void upload(void* dst, const void* hostSrc, size_t nbytes) override {
    refuseDuringCapture("upload");
    if (nbytes == 0) return;
    useDevice(index_);
    staging_.upload(dst, hostSrc, nbytes, stream_);
  }

  void download(void* hostDst, const void* src, size_t nbytes) override {
    refuseDuringCapture("download");
    if (nbytes == 0) return;
    useDevice(index_);
    staging_.download(hostDst, src, nbytes, stream_);
  }

  void copy(void* dst, const void* src, size_t nbytes) override {
    if (nbytes == 0) return;
    useDevice(index_);
    MOEKIT_CUDA_CHECK(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyDeviceToDevice, stream_));
  }

  // ---- Ordering ----
  void whenIdle(IdleCallback done) override {
    refuseDuringCapture("whenIdle");
    useDevice(index_);
    cudaEvent_t marker = events_.take();
    uint64_t sequence;
    try {
      sequence = staging_.recordMarker(marker, stream_);
    } catch (...) {
      events_.give(marker);
      throw;
    }
    waiter_.push(marker, sequence, std::move(done));
  }

  // ---- Ops ----
  void routing(const RoutingArgs& args) override {
    useDevice(index_);
    moekit::cuda::routing(args, stream_);
  }
  void permute(const PermuteArgs& args) override {
    useDevice(index_);
    moekit::cuda::permute(args, stream_);
  }
  void groupedGemm(const GroupedGemmArgs& args) override {
    useDevice(index_);
    moekit::cuda::groupedGemm(args, stream_);
  }
  void linear(const LinearArgs& args) override {
    useDevice(index_);
    moekit::cuda::linear(args, stream_);
  }
  void activation(const ActivationArgs& args) override {
    useDevice(index_);
    moekit::cuda::activation(args, stream_);
  }
  void combine(const CombineArgs& args) override {
    useDevice(index_);
    moekit::cuda::combine(args, stream_);
  }
  void cast(const CastArgs& args) override {
    useDevice(index_);
    moekit::cuda::cast(args, stream_);
  }
  void fillRandom(const FillRandomArgs& args) override {
    useDevice(index_);
    moekit::cuda::fillRandom(args, stream_);
  }

  // ---- Capture ----
  void beginCapture() override {
    if (capturing_) throw NativeError("E_DEVICE", deviceName(index_) + " is already capturing a graph");
    useDevice(index_);
    // Thread-local mode: only this thread is barred from capture-unsafe calls while recording, so
    // the waiter thread's cudaEventSynchronize (and other devices' work) carries on undisturbed.
    // cudaMallocAsync/cudaFreeAsync are capturable: they become the graph's alloc/free nodes.
    MOEKIT_CUDA_CHECK(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
    capturing_ = true;
  }

  std::unique_ptr<Graph> endCapture() override {
    if (!capturing_) throw NativeError("E_DEVICE", deviceName(index_) + " is not capturing a graph");
    useDevice(index_);
    cudaGraph_t graph = nullptr;
    const cudaError_t status = cudaStreamEndCapture(stream_, &graph);
    capturing_ = false;
    releaseDeferred();
    if (status != cudaSuccess && graph != nullptr) ignoreFailure(cudaGraphDestroy(graph));
    MOEKIT_CUDA_CHECK(status);
    cudaGraphExec_t executable = nullptr;
    // AutoFreeOnLaunch: should an allocation made during the capture not have been freed in it,
    // a replay frees the previous replay's copy instead of failing.
    const cudaError_t instantiated = cudaGraphInstantiate(&executable, graph, cudaGraphInstantiateFlagAutoFreeOnLaunch);
    ignoreFailure(cudaGraphDestroy(graph));  // the executable graph does not need it
    MOEKIT_CUDA_CHECK(instantiated);
    return std::make_unique<CudaGraph>(index_, *this, executable);
  }

 private:
  void refuseDuringCapture(const char* what) const {
    if (capturing_) {
      throw NativeError("E_DEVICE", std::string(what) + " cannot run on " + deviceName(index_) +
                                        " while it is capturing a CUDA graph");
    }
  }

  void releaseDeferred() {
    std::vector<void*> deferred;
    {
      std::lock_guard<std::mutex> lock(captureMutex_);
      deferred.swap(deferredReleases_);
      capturedAllocations_.clear();  // freed in the graph, or owned by it now
    }
    for (void* pointer : deferred) ignoreFailure(cudaFreeAsync(pointer, stream_));
  }

  const int index_;
  OwnedStream ownedStream_;
  // The stream work goes to: the device's own, or a user's (setStream). Only the JS thread reads it.
  cudaStream_t stream_;
  const cudaMemPool_t pool_;
  EventPool events_;
  StagingArea staging_;
  IdleWaiter waiter_;  // after what it uses; destroyed first
  std::atomic<bool> capturing_{false};
  std::mutex captureMutex_;
  std::unordered_set<void*> capturedAllocations_;
  std::vector<void*> deferredReleases_;
};

}  // namespace

int deviceCount() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    (void)cudaGetLastError();  // no driver or no GPU: the normal case on CI
    return 0;
  }
  return count;
}

DeviceInfo deviceInfo(int index) {
  cudaDeviceProp properties;
  MOEKIT_CUDA_CHECK(cudaGetDeviceProperties(&properties, index));
  DeviceInfo info;
  info.index = index;
  info.name = properties.name;
  info.totalMemory = properties.totalGlobalMem;
  info.major = properties.major;
  info.minor = properties.minor;
  info.multiprocessors = properties.multiProcessorCount;
  return info;
}

std::unique_ptr<Device> makeDevice(int index) {
  const int count = deviceCount();
  if (index < 0 || index >= count) {
    throw NativeError("E_DEVICE", deviceName(index) + " does not exist: this machine has " + std::to_string(count) +
                                      " CUDA device(s)");
  }
  return std::make_unique<CudaDeviceImpl>(index);
}

}  // namespace moekit::cuda
