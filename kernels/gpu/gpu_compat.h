/* Portability layer for the GPU kernels: one source builds with nvcc (CUDA) and hipcc (HIP).
 *
 * Kernels name only what is here (gpu_* functions and GPU_* macros) and in gpu_runtime.h instead of the
 * vendor runtime, so the two builds differ in these two headers and nowhere else. Rules the kernels
 * follow to stay portable:
 *  - The wave width is GPU_WARP_SIZE (32 on NVIDIA; 64 on CDNA, 32 on RDNA); block sizes are multiples
 *    of 64 so that every block holds whole waves on both, reductions loop over GPU_WARP_SIZE, and
 *    per-wave kernels count their waves on the device (gpu_nwarps) rather than trusting the host's
 *    idea of the width. Shared arrays indexed by wave hold 32 entries (1024 threads / 32).
 *  - Shuffles and ballots go through gpu_shfl_* / gpu_ballot (no lane masks on HIP; 64-bit ballots,
 *    so lane masks are uint64_t everywhere); lanes exchanging shared memory meet at gpu_syncwarp.
 *  - Tensor-core paths (mma.sync / ldmatrix / cp.async inline PTX) sit behind DSRT_GPU_HAVE_MMA, which
 *    only a CUDA build for sm_80+ defines; every op also has a plain path that runs anywhere, and the
 *    host never picks a tensor-core path in a HIP build (gpu_use_mma).
 *  - No vendor library calls inside kernels; the one host-side library call (the segmented sort of
 *    sampling) goes through gpu_segmented_sort_u64 below. */
#ifndef DSRT_GPU_COMPAT_H
#define DSRT_GPU_COMPAT_H

#include <stdint.h>

#include "gpu_runtime.h" /* gpuStream_t, gpuGetLastError, ...: the runtime API under one set of names */

#ifdef DSRT_GPU_HIP
#include <hip/hip_runtime.h>
/* The wave width of the code being compiled: 64 on CDNA (gfx9), 32 on RDNA (gfx10+) in HIP's default
 * wave32 mode. Newer clang has a builtin and deprecates the macro (clang 15, Debian's, has only the
 * macro). Never needed as a constant expression. The host pass never uses it: host code takes the
 * width from the device (dsrt_gpu_ctx::warp_size). */
#if defined(__HIP_DEVICE_COMPILE__) && __has_builtin(__builtin_amdgcn_wavefrontsize)
#define GPU_WARP_SIZE ((int)__builtin_amdgcn_wavefrontsize())
#elif defined(__HIP_DEVICE_COMPILE__) && defined(__AMDGCN_WAVEFRONT_SIZE)
#define GPU_WARP_SIZE __AMDGCN_WAVEFRONT_SIZE
#elif defined(__HIP_DEVICE_COMPILE__)
#define GPU_WARP_SIZE warpSize
#else
#define GPU_WARP_SIZE 64
#endif
#else
#include <cuda_runtime.h>
#define GPU_WARP_SIZE 32
/* Tensor-core (mma.sync) paths: CUDA device code for sm_80 and newer. The host side asks the
 * device's compute capability (dsrt_gpu_ctx::use_mma, gpu_use_mma) before choosing them. */
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

#ifdef DSRT_GPU_HIP
/* A wave runs in lockstep, but the compiler may move shared-memory accesses across a bare wave barrier:
 * the two fences make this lane's earlier writes visible to the other lanes' later reads. */
GPU_DEV void gpu_syncwarp(void)
{
    __builtin_amdgcn_fence(__ATOMIC_RELEASE, "wavefront");
    __builtin_amdgcn_wave_barrier();
    __builtin_amdgcn_fence(__ATOMIC_ACQUIRE, "wavefront");
}
#else
GPU_DEV void gpu_syncwarp(void) { __syncwarp(); }
#endif

/* Sets bits in the backend's error word, which lives in mapped host memory and only gains bits while
 * kernels run (the host clears it at a sync). CUDA: a system-wide atomic OR. HIP: an atomic on host
 * memory travels as a PCIe AtomicOp, which not every AMD platform routes, so a plain read and write is
 * used; the only race it loses is between writers of different bits, and one bit is defined. */
GPU_DEV void gpu_error_flag(unsigned *err, unsigned bits)
{
#ifdef DSRT_GPU_HIP
    volatile unsigned *w = err;
    *w = *w | bits;
#else
    atomicOr(err, bits);
#endif
}

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

/* ---- host side: the segmented sort of sampling ----
 * Defined only in the source that asks for it (DSRT_GPU_NEED_SORT before including this header): the
 * vendor headers are large. CUDA: cub; HIP: rocPRIM (what hipCUB wraps; Debian ships rocPRIM alone). */
#ifdef DSRT_GPU_NEED_SORT
#ifdef DSRT_GPU_HIP
#include <rocprim/device/device_segmented_radix_sort.hpp>
#else
#include <cub/cub.cuh>
#endif

/* Sorts n 64-bit keys ascending within each of `segments` segments [begin[i], end[i]), all 64 bits.
 * Called once with temp = NULL for *temp_bytes, then with that much temporary device memory. */
static inline gpuError_t gpu_segmented_sort_u64(void *temp, size_t *temp_bytes, const unsigned long long *in,
                                                unsigned long long *out, int n, int segments, const int *begin,
                                                const int *end, gpuStream_t s)
{
#ifdef DSRT_GPU_HIP
    return rocprim::segmented_radix_sort_keys(temp, *temp_bytes, in, out, (unsigned)n, (unsigned)segments, begin, end,
                                              0u, 64u, s, false);
#else
    return cub::DeviceSegmentedRadixSort::SortKeys(temp, *temp_bytes, in, out, n, segments, begin, end, 0, 64, s);
#endif
}
#endif

#endif
