/* The GPU runtime API under one set of names (gpu*), mapped to the CUDA runtime (cuda*) or to the HIP
 * runtime (hip*). C and C++: the backend host code (the .c files of backends/cuda, C11) and the
 * kernels' launchers (the .cu files of kernels/gpu) both use it, so each of those sources builds once
 * per runtime:
 *
 *    CUDA: nvcc / the C compiler with the CUDA Toolkit's headers        -> the "cuda" backend
 *    HIP:  hipcc / the C compiler with DSRT_GPU_HIP and ROCm's headers  -> the "hip" backend
 *
 * DSRT_GPU_HIP selects HIP (the build defines it for every HIP object; hipcc's __HIPCC__ implies it).
 * A host compiler building against HIP also needs __HIP_PLATFORM_AMD__ (the build defines it).
 *
 * Only what dsrt calls is mapped. Where the two APIs differ in shape rather than in name (graph
 * instantiation, pointer attributes, pinned allocation, properties older ROCm lacks) a small inline
 * function says what dsrt means instead of a macro. */
#ifndef DSRT_GPU_RUNTIME_H
#define DSRT_GPU_RUNTIME_H

#include <stdbool.h>
#include <stddef.h>

#if defined(__HIPCC__) && !defined(DSRT_GPU_HIP)
#define DSRT_GPU_HIP 1
#endif

#ifdef DSRT_GPU_HIP
#include <hip/hip_runtime_api.h>

#define DSRT_GPU_RT_NAME "hip"   /* backend name, device labels ("hip:0"), message prefixes */
#define DSRT_GPU_RT_TITLE "HIP"  /* the runtime's name in sentences */
#define GPU_API(fn) "hip" fn     /* the runtime call a message names: GPU_API("Malloc") is "hipMalloc" */
#define DSRT_GPU_ENV(x) "DSRT_HIP_" x /* environment switches: DSRT_GPU_ENV("NO_BLAS") */

typedef hipError_t gpuError_t;
typedef hipStream_t gpuStream_t;
typedef hipEvent_t gpuEvent_t;
typedef hipGraph_t gpuGraph_t;
typedef hipGraphExec_t gpuGraphExec_t;
typedef hipMemPool_t gpuMemPool_t;
typedef hipDeviceProp_t gpuDeviceProp;

#define gpuSuccess hipSuccess
#define gpuErrorMemoryAllocation hipErrorOutOfMemory
#define gpuErrorNotReady hipErrorNotReady
#define gpuStreamNonBlocking hipStreamNonBlocking
#define gpuEventDisableTiming hipEventDisableTiming
#define gpuMemcpyHostToDevice hipMemcpyHostToDevice
#define gpuMemcpyDeviceToHost hipMemcpyDeviceToHost
#define gpuMemcpyDeviceToDevice hipMemcpyDeviceToDevice
#define gpuStreamCaptureModeRelaxed hipStreamCaptureModeRelaxed
#define gpuMemPoolAttrReleaseThreshold hipMemPoolAttrReleaseThreshold
#define gpuDevAttrMemoryClockRate hipDeviceAttributeMemoryClockRate
#define gpuDevAttrClockRate hipDeviceAttributeClockRate
#define gpuDevAttrMemoryPoolsSupported hipDeviceAttributeMemoryPoolsSupported
#define gpuFuncAttributeMaxDynamicSharedMemorySize hipFuncAttributeMaxDynamicSharedMemorySize

