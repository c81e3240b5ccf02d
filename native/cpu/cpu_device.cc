#include "cpu_device.h"

#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <exception>
#include <mutex>
#include <thread>

#include "../core/errors.h"
#include "kernels.h"

namespace moekit::cpu {
namespace {

// Host allocations are aligned for vector loads.
constexpr size_t kAllocationAlignment = 64;

// An ordered queue of tasks served by one thread. A task that throws records the failure; the
// next whenIdle()/waitIdle() reports it (and clears it), as a CUDA stream reports a sticky error.
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

  void push(Task task) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      tasks_.push_back(std::move(task));
    }
    wake_.notify_all();
  }

  // Takes the recorded failure, if any: {code, message}.
  std::pair<std::string, std::string> takeFailure() {
    std::lock_guard<std::mutex> lock(mutex_);
    auto failure = std::make_pair(std::move(failureCode_), std::move(failureMessage_));
    failureCode_.clear();
    failureMessage_.clear();
    return failure;
  }

 private:
  void serve() {
    for (;;) {
      Task task;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [this] { return stopping_ || !tasks_.empty(); });
        if (tasks_.empty()) return;  // stopping and drained
        task = std::move(tasks_.front());
        tasks_.pop_front();
      }
      run(task);
    }
  }

  void run(const Task& task) {
    try {
      task();
    } catch (const NativeError& error) {
      recordFailure(error.code(), error.what());
    } catch (const std::exception& error) {
      recordFailure("E_NATIVE", error.what());
    }
  }

  void recordFailure(const std::string& code, const std::string& message) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (failureCode_.empty()) {  // keep the first failure: later ones are usually its consequences
      failureCode_ = code;
      failureMessage_ = message;
    }
  }

  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Task> tasks_;
  bool stopping_ = false;
  std::string failureCode_;
  std::string failureMessage_;
  std::thread worker_;  // last: starts after the members it uses exist
};

class CpuDevice final : public Device {
 public:
  int index() const override { return -1; }

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

  void whenIdle(IdleCallback done) override {
    queue_.push([this, done = std::move(done)] {
      auto [code, message] = queue_.takeFailure();
      done(code, message);
    });
  }

  // Each op copies its arguments into the task: the views stay valid because memory is only
  // freed by release(), which is queued behind the op.
  void routing(const RoutingArgs& args) override { queue_.push([args] { cpu::routing(args); }); }
  void permute(const PermuteArgs& args) override { queue_.push([args] { cpu::permute(args); }); }
  void groupedGemm(const GroupedGemmArgs& args) override { queue_.push([args] { cpu::groupedGemm(args); }); }
  void linear(const LinearArgs& args) override { queue_.push([args] { cpu::linear(args); }); }
  void activation(const ActivationArgs& args) override { queue_.push([args] { cpu::activation(args); }); }
  void combine(const CombineArgs& args) override { queue_.push([args] { cpu::combine(args); }); }
  void cast(const CastArgs& args) override { queue_.push([args] { cpu::cast(args); }); }
  void fillRandom(const FillRandomArgs& args) override { queue_.push([args] { cpu::fillRandom(args); }); }

 private:
  WorkQueue queue_;
};

}  // namespace

std::unique_ptr<Device> makeDevice() { return std::make_unique<CpuDevice>(); }

}  // namespace moekit::cpu
