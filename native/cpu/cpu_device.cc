#include "cpu_device.h"

#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <exception>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "../core/errors.h"
#include "kernels.h"

namespace moekit::cpu {
namespace {

// Host allocations are aligned for vector loads.
constexpr size_t kAllocationAlignment = 64;

// An ordered queue of tasks served by one thread. An op's task carries the op's ticket: if it
// throws, the failure is kept as that op's (handed to the FailureSink at the next idle marker);
// any other task that throws records a failure of the device, which the next whenIdle() callback
// reports (and clears), as a CUDA stream reports a sticky error.
class WorkQueue {
 public:
  using Task = std::function<void()>;

  WorkQueue() : worker_([this] { serve(); }) {}

  ~WorkQueue() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    worker_.join();
  }

  // `ticket` is the op's, or 0 for a task that is not an op.
  void push(Task task, uint64_t ticket = 0) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      tasks_.push_back(Queued{std::move(task), ticket});
    }
    wake_.notify_all();
  }

  // Takes the recorded device failure, if any: {code, message}.
  std::pair<std::string, std::string> takeFailure() {
    std::lock_guard<std::mutex> lock(mutex_);
    auto failure = std::make_pair(std::move(failureCode_), std::move(failureMessage_));
    failureCode_.clear();
    failureMessage_.clear();
    return failure;
  }

  // On the worker thread: the ops that failed since the last call.
  std::vector<OpFailure> takeOpFailures() { return std::exchange(opFailures_, {}); }

 private:
  struct Queued {
    Task task;
    uint64_t ticket;
  };

  void serve() {
    for (;;) {
      Queued next;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [this] { return stopping_ || !tasks_.empty(); });
        if (tasks_.empty()) return;  // stopping and drained
        next = std::move(tasks_.front());
        tasks_.pop_front();
      }
      run(next);
    }
  }

  void run(const Queued& next) {
    try {
      next.task();
    } catch (const NativeError& error) {
      recordFailure(next.ticket, error.code(), error.what());
    } catch (const std::bad_alloc&) {
      recordFailure(next.ticket, "E_OOM", "cpu: out of host memory");
    } catch (const std::exception& error) {
      recordFailure(next.ticket, "E_NATIVE", error.what());
    }
  }

  void recordFailure(uint64_t ticket, const std::string& code, const std::string& message) {
    if (ticket != 0) {
      opFailures_.push_back(OpFailure{ticket, code, message});
      return;
    }
    std::lock_guard<std::mutex> lock(mutex_);
    if (failureCode_.empty()) {  // keep the first failure: later ones are usually its consequences
      failureCode_ = code;
      failureMessage_ = message;
    }
  }

  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Queued> tasks_;
  bool stopping_ = false;
  std::string failureCode_;
  std::string failureMessage_;
  std::vector<OpFailure> opFailures_;  // worker thread only
  std::thread worker_;  // last: starts after the members it uses exist
};

class CpuDevice final : public Device {
 public:
  int index() const override { return -1; }

  void setFailureSink(FailureSink sink) override { sink_ = std::move(sink); }

  void* allocate(size_t nbytes) override {
    const size_t rounded = (nbytes + kAllocationAlignment - 1) / kAllocationAlignment * kAllocationAlignment;
    void* ptr = std::aligned_alloc(kAllocationAlignment, rounded);
    if (ptr == nullptr) throw NativeError("E_OOM", "cpu: out of memory allocating " + std::to_string(nbytes) + " bytes");
    return ptr;
  }

  void release(void* ptr) override {
    queue_.push([ptr] { std::free(ptr); });
  }

  // Host memory is the device memory here, but the copy still waits its turn in the queue, so
  // it cannot overwrite data that earlier ops are still reading. hostSrc must be read now:
  // it is copied into a buffer that travels with the task.
  void upload(void* dst, const void* hostSrc, size_t nbytes) override {
    auto staged = std::shared_ptr<char[]>(new char[nbytes]);
    std::memcpy(staged.get(), hostSrc, nbytes);
    queue_.push([dst, staged, nbytes] { std::memcpy(dst, staged.get(), nbytes); });
  }

  void download(void* hostDst, const void* src, size_t nbytes) override {
    queue_.push([hostDst, src, nbytes] { std::memcpy(hostDst, src, nbytes); });
  }

  void copy(void* dst, const void* src, size_t nbytes) override {
    queue_.push([dst, src, nbytes] { std::memmove(dst, src, nbytes); });
  }

  void whenIdle(IdleCallback done, uint64_t completedThrough) override {
    queue_.push([this, completedThrough, done = std::move(done)] {
      if (sink_) sink_(FailureReport{completedThrough, queue_.takeOpFailures(), {}});
      auto [code, message] = queue_.takeFailure();
      done(code, message);
    });
  }

  // Each op copies its arguments into the task: the views stay valid because memory is only
  // freed by release(), which is queued behind the op.
  void routing(const RoutingArgs& args) override { pushOp(args, cpu::routing); }
  void permute(const PermuteArgs& args) override { pushOp(args, cpu::permute); }
  void groupedGemm(const GroupedGemmArgs& args) override { pushOp(args, cpu::groupedGemm); }
  void linear(const LinearArgs& args) override { pushOp(args, cpu::linear); }
  void activation(const ActivationArgs& args) override { pushOp(args, cpu::activation); }
  void combine(const CombineArgs& args) override { pushOp(args, cpu::combine); }
  void cast(const CastArgs& args) override { pushOp(args, cpu::cast); }
  void fillRandom(const FillRandomArgs& args) override { pushOp(args, cpu::fillRandom); }
  void quantizeWeights(const QuantizeWeightsArgs& args) override { pushOp(args, cpu::quantizeWeights); }

 private:
  template <typename Args>
  void pushOp(const Args& args, void (*kernel)(const Args&)) {
    queue_.push([args, kernel] { kernel(args); }, args.ticket);
  }

  WorkQueue queue_;
  FailureSink sink_;
};

}  // namespace

std::unique_ptr<Device> makeDevice() { return std::make_unique<CpuDevice>(); }

}  // namespace moekit::cpu
