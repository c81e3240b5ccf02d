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

void Device::beginSideWork() {
  if (sideWork_ != SideWork::None) throw NativeError("E_DEVICE", "side work has begun already and is not joined yet");
  forkSideQueue();
  sideWork_ = SideWork::Open;
}

void Device::endSideWork() {
  if (sideWork_ != SideWork::Open) throw NativeError("E_DEVICE", "endSideWork: no side work has begun");
  leaveSideQueue();
  sideWork_ = SideWork::Ended;
}

void Device::joinSideWork() {
  if (sideWork_ == SideWork::None) return;
  if (sideWork_ == SideWork::Open) throw NativeError("E_DEVICE", "joinSideWork: the side work has not ended");
  joinSideQueue();
  sideWork_ = SideWork::None;
}

}  // namespace moekit
