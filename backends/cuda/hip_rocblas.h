/* rocBLAS for the HIP backend's float GEMMs, loaded at run time with dlopen (as RCCL is): libdsrt builds
 * without it (Debian 12 ships no rocBLAS) and uses it where ROCm installed it. Compiled into the HIP
 * build only. Without rocBLAS, or where it refuses a problem, the project's own GEMM kernels run. */
#ifndef DSRT_HIP_ROCBLAS_H
#define DSRT_HIP_ROCBLAS_H

#include <stddef.h>

#include "cuda_backend.h"

typedef struct dsrt_hip_rocblas dsrt_hip_rocblas;

/* Loads rocBLAS ($DSRT_ROCBLAS_LIBRARY, else librocblas.so and its versioned names). NULL with a
 * one-line reason when it is missing, lacks a function, or was built for another HIP runtime than the
 * one libdsrt uses (two runtimes in one process cannot share memory or streams). */
dsrt_hip_rocblas *dsrt_hip_rocblas_load(char *why, size_t why_len);
void dsrt_hip_rocblas_unload(dsrt_hip_rocblas *lib);

/* D = alpha op(A) B as g describes (column-major, batched when g->batch > 1) on `stream`, with the
 * rocBLAS handle kept in *handle (created on first use, bound to the stream at each call). Fails with
 * UNIMPLEMENTED when rocBLAS refuses the types or sizes, so the caller can run its own kernel. */
dsrt_status dsrt_hip_rocblas_gemm(const dsrt_hip_rocblas *lib, void **handle, gpuStream_t stream,
                                  const dsrt_gpu_blas_gemm *g, float alpha, const void *A, const void *B, void *D);
void dsrt_hip_rocblas_destroy_handle(const dsrt_hip_rocblas *lib, void *handle);

/* Whether more than one HIP runtime (libamdhip64) is mapped into the process; names them in why. */
bool dsrt_hip_runtimes_differ(char *why, size_t why_len);

#endif
