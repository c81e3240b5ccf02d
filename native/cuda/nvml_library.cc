#include "nvml_library.h"

#include <cuda_runtime.h>

#include <map>
#include <mutex>
#include <string>

#include "../core/errors.h"
#include "check.h"

namespace moekit::nvml {
namespace {

// NVML's C ABI (nvml.h), declared by hand: only what read() uses.
using Return = int;
constexpr Return kSuccess = 0;
using Handle = struct nvmlDevice_st*;
enum ClockType : int { kClockSm = 1, kClockMemory = 2 };  // nvmlClockType_t
constexpr int kTemperatureGpu = 0;                        // NVML_TEMPERATURE_GPU
constexpr double kMilliwattsPerWatt = 1000.0;
constexpr int kPciBusIdLength = 64;  // NVML_DEVICE_PCI_BUS_ID_BUFFER_SIZE is 32; cudaDeviceGetPCIBusId takes any

const RuntimeLibrarySpec kLibrary = {"NVML", "MOEKIT_NVML_PATH", {"libnvidia-ml.so.1"}, "set MOEKIT_NVML_PATH"};

struct Api {
  void* handle = nullptr;
  Availability availability;
  Return (*init)() = nullptr;
  Return (*handleByPciBusId)(const char*, Handle*) = nullptr;
  Return (*clockInfo)(Handle, int, unsigned*) = nullptr;
  Return (*powerUsage)(Handle, unsigned*) = nullptr;
  Return (*powerLimit)(Handle, unsigned*) = nullptr;
  Return (*temperature)(Handle, int, unsigned*) = nullptr;
  Return (*clockReasons)(Handle, unsigned long long*) = nullptr;
  const char* (*errorString)(Return) = nullptr;
};

Api load() {
  Api api;
  api.handle = openRuntimeLibrary(kLibrary, &api.availability);
  if (api.handle == nullptr) return api;
  const bool complete = resolveSymbol(api.handle, "nvmlInit_v2", api.init) &&
                        resolveSymbol(api.handle, "nvmlDeviceGetHandleByPciBusId_v2", api.handleByPciBusId) &&
                        resolveSymbol(api.handle, "nvmlDeviceGetClockInfo", api.clockInfo) &&
                        resolveSymbol(api.handle, "nvmlDeviceGetPowerUsage", api.powerUsage) &&
                        resolveSymbol(api.handle, "nvmlDeviceGetEnforcedPowerLimit", api.powerLimit) &&
                        resolveSymbol(api.handle, "nvmlDeviceGetTemperature", api.temperature) &&
                        resolveSymbol(api.handle, "nvmlDeviceGetCurrentClocksThrottleReasons", api.clockReasons) &&
                        resolveSymbol(api.handle, "nvmlErrorString", api.errorString);
  if (!complete) {
    api.availability.problem = api.availability.path + " lacks an NVML entry point moekit needs";
    return api;
  }
  const Return status = api.init();
  if (status != kSuccess) {
    api.availability.problem = std::string("nvmlInit failed: ") + api.errorString(status);
    return api;
  }
  api.availability.available = true;
  return api;
}

const Api& api() { return loadOnce<Api, load>(); }

void check(const Api& library, Return status, const char* what) {
  if (status != kSuccess) throw NativeError("E_CUDA", std::string(what) + " failed: " + library.errorString(status));
}

// NVML's handle of CUDA device `device`, looked up once.
Handle handleFor(const Api& library, int device) {
  static std::mutex mutex;
  static auto* handles = new std::map<int, Handle>();
  std::lock_guard<std::mutex> lock(mutex);
  auto found = handles->find(device);
  if (found != handles->end()) return found->second;
  char busId[kPciBusIdLength] = {};
  MOEKIT_CUDA_CHECK(cudaDeviceGetPCIBusId(busId, kPciBusIdLength, device));
  Handle handle = nullptr;
  check(library, library.handleByPciBusId(busId, &handle), "nvmlDeviceGetHandleByPciBusId");
  handles->emplace(device, handle);
  return handle;
}

}  // namespace

Availability probe() { return api().availability; }

Reading read(int device) {
  const Api& library = requireAvailable(api(), "E_CUDA", kLibrary.displayName);
  Handle handle = handleFor(library, device);
  unsigned sm = 0, memory = 0, milliwatts = 0, limitMilliwatts = 0, celsius = 0;
  unsigned long long reasons = 0;
  check(library, library.clockInfo(handle, kClockSm, &sm), "nvmlDeviceGetClockInfo");
  check(library, library.clockInfo(handle, kClockMemory, &memory), "nvmlDeviceGetClockInfo");
  check(library, library.powerUsage(handle, &milliwatts), "nvmlDeviceGetPowerUsage");
  check(library, library.powerLimit(handle, &limitMilliwatts), "nvmlDeviceGetEnforcedPowerLimit");
  check(library, library.temperature(handle, kTemperatureGpu, &celsius), "nvmlDeviceGetTemperature");
  check(library, library.clockReasons(handle, &reasons), "nvmlDeviceGetCurrentClocksThrottleReasons");
  Reading reading;
  reading.smClockMHz = sm;
  reading.memoryClockMHz = memory;
  reading.powerW = milliwatts / kMilliwattsPerWatt;
  reading.powerLimitW = limitMilliwatts / kMilliwattsPerWatt;
  reading.temperatureC = celsius;
  reading.clockEventReasons = reasons;
  return reading;
}

}  // namespace moekit::nvml
