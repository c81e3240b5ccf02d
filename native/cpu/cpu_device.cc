#include "cpu_device.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <exception>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include <unistd.h>

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

// How much host memory tensors may hold, from MOEKIT_CPU_MEMORY_MB (unset or 0: no limit beyond
// the machine's). A service that must not be taken down by one huge request sets it: past it an
// allocation throws E_OOM instead of swapping or meeting the OOM killer.
class MemoryBudget {
 public:
  MemoryBudget() {
    const char* setting = std::getenv("MOEKIT_CPU_MEMORY_MB");
    const unsigned long long megabytes = setting != nullptr ? std::strtoull(setting, nullptr, 10) : 0;
    limit_ = megabytes == 0 ? SIZE_MAX : static_cast<size_t>(std::min<unsigned long long>(megabytes, SIZE_MAX >> 20)) << 20;
  }

  bool take(size_t nbytes) {
    size_t used = used_.load(std::memory_order_relaxed);
    do {
      if (nbytes > limit_ - used) return false;
    } while (!used_.compare_exchange_weak(used, used + nbytes, std::memory_order_relaxed));
    return true;
  }

  void give(size_t nbytes) { used_.fetch_sub(nbytes, std::memory_order_relaxed); }
  size_t limitBytes() const { return limit_; }
  size_t usedBytes() const { return used_.load(std::memory_order_relaxed); }

 private:
  size_t limit_ = SIZE_MAX;
  std::atomic<size_t> used_{0};
};

class CpuDevice final : public Device {
 public:
  int index() const override { return -1; }

  void setFailureSink(FailureSink sink) override { sink_ = std::move(sink); }

  // Each allocation starts with a header of kAllocationAlignment bytes holding its size, so that
  // release() can return it to the budget (MOEKIT_CPU_MEMORY_MB).
  void* allocate(size_t nbytes) override {
    const size_t rounded = (nbytes + kAllocationAlignment - 1) / kAllocationAlignment * kAllocationAlignment;
    const size_t total = rounded + kAllocationAlignment;
    if (!budget_.take(total)) {
      throw NativeError("E_OOM", "cpu: allocating " + std::to_string(nbytes) + " bytes would pass MOEKIT_CPU_MEMORY_MB (" +
                                     std::to_string(budget_.limitBytes() >> 20) + " MiB of tensors)");
    }
    void* base = std::aligned_alloc(kAllocationAlignment, total);
    if (base == nullptr) {
      budget_.give(total);
      throw NativeError("E_OOM", "cpu: out of memory allocating " + std::to_string(nbytes) + " bytes");
    }
    std::memcpy(base, &total, sizeof(total));
    return static_cast<uint8_t*>(base) + kAllocationAlignment;
  }

  // Host memory carries no owner to ask about: the caller's word is taken.
  void checkForeignMemory(const void*, size_t) const override {}

  void release(void* ptr) override {
    void* base = static_cast<uint8_t*>(ptr) - kAllocationAlignment;
    queue_.push([this, base] {
      size_t total;
      std::memcpy(&total, base, sizeof(total));
      std::free(base);
      budget_.give(total);
    });
  }

  MemoryInfo memoryInfo() override {
    MemoryInfo info;
    info.inUse = info.reserved = budget_.usedBytes();
    if (budget_.limitBytes() != SIZE_MAX) {
      info.total = budget_.limitBytes();
      info.free = info.total - std::min(info.total, info.inUse);
      return info;
    }
    const auto page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    info.total = static_cast<size_t>(sysconf(_SC_PHYS_PAGES)) * page;
    info.free = static_cast<size_t>(sysconf(_SC_AVPHYS_PAGES)) * page;
    return info;
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
  void addInt32(const AddInt32Args& args) override { pushOp(args, cpu::addInt32); }
  void expertSlots(const ExpertSlotsArgs& args) override { pushOp(args, cpu::expertSlots); }
  void fusedMoe(const FusedMoeArgs& args) override { pushOp(args, cpu::fusedMoe); }

 private:
  template <typename Args>
  void pushOp(const Args& args, void (*kernel)(const Args&)) {
    queue_.push([args, kernel] { kernel(args); }, args.ticket);
  }

  MemoryBudget budget_;
  WorkQueue queue_;  // after the budget: its last tasks give memory back to it
  FailureSink sink_;
};

}  // namespace

std::unique_ptr<Device> makeDevice() { return std::make_unique<CpuDevice>(); }

}  // namespace moekit::cpu
