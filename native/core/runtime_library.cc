#include "runtime_library.h"

#include <sys/stat.h>

#include <cstdlib>

namespace moekit {

std::vector<std::string> libraryCandidates(const char* pathVariable, const std::vector<std::string>& names) {
  const char* explicitPath = std::getenv(pathVariable);
  if (explicitPath == nullptr || *explicitPath == '\0') return names;
  struct stat info {};
  if (stat(explicitPath, &info) != 0 || !S_ISDIR(info.st_mode)) return {explicitPath};
  std::vector<std::string> paths;
  for (const std::string& name : names) paths.push_back(std::string(explicitPath) + "/" + name);
  return paths;
}

void* openFirstLibrary(const std::vector<std::string>& candidates, std::string* path, std::string* failures) {
  failures->clear();
  for (const std::string& candidate : candidates) {
    void* handle = dlopen(candidate.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (handle != nullptr) {
      *path = candidate;
      return handle;
    }
    *failures += (failures->empty() ? "" : "; ") + std::string(dlerror());
  }
  return nullptr;
}

void* openRuntimeLibrary(const RuntimeLibrarySpec& spec, LibraryAvailability* availability) {
  const std::vector<std::string> candidates = libraryCandidates(spec.pathVariable, spec.names);
  std::string failures;
  void* handle = openFirstLibrary(candidates, &availability->path, &failures);
  if (handle == nullptr) {
    availability->problem = "cannot load " + candidates.front() + " (" + failures + "); " + spec.advice;
  }
  return handle;
}

}  // namespace moekit
