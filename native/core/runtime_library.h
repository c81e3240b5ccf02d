// Shared libraries loaded at run time with dlopen instead of linked (NCCL, cuBLAS, NVML): build
// machines and CI have none of them, so the addon declares the few entry points it uses by hand and
// looks the library up when first asked. What the loaders share lives here.
#pragma once

#include <dlfcn.h>

#include <mutex>
#include <string>
#include <vector>

#include "errors.h"

namespace moekit {

// Whether a run-time library can be loaded, and from where (or why not).
struct LibraryAvailability {
  bool available = false;
  std::string path;     // the file loaded
  std::string problem;  // why it is not available
  int version = 0;      // the library's own version number (e.g. 22803 for NCCL 2.28.3)
};

// Where to look for a library published under `names` (newest first): the file that environment
// variable `pathVariable` names, or those names inside the folder it names; without it, each
// name for the dynamic loader's own search (LD_LIBRARY_PATH, its cache, the system folders).
std::vector<std::string> libraryCandidates(const char* pathVariable, const std::vector<std::string>& names);

// dlopen()s the first candidate that loads and returns its handle, with its path in *path; or
// nullptr, with every candidate's loader error (joined by "; ") in *failures.
void* openFirstLibrary(const std::vector<std::string>& candidates, std::string* path, std::string* failures);

// What a loader asks for: the library's name in messages, the variable that may name its file or
// folder, its file names (newest first), and what to suggest when none loads.
struct RuntimeLibrarySpec {
  const char* displayName;   // "cuBLAS"
  const char* pathVariable;  // "MOEKIT_CUBLAS_PATH"
  std::vector<std::string> names;
  const char* advice;        // "install NCCL or set MOEKIT_NCCL_PATH"
};

// Opens the first of spec's candidates that loads, recording its path in *availability; or
// nullptr, with availability->problem naming the first candidate, every loader error and what to do.
void* openRuntimeLibrary(const RuntimeLibrarySpec& spec, LibraryAvailability* availability);

// The skeleton of every loader: `Api` (a struct with a LibraryAvailability `availability`) made by
// Load() on the first call, from any thread, and shared after; never unloaded.
template <typename Api, Api (*Load)()>
const Api& loadOnce() {
  static std::once_flag once;
  static Api* loaded = nullptr;
  std::call_once(once, [] { loaded = new Api(Load()); });
  return *loaded;
}

// `api` when its library loaded, else NativeError(code, "<displayName> is not available: <problem>").
template <typename Api>
const Api& requireAvailable(const Api& api, const char* code, const char* displayName) {
  if (!api.availability.available) throw NativeError(code, std::string(displayName) + " is not available: " + api.availability.problem);
  return api;
}

// Looks `name` up in `handle` into `function`; false when the library lacks it.
template <typename Function>
bool resolveSymbol(void* handle, const char* name, Function& function) {
  function = reinterpret_cast<Function>(dlsym(handle, name));
  return function != nullptr;
}

}  // namespace moekit