#define gpuGetLastError hipGetLastError
#define gpuGetErrorString hipGetErrorString
#define gpuGetErrorName hipGetErrorName
#define gpuGetDeviceCount hipGetDeviceCount
#define gpuGetDeviceProperties hipGetDeviceProperties
#define gpuDeviceGetAttribute hipDeviceGetAttribute
#define gpuDriverGetVersion hipDriverGetVersion
#define gpuRuntimeGetVersion hipRuntimeGetVersion
#define gpuSetDevice hipSetDevice
#define gpuStreamCreateWithFlags hipStreamCreateWithFlags
#define gpuStreamDestroy hipStreamDestroy
#define gpuStreamSynchronize hipStreamSynchronize
#define gpuStreamWaitEvent hipStreamWaitEvent
#define gpuDeviceGetDefaultMemPool hipDeviceGetDefaultMemPool
#define gpuMemPoolSetAttribute hipMemPoolSetAttribute
#define gpuMallocFromPoolAsync hipMallocFromPoolAsync
#define gpuFreeAsync hipFreeAsync
#define gpuMalloc hipMalloc
#define gpuFree hipFree
#define gpuMemGetInfo hipMemGetInfo
#define gpuFreeHost hipHostFree
#define gpuHostGetDevicePointer hipHostGetDevicePointer
#define gpuMemcpy hipMemcpy
#define gpuMemcpyAsync hipMemcpyAsync
#define gpuMemset hipMemset
#define gpuMemsetAsync hipMemsetAsync
#define gpuEventCreateWithFlags hipEventCreateWithFlags
#define gpuEventDestroy hipEventDestroy
#define gpuEventRecord hipEventRecord
#define gpuEventSynchronize hipEventSynchronize
#define gpuEventQuery hipEventQuery
#define gpuStreamBeginCapture hipStreamBeginCapture
#define gpuStreamEndCapture hipStreamEndCapture
#define gpuGraphLaunch hipGraphLaunch
#define gpuGraphExecDestroy hipGraphExecDestroy
#define gpuGraphDestroy hipGraphDestroy
#define gpuFuncSetAttribute(fn, attr, v) hipFuncSetAttribute((const void *)(fn), attr, v)

/* Pinned host memory the device can address (mapped) or only copy from fast (pinned). hipHostMalloc
 * replaces the deprecated hipHostAlloc. */
static inline gpuError_t gpuHostAllocMapped(void **p, size_t bytes) { return hipHostMalloc(p, bytes, hipHostMallocMapped); }
static inline gpuError_t gpuHostAllocPinned(void **p, size_t bytes) { return hipHostMalloc(p, bytes, hipHostMallocDefault); }

/* HIP keeps the CUDA 11 form of graph instantiation (error node and log arguments). */
static inline gpuError_t gpuGraphInstantiate(gpuGraphExec_t *exec, gpuGraph_t graph)
{
    return hipGraphInstantiate(exec, graph, NULL, NULL, 0);
}

/* Debian's HIP 5.2 has no hipGraphUpload (ROCm 5.3 added it): there the first launch uploads. */
static inline gpuError_t gpuGraphUpload(gpuGraphExec_t exec, gpuStream_t s)
{
    (void)exec;
    (void)s;
    return hipSuccess;
}

/* Whether p is page-locked host memory the runtime knows (false for pageable memory). ROCm 6 renamed
 * the attribute field `memoryType` to `type`, as CUDA spells it. */
static inline bool gpu_is_pinned_host(const void *p)
{
    hipPointerAttribute_t a;
    if (hipPointerGetAttributes(&a, p) != hipSuccess) {
        (void)hipGetLastError();
        return false;
    }
#if HIP_VERSION_MAJOR >= 6
    return a.type == hipMemoryTypeHost;
#else
    return a.memoryType == hipMemoryTypeHost;
#endif
}

/* Shared memory (LDS) a block may use. AMD has no opt-in above a default: a block may use all of it,
 * which hipDeviceProp_t::sharedMemPerBlock reports (64 KiB on CDNA and RDNA). */
static inline int gpu_prop_smem_optin(const gpuDeviceProp *p) { return (int)p->sharedMemPerBlock; }

#else /* CUDA */
#include <cuda_runtime_api.h>

#define DSRT_GPU_RT_NAME "cuda"
#define DSRT_GPU_RT_TITLE "CUDA"
#define GPU_API(fn) "cuda" fn
#define DSRT_GPU_ENV(x) "DSRT_CUDA_" x

typedef cudaError_t gpuError_t;
typedef cudaStream_t gpuStream_t;
typedef cudaEvent_t gpuEvent_t;
typedef cudaGraph_t gpuGraph_t;
typedef cudaGraphExec_t gpuGraphExec_t;
typedef cudaMemPool_t gpuMemPool_t;
typedef struct cudaDeviceProp gpuDeviceProp;

