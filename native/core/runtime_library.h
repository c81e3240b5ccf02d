// Shared libraries loaded at run time with dlopen instead of linked (NCCL, cuBLAS): build machines
// and CI have neither, so the addon declares the few entry points it uses by hand and looks the
// library up when first asked. What the two loaders share lives here.
#pragma once

#include <dlfcn.h>

#include <string>
#include <vector>

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

// Looks `name` up in `handle` into `function`; false when the library lacks it.
template <typename Function>
bool resolveSymbol(void* handle, const char* name, Function& function) {
  function = reinterpret_cast<Function>(dlsym(handle, name));
  return function != nullptr;
}

}  // namespace moekit
