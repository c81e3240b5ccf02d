// Which compilation pass may use Hopper's sm_90a-only instructions (wgmma, setmaxnreg). The addon
// is built for sm_80, sm_90a and compute_90 PTX (CMakeLists.txt); only the sm_90a pass compiles
// the real kernel, the others an empty body that is never launched (sm90::supports() asks for
// compute capability 9.0, which the driver serves from the sm_90a image).
#pragma once

#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define MOEKIT_SM90A_DEVICE 1
#else
#define MOEKIT_SM90A_DEVICE 0
#endif
