// cast, fillRandom and addInt32 on the GPU: grid-stride elementwise kernels. cast converts between
// the float dtypes and Float8E4M3 (float_access.cuh) in any direction.
#include "../core/random.h"
#include "check.h"
#include "flat_launch.h"
#include "float_access.cuh"
#include "kernels.h"

namespace moekit::cuda {
namespace {

template <typename In, typename Out>
__global__ void castKernel(const typename In::Storage* input, typename Out::Storage* output, int64_t count) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    output[i] = Out::store(In::load(input[i]));
  }
}

// value(i) = scale * (2 * u(seed, i) - 1): 2u - 1 is exact in float32 (u has 24 bits), so with the
// single rounding of the product every backend produces the same bits.
template <typename Out>
__global__ void fillRandomKernel(typename Out::Storage* output, int64_t count, uint64_t seed, float scale) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float unit = uniformHash(seed, static_cast<uint64_t>(i));
    output[i] = Out::store(scale * (2.0f * unit - 1.0f));
  }
}

// Unsigned arithmetic: wrapping is defined (op_args.h), where signed overflow is not.
__global__ void addInt32Kernel(const int32_t* input, int32_t* accumulator, int64_t count) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    accumulator[i] = static_cast<int32_t>(static_cast<uint32_t>(accumulator[i]) + static_cast<uint32_t>(input[i]));
  }
}

}  // namespace

void cast(const CastArgs& args, cudaStream_t stream) {
  const int64_t count = args.input.numel();
  if (count == 0) return;
  // Same dtype (int32, uint8 and float8 included): a plain copy, bit for bit.
  if (args.input.dtype == args.output.dtype) {
    MOEKIT_CUDA_CHECK(cudaMemcpyAsync(args.output.data, args.input.data, args.input.nbytes(), cudaMemcpyDeviceToDevice, stream));
    return;
  }
  dispatchConvertible(args.input.dtype, "cast input", [&](auto in) {
    dispatchConvertible(args.output.dtype, "cast output", [&](auto out) {
      using In = decltype(in);
      using Out = decltype(out);
      castKernel<In, Out><<<FlatLaunch::blocks(count), FlatLaunch::kThreads, 0, stream>>>(
          static_cast<const typename In::Storage*>(args.input.data), static_cast<typename Out::Storage*>(args.output.data), count);
      MOEKIT_CHECK_LAUNCH("castKernel");
    });
  });
}

void fillRandom(const FillRandomArgs& args, cudaStream_t stream) {
  const int64_t count = args.output.numel();
  if (count == 0) return;
  dispatchFloat(args.output.dtype, "fillRandom output", [&](auto out) {
    using Out = decltype(out);
    fillRandomKernel<Out><<<FlatLaunch::blocks(count), FlatLaunch::kThreads, 0, stream>>>(
        static_cast<typename Out::Storage*>(args.output.data), count, args.seed, args.scale);
    MOEKIT_CHECK_LAUNCH("fillRandomKernel");
  });
}

void addInt32(const AddInt32Args& args, cudaStream_t stream) {
  const int64_t count = args.input.numel();
  if (count == 0) return;
  addInt32Kernel<<<FlatLaunch::blocks(count), FlatLaunch::kThreads, 0, stream>>>(
      args.input.as<int32_t>(), args.accumulator.as<int32_t>(), count);
  MOEKIT_CHECK_LAUNCH("addInt32Kernel");
}

}  // namespace moekit::cuda
