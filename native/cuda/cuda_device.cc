// A CUDA device: one non-blocking stream that every call enqueues on, memory from the device's
// stream-ordered pool, host transfers through pooled pinned staging buffers, a waiter thread that
// reports when the stream drains, and CUDA graph capture of the stream.
#include "cuda_device.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <deque>
#include <exception>
#include <mutex>
#include <thread>
#include <unordered_set>
#include <vector>

#include "../core/errors.h"
#include "../core/faults.h"
#include "check.h"
#include "environment.h"
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

// ---- Faults ------------------------------------------------------------------------------------
// The device's FaultRecord (native/core/faults.h) lives in device memory; kernels report into it.
// Each idle marker that follows possibly-failing work first copies it into a pinned snapshot and
// clears it, both in stream order, so the waiter thread reads exactly the faults of the work
// before its marker, and a CUDA graph's kernels can keep the record's fixed address.
class FaultSnapshots {
 public:
  ~FaultSnapshots() {
    for (FaultRecord* snapshot : free_) ignoreFailure(cudaFreeHost(snapshot));
  }

  FaultRecord* take() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!free_.empty()) {
        FaultRecord* snapshot = free_.back();
        free_.pop_back();
        return snapshot;
      }
    }
    void* snapshot = nullptr;
    MOEKIT_CUDA_CHECK(cudaMallocHost(&snapshot, sizeof(FaultRecord)));
    return static_cast<FaultRecord*>(snapshot);
  }

  void give(FaultRecord* snapshot) {
    std::lock_guard<std::mutex> lock(mutex_);
    free_.push_back(snapshot);
  }

 private:
  std::mutex mutex_;
  std::vector<FaultRecord*> free_;
};

// The failures a snapshot holds: those with details, and the marks of every failed op (which
// name the ops whose details did not fit).
void readSnapshot(const FaultRecord& snapshot, FailureReport& report) {
  bool anyMarked = false;
  for (unsigned int word : snapshot.markedTickets) anyMarked = anyMarked || word != 0;
  if (!anyMarked) return;
  int named = 0;
  for (const OpFault& fault : snapshot.slots) {
    if (fault.ticket == 0) continue;
    ++named;
    report.failures.push_back(OpFailure{fault.ticket, "E_INVALID_ARGUMENT",
                                        describeFault(static_cast<FaultKind>(fault.kind), fault.value, fault.position, fault.bound)});
  }
  // With every slot taken, some failing ops may be known by their mark alone.
  if (named == kFaultSlots) report.markedTickets.assign(std::begin(snapshot.markedTickets), std::end(snapshot.markedTickets));
}

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
  IdleWaiter(int device, StagingArea& staging, EventPool& events, FaultSnapshots& snapshots)
      : device_(device), staging_(staging), events_(events), snapshots_(snapshots), thread_([this] { serve(); }) {}

  ~IdleWaiter() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    thread_.join();
  }

  // Set before the first request (CudaDeviceImpl::setFailureSink).
  void setFailureSink(FailureSink sink) {
    std::lock_guard<std::mutex> lock(mutex_);
    sink_ = std::move(sink);
  }

  void push(cudaEvent_t marker, uint64_t sequence, uint64_t completedThrough, FaultRecord* snapshot, IdleCallback done) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      requests_.push_back(Request{marker, sequence, completedThrough, snapshot, std::move(done)});
    }
    wake_.notify_all();
  }

 private:
  struct Request {
    cudaEvent_t marker;
    uint64_t sequence;          // staged copies before this one belong to the request
    uint64_t completedThrough;  // handed to the FailureSink
    FaultRecord* snapshot;      // the faults of the work before the marker, or nullptr: none possible
    IdleCallback done;
  };

  void serve() {
    ignoreFailure(cudaSetDevice(device_));
    for (;;) {
      Request request;
      FailureSink sink;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [this] { return stopping_ || !requests_.empty(); });
        if (requests_.empty()) return;  // stopping and drained
        request = std::move(requests_.front());
        requests_.pop_front();
        sink = sink_;
      }
      const cudaError_t status = cudaEventSynchronize(request.marker);
      staging_.retireBefore(request.sequence, status != cudaSuccess);
      events_.give(request.marker);
      FailureReport report;
      report.completedThrough = request.completedThrough;
      if (request.snapshot != nullptr) {
        if (status == cudaSuccess) readSnapshot(*request.snapshot, report);
        snapshots_.give(request.snapshot);
      }
      if (sink) {
        try {
          sink(std::move(report));
        } catch (...) {
          // The binding's sink does not throw; nothing here may take the waiter down.
        }
      }
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
  FaultSnapshots& snapshots_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Request> requests_;
  FailureSink sink_;
  bool stopping_ = false;
  std::thread thread_;  // last: starts after the members it uses exist
};

