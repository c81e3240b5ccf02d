#include "parallel.h"

#include <algorithm>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace moekit::cpu {
namespace {

// Chunks per thread: more than one evens out uneven work (experts with different row counts).
constexpr int64_t kChunksPerThread = 4;

// Set while this thread runs a chunk: a parallelFor called from inside one runs inline, since
// the pool is busy with the outer loop (waiting for it would deadlock).
thread_local bool runningChunk = false;

class ThreadPool {
 public:
  ThreadPool() {
    const unsigned count = std::max(1u, std::thread::hardware_concurrency());
    // The calling thread works too, so count - 1 helpers keep every core busy.
    for (unsigned i = 1; i < count; ++i) helpers_.emplace_back([this] { serve(); });
  }

  int64_t threads() const { return static_cast<int64_t>(helpers_.size()) + 1; }

  void run(int64_t chunks, const std::function<void(int64_t)>& chunk) {
    std::unique_lock<std::mutex> runLock(runMutex_);  // one parallel loop at a time
    {
      std::lock_guard<std::mutex> lock(mutex_);
      job_ = &chunk;
      jobChunks_ = chunks;
      nextChunk_ = 0;
      unfinished_ = chunks;
      failure_ = nullptr;
      ++generation_;
    }
    wake_.notify_all();
    work();
    std::unique_lock<std::mutex> lock(mutex_);
    done_.wait(lock, [this] { return unfinished_ == 0; });
    job_ = nullptr;
    if (failure_) std::rethrow_exception(failure_);
  }

 private:
  void serve() {
    uint64_t seen = 0;
    for (;;) {
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return generation_ != seen; });
        seen = generation_;
      }
      work();
    }
  }

  // Takes chunks until none are left. After a failure the remaining chunks are skipped: the
  // caller gets the first exception and the loop's result is discarded anyway.
  void work() {
    for (;;) {
      const std::function<void(int64_t)>* job;
      int64_t index;
      bool failed;
      {
        std::lock_guard<std::mutex> lock(mutex_);
        if (job_ == nullptr || nextChunk_ >= jobChunks_) return;
        job = job_;
        index = nextChunk_++;
        failed = failure_ != nullptr;
      }
      std::exception_ptr failure;
      if (!failed) failure = runChunk(*job, index);
      std::lock_guard<std::mutex> lock(mutex_);
      if (failure && !failure_) failure_ = failure;
      if (--unfinished_ == 0) done_.notify_all();
    }
  }

  static std::exception_ptr runChunk(const std::function<void(int64_t)>& job, int64_t index) {
    runningChunk = true;
    std::exception_ptr failure;
    try {
      job(index);
    } catch (...) {
      failure = std::current_exception();
    }
    runningChunk = false;
    return failure;
  }

  std::mutex runMutex_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable done_;
  const std::function<void(int64_t)>* job_ = nullptr;
  int64_t jobChunks_ = 0;
  int64_t nextChunk_ = 0;
  int64_t unfinished_ = 0;
  uint64_t generation_ = 0;
  std::exception_ptr failure_;
  std::vector<std::thread> helpers_;
};

ThreadPool& pool() {
  // Never destroyed: helper threads wait forever and the OS reclaims them at exit.
  static ThreadPool* instance = new ThreadPool();
  return *instance;
}

}  // namespace

void parallelFor(int64_t begin, int64_t end, int64_t grain, const std::function<void(int64_t, int64_t)>& body) {
  const int64_t count = end - begin;
  if (count <= 0) return;
  if (runningChunk) {
    body(begin, end);
    return;
  }
  ThreadPool& threads = pool();
  const int64_t maxChunks = std::max<int64_t>(1, count / std::max<int64_t>(1, grain));
  const int64_t chunks = std::min(maxChunks, threads.threads() * kChunksPerThread);
  if (chunks == 1) {
    body(begin, end);
    return;
  }
  const int64_t chunkSize = (count + chunks - 1) / chunks;
  threads.run(chunks, [&](int64_t chunk) {
    const int64_t chunkBegin = begin + chunk * chunkSize;
    const int64_t chunkEnd = std::min(end, chunkBegin + chunkSize);
    if (chunkBegin < chunkEnd) body(chunkBegin, chunkEnd);
  });
}

}  // namespace moekit::cpu
