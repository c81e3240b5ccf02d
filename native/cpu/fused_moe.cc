// The fused MoE op on the CPU: the separate ops in sequence (core/fused_moe_steps.h), with the
// intermediates in host memory freed when the op returns.
#include <algorithm>
#include <memory>
#include <vector>

#include "../core/fused_moe_steps.h"
#include "kernels.h"

namespace moekit::cpu {
namespace {

struct HostSteps {
  std::vector<std::unique_ptr<char[]>> buffers;

  TensorView scratch(DType dtype, std::vector<int64_t> shape) {
    TensorView view{nullptr, dtype, std::move(shape)};
    buffers.push_back(std::make_unique<char[]>(std::max<size_t>(view.nbytes(), 1)));
    view.data = buffers.back().get();
    return view;
  }
  void linear(const LinearArgs& args) { cpu::linear(args); }
  void routing(const RoutingArgs& args) { cpu::routing(args); }
  void permute(const PermuteArgs& args) { cpu::permute(args); }
  void groupedGemm(const GroupedGemmArgs& args) { cpu::groupedGemm(args); }
  void combine(const CombineArgs& args) { cpu::combine(args); }
};

}  // namespace

void fusedMoe(const FusedMoeArgs& args) {
  HostSteps steps;
  fusedMoeInSteps(args, steps);
}

}  // namespace moekit::cpu