// ---- Graphs ------------------------------------------------------------------------------------
class CudaGraph final : public Graph {
 public:
  // Replays go to the owner's current stream, so they stay ordered with its other work even after
  // setStream().
  CudaGraph(int device, CudaDevice& owner, cudaGraphExec_t executable)
      : device_(device), owner_(owner), executable_(executable) {}

  // An executable graph still in flight is freed by CUDA once it completes.
  ~CudaGraph() override {
    ignoreFailure(cudaSetDevice(device_));
    ignoreFailure(cudaGraphExecDestroy(executable_));
  }

  void launch() override { owner_.launchGraph(executable_); }

 private:
  const int device_;
  CudaDevice& owner_;  // devices live as long as the process
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

// MOEKIT_SIDE_STREAM=off keeps side work on the device's stream, in order (for timing one against
// the other).
bool sideStreamEnabled() { return environmentSwitch("MOEKIT_SIDE_STREAM") != "off"; }

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
        sideStream_(createStream(index)),  // where side work goes (Device::beginSideWork)
        pool_(configurePool(index)),
        faultRecord_(createFaultRecord(index)),
        staging_(events_),
        waiter_(index, staging_, events_, snapshots_) {}

  ~CudaDeviceImpl() override {
    if (capturing_) {
      cudaGraph_t abandoned = nullptr;
      if (cudaStreamEndCapture(stream_, &abandoned) == cudaSuccess && abandoned != nullptr) ignoreFailure(cudaGraphDestroy(abandoned));
      (void)cudaGetLastError();
    }
    ignoreFailure(cudaSetDevice(index_));
    ignoreFailure(cudaStreamSynchronize(stream_));
    releaseDeferred();
    ignoreFailure(cudaFree(faultRecord_));
    // Members go in reverse order: the waiter (running the callbacks still queued), the staging
    // buffers, the events, and the stream last.
  }

  int index() const override { return index_; }
  cudaStream_t stream() const override { return stream_; }

  void setFailureSink(FailureSink sink) override { waiter_.setFailureSink(std::move(sink)); }

