// The sm90 grouped GEMM for weight-only weights (sm90/kernel_wq.cuh) with bf16 operands, compiled on its own.
#include "kernel_wq.cuh"

namespace moekit::cuda::sm90 {

template void launchWqShape<BF16>(const GroupedGemmArgs&, cudaStream_t, bool, int32_t);

}  // namespace moekit::cuda::sm90
