// The CUDA devices, compiled only with the CUDA backend (MOEKIT_WITH_CUDA).
#pragma once

#include <cuda_runtime.h>

#include <memory>
#include <string>

#include "../core/device.h"

namespace moekit::cuda {

struct DeviceInfo {
  int index = 0;
  std::string name;
  size_t totalMemory = 0;
  int major = 0;
  int minor = 0;
  int multiprocessors = 0;
};

// Number of usable CUDA devices; 0 (not an error) when there is no driver or no GPU.
int deviceCount();
DeviceInfo deviceInfo(int index);

// What the driver tells of the path from one GPU to another (cudaDeviceGetP2PAttribute). It does
// not name NVLink: lib/parallel/link.ts reads native atomics as its sign (PCIe peer access
// lacks them), a heuristic NVML would make exact.
struct PeerLink {
  bool access = false;         // the two can map each other's memory (P2P)
  bool nativeAtomics = false;  // atomics work natively over the link
  int performanceRank = 0;     // the driver's relative rank of the link, 0 the best
};
PeerLink peerLink(int from, int to);

// Whether CUDA can start here, in numbers (lib/runtime.ts turns them into advice).
struct RuntimeStatus {
  int runtimeVersion = 0;       // the CUDA runtime linked in (cudart is static), e.g. 12040 for 12.4
  int driverVersion = 0;        // the newest CUDA the driver supports; 0 when no driver loads
  std::string deviceCountError; // why cudaGetDeviceCount failed ("" when it did not)
};
RuntimeStatus runtimeStatus();

// A captured CUDA graph, instantiated and ready to replay on the stream it was captured from.
class Graph {
 public:
  virtual ~Graph() = default;
  // Enqueues one replay, ordered after the device's earlier work. Returns at once. Faults that
  // its kernels report carry the tickets their ops had when they were captured.
  virtual void launch() = 0;
};

// What a CUDA device offers beyond moekit::Device: recording its work into a graph. The binding
// reaches it with dynamic_cast from the Device it holds.
class CudaDevice : public Device {
 public:
  // Starts recording: work enqueued on this device by the calling thread (ops, copy, allocate,
  // release) is captured instead of run, until endCapture(). upload, download, whenIdle and
  // waitIdle cannot be captured and throw E_DEVICE meanwhile. Memory allocated during the capture
  // becomes part of the graph: each replay allocates it again, so it must also be released during
  // the capture (and must not be used outside the graph).
  virtual void beginCapture() = 0;
  // Stops recording and instantiates the graph. Throws CudaError if the capture failed (it is
  // abandoned then, and the device works normally again).
  virtual std::unique_ptr<Graph> endCapture() = 0;
  // The stream all of this device's work is ordered on (for work enqueued outside the ops, such
  // as NCCL collectives).
  virtual cudaStream_t stream() const = 0;
  // Moves the device's work onto `stream` (a user's stream; nullptr = the device's own), after
  // making it wait for everything already enqueued, so ordering is kept across the switch.
  // The caller keeps `stream` alive while the device uses it. Not allowed while capturing.
  virtual void setStream(cudaStream_t stream) = 0;
  // Enqueues one replay of `graph` on the device's stream (Graph::launch).
  virtual void launchGraph(cudaGraphExec_t graph) = 0;
};

// A device with its own non-blocking stream and a stream-ordered memory pool
// (cudaMallocAsync with a release threshold). Throws CudaError when the GPU cannot be used.
std::unique_ptr<Device> makeDevice(int index);

}  // namespace moekit::cuda
