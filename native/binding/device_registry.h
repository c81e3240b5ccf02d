// One Device per index (-1 = CPU, N = cuda:N), created on first use and kept for the life of the
// process.
#pragma once

#include <string>

#include "core/device.h"

namespace moekit::binding {

// Throws NativeError("E_DEVICE") for an index that is not a usable device on this machine.
Device& deviceFor(int index);

int cudaDeviceCount();
bool cudaCompiledIn();

}  // namespace moekit::binding
