/* Portability layer for the GPU kernels: one source builds with nvcc (CUDA) and hipcc (HIP).
 *
 * Kernels name only what is here (gpu_* functions and GPU_* macros) instead of the vendor runtime, so
 * a HIP build changes this file and nothing else. Rules the kernels follow to stay portable:
 *  - The wave width is GPU_WARP_SIZE (32 on NVIDIA, 64 or 32 on AMD); block sizes are multiples of 64
 *    so that every block holds whole waves on both, and reductions loop over GPU_WARP_SIZE.
 *  - Shuffles and ballots go through gpu_shfl_* / gpu_ballot (no lane masks on HIP; 64-bit ballots).
 *  - Tensor-core paths (mma.sync inline PTX) sit behind DSRT_GPU_HAVE_MMA, which only a CUDA build for
 *    sm_80+ defines; every op also has a plain path that runs anywhere.
 *  - No vendor library calls inside kernels. */
#ifndef DSRT_GPU_COMPAT_H
#define DSRT_GPU_COMPAT_H

#include <stdint.h>

#if defined(__HIPCC__) || defined(__HIP_PLATFORM_AMD__)
#include <hip/hip_runtime.h>
#define DSRT_GPU_HIP 1
typedef hipStream_t gpuStream_t;
typedef hipError_t gpuError_t;
#define gpuSuccess hipSuccess
#define gpuGetLastError hipGetLastError
#define gpuGetErrorString hipGetErrorString
#define gpuFuncSetAttribute(fn, attr, v) hipFuncSetAttribute((const void *)(fn), attr, v)
#define gpuFuncAttributeMaxDynamicSharedMemorySize hipFuncAttributeMaxDynamicSharedMemorySize
#define gpuMemsetAsync hipMemsetAsync
#define gpuMemcpyAsync hipMemcpyAsync
#define gpuMemcpyDeviceToDevice hipMemcpyDeviceToDevice
#define GPU_CUB_NS hipcub
#if defined(__HIP_DEVICE_COMPILE__) && defined(__AMDGCN_WAVEFRONT_SIZE)
#define GPU_WARP_SIZE __AMDGCN_WAVEFRONT_SIZE
#else
#define GPU_WARP_SIZE 64
#endif
#else
#include <cuda_runtime.h>
typedef cudaStream_t gpuStream_t;
typedef cudaError_t gpuError_t;
#define gpuSuccess cudaSuccess
#define gpuGetLastError cudaGetLastError
#define gpuGetErrorString cudaGetErrorString
#define gpuFuncSetAttribute(fn, attr, v) cudaFuncSetAttribute(fn, attr, v)
#define gpuFuncAttributeMaxDynamicSharedMemorySize cudaFuncAttributeMaxDynamicSharedMemorySize
#define gpuMemsetAsync cudaMemsetAsync
#define gpuMemcpyAsync cudaMemcpyAsync
#define gpuMemcpyDeviceToDevice cudaMemcpyDeviceToDevice
#define GPU_CUB_NS cub
#define GPU_WARP_SIZE 32
/* Tensor-core (mma.sync) paths: CUDA device code for sm_80 and newer. The host side asks
 * dsrt_gpu_have_mma() (compute capability) before choosing them. */
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
#define DSRT_GPU_HAVE_MMA 1
#endif
#endif

#define GPU_DEV static __device__ __forceinline__

#ifdef __CUDACC__
GPU_DEV float gpu_shfl_xor(float v, int m) { return __shfl_xor_sync(0xffffffffu, v, m); }
GPU_DEV int gpu_shfl_xor_i(int v, int m) { return __shfl_xor_sync(0xffffffffu, v, m); }
GPU_DEV double gpu_shfl_xor_d(double v, int m) { return __shfl_xor_sync(0xffffffffu, v, m); }
GPU_DEV unsigned long long gpu_shfl_xor_u64(unsigned long long v, int m)
{
    return __shfl_xor_sync(0xffffffffu, v, m);
}
GPU_DEV float gpu_shfl(float v, int src) { return __shfl_sync(0xffffffffu, v, src); }
GPU_DEV int gpu_shfl_i(int v, int src) { return __shfl_sync(0xffffffffu, v, src); }
GPU_DEV uint64_t gpu_ballot(int pred) { return (uint64_t)__ballot_sync(0xffffffffu, pred); }
#else
GPU_DEV float gpu_shfl_xor(float v, int m) { return __shfl_xor(v, m); }
GPU_DEV int gpu_shfl_xor_i(int v, int m) { return __shfl_xor(v, m); }
GPU_DEV double gpu_shfl_xor_d(double v, int m) { return __shfl_xor(v, m); }
GPU_DEV unsigned long long gpu_shfl_xor_u64(unsigned long long v, int m) { return __shfl_xor(v, m); }
GPU_DEV float gpu_shfl(float v, int src) { return __shfl(v, src); }
GPU_DEV int gpu_shfl_i(int v, int src) { return __shfl(v, src); }
GPU_DEV uint64_t gpu_ballot(int pred) { return (uint64_t)__ballot(pred); }
#endif

/* histogram[bin] += 1 for the calling lane (bin < 0: none). Every lane of the warp must call it
 * together (loops run whole warps). On CUDA, lanes that hit the same bin add once together:
 * clustered data (scores sharing their top bits) would otherwise serialize on one shared word. */
GPU_DEV void gpu_hist_add(int *hist, int bin)
{
#if defined(__CUDACC__) && defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 700
    unsigned peers = __match_any_sync(0xffffffffu, bin);
    int leader = __ffs(peers) - 1;
    if (bin >= 0 && (int)(threadIdx.x % 32) == leader) atomicAdd(&hist[bin], __popc(peers));
#else
    if (bin >= 0) atomicAdd(&hist[bin], 1);
#endif
}

#ifdef DSRT_GPU_HIP
GPU_DEV void gpu_syncwarp(void) { __builtin_amdgcn_wave_barrier(); }
#else
GPU_DEV void gpu_syncwarp(void) { __syncwarp(); }
#endif

GPU_DEV int gpu_lane(void) { return (int)(threadIdx.x % GPU_WARP_SIZE); }
GPU_DEV int gpu_warp(void) { return (int)(threadIdx.x / GPU_WARP_SIZE); }
GPU_DEV int gpu_nwarps(void) { return (int)(blockDim.x / GPU_WARP_SIZE); }
GPU_DEV int gpu_popc64(uint64_t v) { return __popcll((unsigned long long)v); }
/* Bits of lanes below this one, for ranks inside a ballot. */
GPU_DEV uint64_t gpu_lanes_below(void)
{
    int l = gpu_lane();
    return l == 0 ? 0ull : (~0ull >> (64 - l));
}

#endif
