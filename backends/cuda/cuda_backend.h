/* The CUDA backend's private types: devices, streams with their scratch arenas and pinned staging,
 * events, graphs, and the cuBLASLt plan cache. C11 over the runtime API of gpu/gpu_runtime.h; kernels
 * live in kernels/gpu and are reached through gpu_ops.h.
 *
 * These sources build twice: as the "cuda" backend (CUDA runtime, cuBLASLt, NCCL) and, with
 * DSRT_GPU_HIP defined, as the "hip" backend (HIP runtime, rocBLAS and RCCL loaded at run time; see
 * docs/hip.md). What differs between the two is under DSRT_GPU_HIP / DSRT_GPU_HAVE_LT. */
#ifndef DSRT_CUDA_BACKEND_H
#define DSRT_CUDA_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gpu/gpu_runtime.h"

#ifndef DSRT_GPU_HIP
#include <cublasLt.h>
#define DSRT_GPU_HAVE_LT 1 /* cuBLASLt: float GEMMs and the block-scaled FP8 GEMM */
#else
#define DSRT_GPU_HAVE_LT 0
/* The HIP build links into the same libdsrt as the CUDA build: its external names differ. */
#define dsrt_cuda_backend_vtable dsrt_hip_backend_vtable
#define dsrt_cuda_check dsrt_hip_check
#define dsrt_cuda_ctx dsrt_hip_ctx
#define dsrt_cuda_scratch dsrt_hip_scratch
#define dsrt_cuda_linear dsrt_hip_linear
#define dsrt_cuda_head_linear dsrt_hip_head_linear
#define dsrt_cuda_blas_release dsrt_hip_blas_release
#define dsrt_cuda_stream_of dsrt_hip_stream_of
#define dsrt_cuda_device_of dsrt_hip_device_of
#endif

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

struct dsrt_hip_rocblas;
struct dsrt_cuda_stream;

#define DSRT_CUDA_MAX_CAPTURES 8 /* streams of a device capturing at once */
#define DSRT_CUDA_MAX_JOINED 8   /* streams joined to one capture */

typedef struct dsrt_cuda_device {
    int index;
    int sm_count, cc_major, cc_minor, smem_optin, warp_size;
    gpuMemPool_t pool;         /* the default stream-ordered pool; NULL where the runtime has none */
    gpuStream_t alloc_stream;  /* buffer allocations and frees, ordered on their own */
    unsigned *err_host;        /* error word: mapped pinned memory kernels write through err_dev */
    unsigned *err_dev;
    dsrt_gpu_fp8_gemm fp8_mode; /* DSRT_CUDA_FP8_GEMM=exact (default)|own|dequant|auto|library|simt */
    int64_t fp8_dequant_m;      /* exact/auto: rows from which the dequantized route runs (DSRT_CUDA_FP8_DEQUANT_M) */
    bool fp8_simt;              /* "simt": plain cores only, for testing the portable path */
    int lt_fp8_checked;         /* 0 not yet, 1 library agrees with our kernel, -1 it does not */
    char lt_fp8_note[400];
    dsrt_cuda_lt_variant lt_variant;
    bool use_mma;
    bool use_wgmma;    /* Hopper's wgmma kernels: a 9.0 device, an sm_90a image, use_mma */
    bool early_launch; /* programmatic dependent launch (sm_90+, not DSRT_CUDA_NO_PDL) */
    struct dsrt_hip_rocblas *blas; /* HIP: rocBLAS when loaded (hip_rocblas.h), else NULL */
    char blas_note[200];           /* HIP: why rocBLAS is not used */
    /* streams of this device now capturing a graph (origins, not the streams that joined them) */
    struct dsrt_cuda_stream *capturing[DSRT_CUDA_MAX_CAPTURES];
} dsrt_cuda_device;

typedef struct dsrt_cuda_block {
    void *ptr;
    size_t size;
    struct dsrt_cuda_block *next;
} dsrt_cuda_block;

