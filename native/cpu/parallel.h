// A small persistent thread pool for the CPU kernels. Ops run one at a time on the CPU device's
// worker thread and fan their loops out here.
#pragma once

#include <cstdint>
#include <functional>

namespace moekit::cpu {

// Splits [begin, end) into chunks of at least `grain` items and runs body(chunkBegin, chunkEnd)
// on the pool, returning when all are done. An exception in any chunk is rethrown here.
void parallelFor(int64_t begin, int64_t end, int64_t grain, const std::function<void(int64_t, int64_t)>& body);

}  // namespace moekit::cpu
