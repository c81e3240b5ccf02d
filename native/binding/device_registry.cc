#include "device_registry.h"

#include <map>
#include <mutex>
#include <utility>
#include <vector>

#include "core/errors.h"
#include "cpu/cpu_device.h"
#if MOEKIT_WITH_CUDA
#include "cuda/cuda_device.h"
#endif

namespace moekit::binding {
namespace {

std::unique_ptr<Device> createDevice(int index) {
  if (index == -1) return cpu::makeDevice();
#if MOEKIT_WITH_CUDA
  const int count = cuda::deviceCount();
  if (index >= 0 && index < count) return cuda::makeDevice(index);
  throw NativeError("E_DEVICE", "cuda:" + std::to_string(index) + " does not exist: this machine has " +
                                    std::to_string(count) + " CUDA device(s)");
#else
  throw NativeError("E_DEVICE", "cuda:" + std::to_string(index) +
                                    " is not available: this build of moekit has no CUDA backend (CPU only)");
#endif
}

// A device and the ledger of the ops enqueued on it, which hears of their failures.
struct RegisteredDevice {
  Device* device;
  OpLedger* ledger;
};

RegisteredDevice& registered(int index) {
  // Devices are deliberately never destroyed: tensors finalized during process teardown may still
  // release memory into them, and the OS reclaims everything at exit.
  static std::mutex mutex;
  static auto* devices = new std::map<int, RegisteredDevice>();
  std::lock_guard<std::mutex> lock(mutex);
  auto found = devices->find(index);
  if (found != devices->end()) return found->second;
  Device* device = createDevice(index).release();
  auto* ledger = new OpLedger();
  device->setFailureSink([ledger](FailureReport report) { ledger->resolve(report); });
  return devices->emplace(index, RegisteredDevice{device, ledger}).first->second;
}

}  // namespace

Device& deviceFor(int index) { return *registered(index).device; }

OpLedger& ledgerFor(int index) { return *registered(index).ledger; }

int cudaDeviceCount() {
#if MOEKIT_WITH_CUDA
  return cuda::deviceCount();
#else
  return 0;
#endif
}

bool cudaCompiledIn() {
#if MOEKIT_WITH_CUDA
  return true;
#else
  return false;
#endif
}

}  // namespace moekit::binding
