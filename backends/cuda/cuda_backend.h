/* The CUDA backend's private types: devices, streams with their scratch arenas and pinned staging,
 * events, graphs, and the cuBLASLt plan cache. C11 over the CUDA runtime's C API; kernels live in
 * kernels/gpu and are reached through gpu_ops.h. */
#ifndef DSRT_CUDA_BACKEND_H
#define DSRT_CUDA_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include "dsrt/backend_impl.h"
#include "gpu/gpu_ops.h"

#define DSRT_CUDA_MAX_DEVICES 64
#define DSRT_CUDA_STAGE_BYTES (8u << 20) /* each of the two pinned staging buffers */
#define DSRT_CUDA_LT_CACHE 64

/* How cuBLASLt's block-scaled FP8 GEMM is called (found by the self-check, cuda_linear.c). */
typedef struct dsrt_cuda_lt_variant {
    int w_is_a;     /* weights are cuBLASLt's A operand (128x128 scales), activations B (1x128) */
    int d_row;      /* D row-major (else column-major) */
    int act_kmajor; /* activation scales [M][K/128] (else [K/128][M]) */
    int w_scale_t;  /* weight scales [K/128][N/128 padded to 4] (else [N/128][K/128 padded to 4]) */
} dsrt_cuda_lt_variant;

typedef struct dsrt_cuda_device {
    int index;
    int sm_count, cc_major, cc_minor, smem_optin, warp_size;
    cudaMemPool_t pool;
    cudaStream_t alloc_stream; /* buffer allocations and frees, ordered on their own */
    unsigned *err_host;        /* error word: mapped pinned memory kernels write through err_dev */
    unsigned *err_dev;
    dsrt_gpu_fp8_gemm fp8_mode; /* DSRT_CUDA_FP8_GEMM=own (default)|auto|library|simt */
    bool fp8_simt;              /* "simt": plain cores only, for testing the portable path */
    int lt_fp8_checked;         /* 0 not yet, 1 library agrees with our kernel, -1 it does not */
    char lt_fp8_note[400];
    dsrt_cuda_lt_variant lt_variant;
    bool use_mma;
} dsrt_cuda_device;

typedef struct dsrt_cuda_block {
    void *ptr;
    size_t size;
    struct dsrt_cuda_block *next;
} dsrt_cuda_block;

typedef struct dsrt_cuda_lt_plan {
    int64_t key[20];
    bool used;
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t a, b, d;
    cublasLtMatmulAlgo_t algo;
    size_t workspace;
    uint64_t last_use;
} dsrt_cuda_lt_plan;

typedef struct dsrt_cuda_stream {
    dsrt_cuda_device *dev;
    cudaStream_t s;
    /* scratch arena for ops: bump allocation reset at each op; grown blocks retire and are freed
     * (stream-ordered) at the next op */
    void *scratch;
    size_t scratch_size, scratch_used;
    dsrt_cuda_block *retired;
    /* during graph capture, scratch comes from blocks the graph will own */
    bool capturing;
    dsrt_cuda_block *capture_blocks;
    dsrt_status scratch_err;
    /* pinned staging for pageable host memory */
    void *stage[2];
    cudaEvent_t stage_ev[2];
    bool stage_used[2];
    int stage_next;
    cublasLtHandle_t lt;
    dsrt_cuda_lt_plan plans[DSRT_CUDA_LT_CACHE];
    uint64_t plan_clock;
} dsrt_cuda_stream;

typedef struct dsrt_cuda_graph {
    cudaGraph_t graph;
    cudaGraphExec_t exec;
    dsrt_cuda_block *blocks;
    int device;
} dsrt_cuda_graph;

/* Status for a failed CUDA call (NULL when it succeeded). */
dsrt_status dsrt_cuda_check(cudaError_t e, const char *what);
#define DSRT_CUDA_TRY(call, what) DSRT_TRY(dsrt_cuda_check((call), (what)))

/* Fills the kernels' launch context for an op on stream s. */
void dsrt_cuda_ctx(dsrt_cuda_stream *s, dsrt_gpu_ctx *c);
/* Scratch for the current op (gpu_ops.h contract). */
dsrt_status dsrt_cuda_scratch(void *user, size_t bytes, void **ptr);

/* linear, linear_grouped, head_linear: cuBLASLt where it fits, else our kernels (cuda_linear.c). */
dsrt_status dsrt_cuda_linear(dsrt_cuda_stream *s, const dsrt_gpu_ctx *c, const dsrt_op *op);
dsrt_status dsrt_cuda_head_linear(dsrt_cuda_stream *s, const dsrt_gpu_ctx *c, const dsrt_op *op);
void dsrt_cuda_lt_release(dsrt_cuda_stream *s);

/* The stream, device index of HAL objects known to be CUDA ones (for cuda_nccl.c). */
cudaStream_t dsrt_cuda_stream_of(void *sctx);
int dsrt_cuda_device_of(void *dctx);

#endif
