// Errors raised in native code. The binding turns each into a MoekitError in JavaScript whose
// `code` is the string given here (see lib/errors.ts for the list).
#pragma once

#include <stdexcept>
#include <string>

namespace moekit {

class NativeError : public std::runtime_error {
 public:
  NativeError(std::string code, const std::string& message)
      : std::runtime_error(message), code_(std::move(code)) {}
  const std::string& code() const { return code_; }

 private:
  std::string code_;
};

// A CUDA runtime failure; message carries cudaGetErrorString. Out-of-memory uses code E_OOM.
class CudaError : public NativeError {
 public:
  using NativeError::NativeError;
};

}  // namespace moekit
