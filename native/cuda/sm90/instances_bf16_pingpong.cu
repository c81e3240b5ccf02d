// The sm90 grouped GEMM for bf16 operands and the ping-pong tile (sm90/shapes.h), compiled on its own.
#include "kernel.cuh"

namespace moekit::cuda::sm90 {

template void launchShape<BF16, PingPongTile>(const GroupedGemmArgs&, cudaStream_t, int32_t);

}  // namespace moekit::cuda::sm90
