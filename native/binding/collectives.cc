#include "collectives.h"

#include "nccl/nccl_library.h"

namespace moekit::binding {
namespace {

// ncclInfo() → { available, path, problem, version }: loads libnccl.so.2 on first call.
Napi::Value NcclInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const nccl::Availability availability = nccl::probe();
  Napi::Object result = Napi::Object::New(env);
  result.Set("available", availability.available);
  result.Set("path", availability.path);
  result.Set("problem", availability.problem);
  result.Set("version", availability.version);
  return result;
}

}  // namespace

void RegisterCollectives(Napi::Env env, Napi::Object exports) {
  exports.Set("ncclInfo", Napi::Function::New<NcclInfo>(env, "ncclInfo"));
}

}  // namespace moekit::binding
