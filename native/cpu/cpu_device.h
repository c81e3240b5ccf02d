// The CPU device: a single worker thread runs enqueued work in order, so JavaScript calls return
// at once and a large forward never blocks the event loop. Ops inside may fan out to the shared
// thread pool (parallel.h).
#pragma once

#include <memory>

#include "../core/device.h"

namespace moekit::cpu {

std::unique_ptr<Device> makeDevice();

}  // namespace moekit::cpu
