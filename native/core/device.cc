#include "device.h"

#include <condition_variable>
#include <mutex>
#include <string>

#include "errors.h"

namespace moekit {

void Device::waitIdle(uint64_t completedThrough) {
  std::mutex mutex;
  std::condition_variable finished;
  bool idle = false;
  std::string code, message;
  whenIdle([&](const std::string& failureCode, const std::string& failureMessage) {
    std::lock_guard<std::mutex> lock(mutex);
    code = failureCode;
    message = failureMessage;
    idle = true;
    finished.notify_all();
  }, completedThrough);
  std::unique_lock<std::mutex> lock(mutex);
  finished.wait(lock, [&] { return idle; });
  if (!code.empty()) throw NativeError(code, message);
}

}  // namespace moekit
