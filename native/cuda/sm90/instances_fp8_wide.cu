// The sm90 grouped GEMM for FP8 operands and the wide tile (sm90/shapes.h), compiled on its own.
#include "kernel_fp8.cuh"

namespace moekit::cuda::sm90 {

template void launchFp8Shape<Fp8WideTile>(const GroupedGemmArgs&, const uint8_t*, const float*, cudaStream_t, int32_t);

}  // namespace moekit::cuda::sm90