  void setStream(cudaStream_t next) override {
    if (capturing_) throw NativeError("E_DEVICE", deviceName(index_) + ": cannot change streams while capturing a graph");
    refuseDuringSideWork("change streams");
    useDevice(index_);
    if (next == nullptr) next = ownedStream_.get();
    if (next == stream_) return;
    waitFor(stream_, next);
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

  // The pool's counters and the driver's free / total; none of these calls waits on the stream.
  MemoryInfo memoryInfo() override {
    if (capturing_) throw NativeError("E_DEVICE", deviceName(index_) + ": cannot read memory counters while capturing a graph");
    useDevice(index_);
    uint64_t used = 0, reserved = 0;  // the attributes are cuuint64_t (cuda.h), 64 bits
    MOEKIT_CUDA_CHECK(cudaMemPoolGetAttribute(pool_, cudaMemPoolAttrUsedMemCurrent, &used));
    MOEKIT_CUDA_CHECK(cudaMemPoolGetAttribute(pool_, cudaMemPoolAttrReservedMemCurrent, &reserved));
    MemoryInfo info;
    info.inUse = static_cast<size_t>(used);
    info.reserved = static_cast<size_t>(reserved);
    MOEKIT_CUDA_CHECK(cudaMemGetInfo(&info.free, &info.total));
    return info;
  }

  void checkForeignMemory(const void* pointer, size_t nbytes) const override {
    useDevice(index_);
    cudaPointerAttributes attributes{};
    const cudaError_t status = cudaPointerGetAttributes(&attributes, pointer);
    if (status != cudaSuccess) {
      (void)cudaGetLastError();
      throw NativeError("E_DEVICE", deviceName(index_) + ": CUDA does not know pointer " + hexAddress(pointer) + ": " + cudaGetErrorString(status));
    }
    if (attributes.type != cudaMemoryTypeDevice && attributes.type != cudaMemoryTypeManaged) {
      throw NativeError("E_DEVICE", "pointer " + hexAddress(pointer) + " is not CUDA device memory (" +
                                        (attributes.type == cudaMemoryTypeHost ? "pinned host memory" : "unregistered host memory") + ")");
    }
    if (attributes.type == cudaMemoryTypeDevice && attributes.device != index_) {
      throw NativeError("E_DEVICE", "pointer " + hexAddress(pointer) + " is memory of cuda:" + std::to_string(attributes.device) + ", not of " +
                                        deviceName(index_));
    }
    (void)nbytes;  // CUDA does not report an allocation's extent: the caller's size is taken.
  }

  static std::string hexAddress(const void* pointer) {
    char text[2 + 16 + 1];
    std::snprintf(text, sizeof text, "0x%llx", static_cast<unsigned long long>(reinterpret_cast<uintptr_t>(pointer)));
    return text;
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
  void whenIdle(IdleCallback done, uint64_t completedThrough) override {
    refuseDuringCapture("whenIdle");
    useDevice(index_);
    const cudaStream_t stream = markerStream();
    FaultRecord* snapshot = nullptr;
    if (faultsPossible_.exchange(false)) {
      snapshot = snapshots_.take();
      const cudaError_t copied = cudaMemcpyAsync(snapshot, faultRecord_, sizeof(FaultRecord), cudaMemcpyDeviceToHost, stream);
      const cudaError_t cleared = copied == cudaSuccess ? cudaMemsetAsync(faultRecord_, 0, sizeof(FaultRecord), stream) : copied;
      if (cleared != cudaSuccess) {
        snapshots_.give(snapshot);
        faultsPossible_ = true;
        MOEKIT_CUDA_CHECK(cleared);
      }
    }
    cudaEvent_t marker = events_.take();
    uint64_t sequence;
    try {
      sequence = staging_.recordMarker(marker, stream);
    } catch (...) {
      events_.give(marker);
      if (snapshot != nullptr) snapshots_.give(snapshot);  // its faults wait for the next marker's copy
      faultsPossible_ = true;
      throw;
    }
    waiter_.push(marker, sequence, completedThrough, snapshot, std::move(done));
  }

  // ---- Ops ----
  // Each op is told where its kernels report faults (faults.cuh); ops that read through indices
  // mark the record as worth reading at the next idle marker.
  void routing(const RoutingArgs& args) override { run(args, false, moekit::cuda::routing); }
  void permute(const PermuteArgs& args) override { run(args, true, moekit::cuda::permute); }
  void groupedGemm(const GroupedGemmArgs& args) override { run(args, true, moekit::cuda::groupedGemm); }
  void linear(const LinearArgs& args) override { run(args, false, moekit::cuda::linear); }
  void activation(const ActivationArgs& args) override { run(args, false, moekit::cuda::activation); }
  void combine(const CombineArgs& args) override { run(args, true, moekit::cuda::combine); }
  void cast(const CastArgs& args) override { run(args, false, moekit::cuda::cast); }
  void fillRandom(const FillRandomArgs& args) override { run(args, false, moekit::cuda::fillRandom); }
  void quantizeWeights(const QuantizeWeightsArgs& args) override { run(args, false, moekit::cuda::quantizeWeights); }
  void addInt32(const AddInt32Args& args) override { run(args, false, moekit::cuda::addInt32); }
  void expertSlots(const ExpertSlotsArgs& args) override { run(args, true, moekit::cuda::expertSlots); }
  void fusedMoe(const FusedMoeArgs& args) override { run(args, false, moekit::cuda::fusedMoe); }

  void launchGraph(cudaGraphExec_t graph) override {
    useDevice(index_);
    MOEKIT_CUDA_CHECK(cudaGraphLaunch(graph, stream_));
    faultsPossible_ = true;
  }

  // ---- Capture ----
  void beginCapture() override {
    if (capturing_) throw NativeError("E_DEVICE", deviceName(index_) + " is already capturing a graph");
    refuseDuringSideWork("begin a capture");
    useDevice(index_);
    // Thread-local mode: only this thread is barred from capture-unsafe calls while recording, so
    // the waiter thread's cudaEventSynchronize (and other devices' work) carries on undisturbed.
    // cudaMallocAsync/cudaFreeAsync are capturable: they become the graph's alloc/free nodes.
    MOEKIT_CUDA_CHECK(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
    capturing_ = true;
  }

  std::unique_ptr<Graph> endCapture() override {
    if (!capturing_) throw NativeError("E_DEVICE", deviceName(index_) + " is not capturing a graph");
    refuseDuringSideWork("end a capture");
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

  // ---- Side work (Device::beginSideWork) ----
  // The side stream forks from the device's stream and joins it again by events; under a capture
  // that makes the side work a parallel branch of the graph.
  void forkSideQueue() override {
    if (!sideStreamEnabled_) return;
    useDevice(index_);
    waitFor(stream_, sideStream_.get());
    mainStream_ = stream_;
    stream_ = sideStream_.get();
  }

  void leaveSideQueue() override {
    if (!sideStreamEnabled_) return;
    useDevice(index_);
    sideDone_ = events_.take();
    const cudaError_t recorded = cudaEventRecord(sideDone_, stream_);
    stream_ = mainStream_;  // back on the device's stream whatever happens
    MOEKIT_CUDA_CHECK(recorded);
  }

  void joinSideQueue() override {
    if (!sideStreamEnabled_) return;
    useDevice(index_);
    const cudaError_t waited = cudaStreamWaitEvent(stream_, sideDone_, 0);
    // The wait has taken the event's state: it can serve again at once.
    events_.give(sideDone_);
    sideDone_ = nullptr;
    MOEKIT_CUDA_CHECK(waited);
  }

 private:
  // Makes `later` wait for everything enqueued on `earlier` so far.
  void waitFor(cudaStream_t earlier, cudaStream_t later) {
    cudaEvent_t handOver = events_.take();
    const cudaError_t recorded = cudaEventRecord(handOver, earlier);
    const cudaError_t waited = recorded == cudaSuccess ? cudaStreamWaitEvent(later, handOver, 0) : recorded;
    events_.give(handOver);  // the wait has taken its state
    MOEKIT_CUDA_CHECK(waited);
  }

  // Where an idle marker goes: after all enqueued work. Between the end of side work and its join
  // (the ledger may ask for a marker then) that is the side stream, made to wait for the device's.
  cudaStream_t markerStream() {
    if (sideWork() != SideWork::Ended || !sideStreamEnabled_) return stream_;
    waitFor(stream_, sideStream_.get());
    return sideStream_.get();
  }

  void refuseDuringSideWork(const char* what) const {
    if (sideWork() != SideWork::None) throw NativeError("E_DEVICE", deviceName(index_) + ": cannot " + what + " before side work is joined");
  }

  template <typename Args>
  void run(const Args& args, bool checksIndices, void (*enqueue)(const Args&, cudaStream_t)) {
    useDevice(index_);
    Args withRecord = args;
    withRecord.faultRecord = faultRecord_;
    enqueue(withRecord, stream_);
    // Captured work runs only at replay, which marks the record then.
    if (checksIndices && !capturing_) faultsPossible_ = true;
  }

  static FaultRecord* createFaultRecord(int index) {
    useDevice(index);
    void* record = nullptr;
    MOEKIT_CUDA_CHECK(cudaMalloc(&record, sizeof(FaultRecord)));
    MOEKIT_CUDA_CHECK(cudaMemset(record, 0, sizeof(FaultRecord)));
    return static_cast<FaultRecord*>(record);
  }

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
  // The stream work goes to: the device's own, or a user's (setStream); the side stream between
  // forkSideQueue and leaveSideQueue. Only the JS thread reads it.
  cudaStream_t stream_;
  OwnedStream sideStream_;
  const bool sideStreamEnabled_ = sideStreamEnabled();
  cudaStream_t mainStream_ = nullptr;  // stream_ before the fork
  cudaEvent_t sideDone_ = nullptr;     // recorded where the side work ends, until the join
  const cudaMemPool_t pool_;
  FaultRecord* const faultRecord_;  // device memory, for the life of the device
  std::atomic<bool> faultsPossible_{false};  // index-checking work enqueued since the last snapshot
  EventPool events_;
  FaultSnapshots snapshots_;
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

RuntimeStatus runtimeStatus() {
  RuntimeStatus status;
  if (cudaRuntimeGetVersion(&status.runtimeVersion) != cudaSuccess) (void)cudaGetLastError();
  if (cudaDriverGetVersion(&status.driverVersion) != cudaSuccess) (void)cudaGetLastError();
  int count = 0;
  const cudaError_t error = cudaGetDeviceCount(&count);
  if (error != cudaSuccess) {
    (void)cudaGetLastError();
    status.deviceCountError = std::string(cudaGetErrorName(error)) + ": " + cudaGetErrorString(error);
  }
  return status;
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

PeerLink peerLink(int from, int to) {
  int access = 0;
  int atomics = 0;
  int rank = 0;
  MOEKIT_CUDA_CHECK(cudaDeviceGetP2PAttribute(&access, cudaDevP2PAttrAccessSupported, from, to));
  MOEKIT_CUDA_CHECK(cudaDeviceGetP2PAttribute(&atomics, cudaDevP2PAttrNativeAtomicSupported, from, to));
  MOEKIT_CUDA_CHECK(cudaDeviceGetP2PAttribute(&rank, cudaDevP2PAttrPerformanceRank, from, to));
  return PeerLink{access != 0, atomics != 0, rank};
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