#if DSRT_GPU_HAVE_LT
typedef struct dsrt_cuda_lt_plan {
    int64_t key[20];
    bool used;
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t a, b, d;
    cublasLtMatmulAlgo_t algo;
    size_t workspace;
    uint64_t last_use;
} dsrt_cuda_lt_plan;
#endif

#define DSRT_CUDA_CHAIN 32

typedef struct dsrt_cuda_stream {
    dsrt_cuda_device *dev;
    gpuStream_t s;
    /* scratch arena for ops: bump allocation reset at each op; grown blocks retire and are freed
     * (stream-ordered) at the next op */
    void *scratch;
    size_t scratch_size, scratch_used;
    dsrt_cuda_block *retired;
    /* during graph capture, scratch comes from blocks the graph will own */
    bool capturing;
    dsrt_cuda_block *capture_blocks;
    /* A stream that joined another's capture (it waited on an event recorded there) records into that
     * graph: its origin owns its scratch blocks and ends its capture. The origin lists its joiners. */
    struct dsrt_cuda_stream *capture_origin;
    struct dsrt_cuda_stream *joined[DSRT_CUDA_MAX_JOINED];
    int n_joined;
    dsrt_status scratch_err;
    /* Buffers written by the ops since the last one whose kernels launch normally (those wait for all
     * earlier work): early-launched kernels of the next op may overlap their writers. -1: too many to
     * list, nothing is settled until the next normal op. */
    const void *chain[DSRT_CUDA_CHAIN];
    int chain_n;
    /* pinned staging for pageable host memory */
    void *stage[2];
    gpuEvent_t stage_ev[2];
    bool stage_used[2];
    int stage_next;
#if DSRT_GPU_HAVE_LT
    cublasLtHandle_t lt;
    dsrt_cuda_lt_plan plans[DSRT_CUDA_LT_CACHE];
    uint64_t plan_clock;
#else
    void *blas_handle; /* rocblas_handle of this stream, created on first use */
#endif
} dsrt_cuda_stream;

typedef struct dsrt_cuda_graph {
    gpuGraph_t graph;
    gpuGraphExec_t exec;
    dsrt_cuda_block *blocks;
    int device;
} dsrt_cuda_graph;

/* A float GEMM as the vendor BLAS sees it: D (m x n, column-major, leading dimension ldd) = alpha
 * op(A) B, A stored k x m (transa) or m x k, B k x n; `batch` problems `sa`, `sb`, `sd` elements apart.
 * in: the dtype of A and B (f32, bf16 or f16); out: D's. */
typedef struct dsrt_gpu_blas_gemm {
    dsrt_dtype in, out;
    int transa;
    int64_t m, n, k, lda, ldb, ldd;
    int64_t batch, sa, sb, sd;
} dsrt_gpu_blas_gemm;

/* Status for a failed runtime call (NULL when it succeeded). */
dsrt_status dsrt_cuda_check(gpuError_t e, const char *what);
#define DSRT_CUDA_TRY(call, what) DSRT_TRY(dsrt_cuda_check((call), (what)))

/* Fills the kernels' launch context for an op on stream s. */
void dsrt_cuda_ctx(dsrt_cuda_stream *s, dsrt_gpu_ctx *c);
/* Scratch for the current op (gpu_ops.h contract). */
dsrt_status dsrt_cuda_scratch(void *user, size_t bytes, void **ptr);

/* linear, linear_grouped, head_linear: the vendor BLAS where it fits (cuBLASLt; rocBLAS on HIP), else
 * our kernels (cuda_linear.c). */
dsrt_status dsrt_cuda_linear(dsrt_cuda_stream *s, const dsrt_gpu_ctx *c, const dsrt_op *op);
dsrt_status dsrt_cuda_head_linear(dsrt_cuda_stream *s, const dsrt_gpu_ctx *c, const dsrt_op *op);
/* Frees a stream's BLAS state (cuBLASLt handle and plans; rocBLAS handle). */
void dsrt_cuda_blas_release(dsrt_cuda_stream *s);

/* The stream, device index of HAL objects known to be this backend's (for cuda_nccl.c). */
gpuStream_t dsrt_cuda_stream_of(void *sctx);
int dsrt_cuda_device_of(void *dctx);

#endif
