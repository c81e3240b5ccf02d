// The CUDA backend: one host function per op that enqueues its kernels on `stream` and returns at
// once, without any host synchronisation (so a forward can be captured in a CUDA graph).
// Every launch is checked; failures throw moekit::CudaError. Semantics: native/core/op_args.h.
#pragma once

#include <cuda_runtime.h>

#include "../core/op_args.h"

namespace moekit::cuda {

void routing(const RoutingArgs& args, cudaStream_t stream);
void permute(const PermuteArgs& args, cudaStream_t stream);
void groupedGemm(const GroupedGemmArgs& args, cudaStream_t stream);
void linear(const LinearArgs& args, cudaStream_t stream);
void activation(const ActivationArgs& args, cudaStream_t stream);
// activation() over only the rows [rowOffsets[0], rowOffsets[groups]) (device offsets): the
// grouped GEMM's unfused activation, which must leave rows no expert owns untouched.
void activationInRows(const ActivationArgs& args, const int32_t* rowOffsets, int32_t groups, cudaStream_t stream);
void combine(const CombineArgs& args, cudaStream_t stream);
void cast(const CastArgs& args, cudaStream_t stream);
void fillRandom(const FillRandomArgs& args, cudaStream_t stream);
void addInt32(const AddInt32Args& args, cudaStream_t stream);
void expertSlots(const ExpertSlotsArgs& args, cudaStream_t stream);
void fusedMoe(const FusedMoeArgs& args, cudaStream_t stream);
void quantizeWeights(const QuantizeWeightsArgs& args, cudaStream_t stream);

// Index checks alone (index_checks.cu), for calls whose main kernel has nothing to compute: a
// grouped GEMM's offsets[0..experts] against `rows`, a combine's sources against [-1, rows); faults
// are reported as `op`'s.
void checkExpertOffsets(const int32_t* offsets, int32_t experts, int64_t rows, const OpIdentity& op, cudaStream_t stream);
void checkSourceRows(const int32_t* sources, int64_t count, int64_t rows, const OpIdentity& op, cudaStream_t stream);

}  // namespace moekit::cuda
