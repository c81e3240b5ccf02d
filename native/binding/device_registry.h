// One Device per index (-1 = CPU, N = cuda:N), created on first use and kept for the life of the
// process.
#pragma once

#include <string>

#include "core/device.h"
#include "op_ledger.h"

namespace moekit::binding {

// Throws NativeError("E_DEVICE") for an index that is not a usable device on this machine.
Device& deviceFor(int index);
// The ledger of the ops enqueued on that device (op_ledger.h); throws as deviceFor does.
OpLedger& ledgerFor(int index);

int cudaDeviceCount();
bool cudaCompiledIn();

}  // namespace moekit::binding