#define gpuSuccess cudaSuccess
#define gpuErrorMemoryAllocation cudaErrorMemoryAllocation
#define gpuErrorNotReady cudaErrorNotReady
#define gpuStreamNonBlocking cudaStreamNonBlocking
#define gpuEventDisableTiming cudaEventDisableTiming
#define gpuMemcpyHostToDevice cudaMemcpyHostToDevice
#define gpuMemcpyDeviceToHost cudaMemcpyDeviceToHost
#define gpuMemcpyDeviceToDevice cudaMemcpyDeviceToDevice
#define gpuStreamCaptureModeRelaxed cudaStreamCaptureModeRelaxed
#define gpuMemPoolAttrReleaseThreshold cudaMemPoolAttrReleaseThreshold
#define gpuDevAttrMemoryClockRate cudaDevAttrMemoryClockRate
#define gpuDevAttrClockRate cudaDevAttrClockRate
#define gpuDevAttrMemoryPoolsSupported cudaDevAttrMemoryPoolsSupported
#define gpuFuncAttributeMaxDynamicSharedMemorySize cudaFuncAttributeMaxDynamicSharedMemorySize

#define gpuGetLastError cudaGetLastError
#define gpuGetErrorString cudaGetErrorString
#define gpuGetErrorName cudaGetErrorName
#define gpuGetDeviceCount cudaGetDeviceCount
#define gpuGetDeviceProperties cudaGetDeviceProperties
#define gpuDeviceGetAttribute cudaDeviceGetAttribute
#define gpuDriverGetVersion cudaDriverGetVersion
#define gpuRuntimeGetVersion cudaRuntimeGetVersion
#define gpuSetDevice cudaSetDevice
#define gpuStreamCreateWithFlags cudaStreamCreateWithFlags
#define gpuStreamDestroy cudaStreamDestroy
#define gpuStreamSynchronize cudaStreamSynchronize
#define gpuStreamWaitEvent cudaStreamWaitEvent
#define gpuDeviceGetDefaultMemPool cudaDeviceGetDefaultMemPool
#define gpuMemPoolSetAttribute cudaMemPoolSetAttribute
#define gpuMallocFromPoolAsync cudaMallocFromPoolAsync
#define gpuFreeAsync cudaFreeAsync
#define gpuMalloc cudaMalloc
#define gpuFree cudaFree
#define gpuMemGetInfo cudaMemGetInfo
#define gpuFreeHost cudaFreeHost
#define gpuHostGetDevicePointer cudaHostGetDevicePointer
#define gpuMemcpy cudaMemcpy
#define gpuMemcpyAsync cudaMemcpyAsync
#define gpuMemset cudaMemset
#define gpuMemsetAsync cudaMemsetAsync
#define gpuEventCreateWithFlags cudaEventCreateWithFlags
#define gpuEventDestroy cudaEventDestroy
#define gpuEventRecord cudaEventRecord
#define gpuEventSynchronize cudaEventSynchronize
#define gpuEventQuery cudaEventQuery
#define gpuStreamBeginCapture cudaStreamBeginCapture
#define gpuStreamEndCapture cudaStreamEndCapture
#define gpuGraphLaunch cudaGraphLaunch
#define gpuGraphUpload cudaGraphUpload
#define gpuGraphExecDestroy cudaGraphExecDestroy
#define gpuGraphDestroy cudaGraphDestroy
#define gpuFuncSetAttribute(fn, attr, v) cudaFuncSetAttribute(fn, attr, v)

static inline gpuError_t gpuHostAllocMapped(void **p, size_t bytes) { return cudaHostAlloc(p, bytes, cudaHostAllocMapped); }
static inline gpuError_t gpuHostAllocPinned(void **p, size_t bytes) { return cudaHostAlloc(p, bytes, cudaHostAllocDefault); }

static inline gpuError_t gpuGraphInstantiate(gpuGraphExec_t *exec, gpuGraph_t graph)
{
    return cudaGraphInstantiate(exec, graph, 0);
}

static inline bool gpu_is_pinned_host(const void *p)
{
    struct cudaPointerAttributes a;
    if (cudaPointerGetAttributes(&a, p) != cudaSuccess) {
        (void)cudaGetLastError();
        return false;
    }
    return a.type == cudaMemoryTypeHost;
}

static inline int gpu_prop_smem_optin(const gpuDeviceProp *p)
{
    return (int)(p->sharedMemPerBlockOptin ? p->sharedMemPerBlockOptin : p->sharedMemPerBlock);
}
#endif

#endif
