/* The GPU kernels' host interface, in C: what a GPU backend (CUDA or HIP) calls to run the ops of ops.h
 * on its device. Each launcher takes a validated op and a launch context, enqueues kernels
 * on the context's stream and returns at once; launch failures come back as statuses with the op's
 * name. Errors found in data while running (bad group offsets, ...) set bits in the context's error
 * word, which the backend reads when the stream is synchronized. */
#ifndef DSRT_GPU_OPS_H
#define DSRT_GPU_OPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dsrt/ops.h"
#include "dsrt/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The kernels build once per runtime and both builds can link into one libdsrt (a CUDA and a HIP
 * backend side by side): the HIP build's launchers carry a hip_ infix. Sources keep the plain names. */
#if defined(DSRT_GPU_HIP) || defined(__HIPCC__)
#define dsrt_gpu_tensor_of dsrt_gpu_hip_tensor_of
#define dsrt_gpu_convert dsrt_gpu_hip_convert
#define dsrt_gpu_embed dsrt_gpu_hip_embed
#define dsrt_gpu_rms_norm dsrt_gpu_hip_rms_norm
#define dsrt_gpu_layer_norm dsrt_gpu_hip_layer_norm
#define dsrt_gpu_rope dsrt_gpu_hip_rope
#define dsrt_gpu_swiglu dsrt_gpu_hip_swiglu
#define dsrt_gpu_add dsrt_gpu_hip_add
#define dsrt_gpu_act_quant dsrt_gpu_hip_act_quant
#define dsrt_gpu_hadamard dsrt_gpu_hip_hadamard
#define dsrt_gpu_cache_write dsrt_gpu_hip_cache_write
#define dsrt_gpu_mla_prefill dsrt_gpu_hip_mla_prefill
#define dsrt_gpu_mla_decode dsrt_gpu_hip_mla_decode
#define dsrt_gpu_wgmma_image dsrt_gpu_hip_wgmma_image
#define dsrt_gpu_indexer_scores dsrt_gpu_hip_indexer_scores
#define dsrt_gpu_topk dsrt_gpu_hip_topk
#define dsrt_gpu_moe_gate dsrt_gpu_hip_moe_gate
#define dsrt_gpu_moe_dispatch dsrt_gpu_hip_moe_dispatch
#define dsrt_gpu_moe_combine dsrt_gpu_hip_moe_combine
#define dsrt_gpu_sample dsrt_gpu_hip_sample
#define dsrt_gpu_fill dsrt_gpu_hip_fill
#define dsrt_gpu_head_linear dsrt_gpu_hip_head_linear
#define dsrt_gpu_linear_simt dsrt_gpu_hip_linear_simt
#define dsrt_gpu_quantize_act dsrt_gpu_hip_quantize_act
#define dsrt_gpu_quantize_act_bf16 dsrt_gpu_hip_quantize_act_bf16
#define dsrt_gpu_dequant_weight_bf16 dsrt_gpu_hip_dequant_weight_bf16
#define dsrt_gpu_fp8_gemm_mma dsrt_gpu_hip_fp8_gemm_mma
#define dsrt_gpu_weight_scales_f32 dsrt_gpu_hip_weight_scales_f32
#define dsrt_gpu_transpose dsrt_gpu_hip_transpose
#endif

/* Bits of the error word (kernels OR them in; the backend turns them into messages). */
enum {
    DSRT_GPU_ERR_GROUP_OFFSETS = 1, /* linear_grouped: offsets not non-decreasing within 0..R */
    DSRT_GPU_ERR_NO_WGMMA = 2,      /* a wgmma kernel ran from an image built without sm_90a */
};

/* How the FP8 block-scaled GEMM (linear with act_quant) is done. */
typedef enum dsrt_gpu_fp8_gemm {
    DSRT_GPU_FP8_AUTO = 0, /* the vendor library where it takes the shape, else as EXACT (opt-in) */
    DSRT_GPU_FP8_LIBRARY,  /* the vendor library only (fails when it refuses) */
    DSRT_GPU_FP8_OWN,      /* our kernel only */
    DSRT_GPU_FP8_EXACT,    /* the default: our kernel below fp8_dequant_m rows, the dequantized route above */
    DSRT_GPU_FP8_DEQUANT,  /* the dequantized route only (fails where it cannot run) */
} dsrt_gpu_fp8_gemm;

typedef struct dsrt_gpu_ctx {
    void *stream;       /* cudaStream_t / hipStream_t */
    int device;         /* runtime device index */
    int sm_count;       /* multiprocessors / compute units */
    int cc_major, cc_minor;
    int smem_optin;     /* largest dynamic shared memory a block may ask for, bytes */
    int warp_size;
    bool use_mma;       /* tensor-core paths allowed (CUDA, sm_80+) */
    bool use_wgmma;     /* wgmma paths allowed (CUDA, a 9.0 device and an sm_90a image: dsrt_gpu_wgmma_image) */
    bool early_launch;  /* programmatic dependent launch (CUDA, sm_90+): see gpu_launch_early */
    /* The op's weight (in[1] and its scales) is not the output of any op whose kernels may still run
     * when an early-launched kernel of this op starts: such a kernel may read it before waiting. */
    bool params_settled;
    unsigned *err;      /* device-visible error word */
    /* Scratch device memory for the current op: valid until the op's kernels have run; every call
     * returns fresh space (bump allocation), 256-byte aligned. */
    dsrt_status (*scratch)(void *user, size_t bytes, void **ptr);
    void *scratch_user;
} dsrt_gpu_ctx;

/* A tensor as kernels see it: device addresses and strides, its scales if any. Passed by value. */
typedef struct dsrt_gpu_tensor {
    char *p; /* element [0,...,0]; NULL when the operand is absent */
    int dtype;
    int ndim;
    int64_t shape[4];
    int64_t stride[4];
    char *sp; /* scales, NULL without */
    int sdtype;
    int sblock[2];
    int64_t sstride[4];
} dsrt_gpu_tensor;

dsrt_gpu_tensor dsrt_gpu_tensor_of(const dsrt_tensor *t);

/* Whether the wgmma kernels' image for the current device is sm_90a code (not JIT-compiled from
 * older PTX); asked once when a device opens. Always false in the HIP build. */
bool dsrt_gpu_wgmma_image(void);

/* Launchers, one per op (the op was validated by the HAL). */
dsrt_status dsrt_gpu_convert(const dsrt_gpu_ctx *c, const dsrt_op *op);
dsrt_status dsrt_gpu_embed(const dsrt_gpu_ctx *c, const dsrt_op *op);
dsrt_status dsrt_gpu_rms_norm(const dsrt_gpu_ctx *c, const dsrt_op *op);
dsrt_status dsrt_gpu_layer_norm(const dsrt_gpu_ctx *c, const dsrt_op *op);
dsrt_status dsrt_gpu_rope(const dsrt_gpu_ctx *c, const dsrt_op *op);
dsrt_status dsrt_gpu_swiglu(const dsrt_gpu_ctx *c, const dsrt_op *op);
dsrt_status dsrt_gpu_add(const dsrt_gpu_ctx *c, const dsrt_op *op);
dsrt_status dsrt_gpu_act_quant(const dsrt_gpu_ctx *c, const dsrt_op *op);
dsrt_status dsrt_gpu_hadamard(const dsrt_gpu_ctx *c, const dsrt_op *op);
dsrt_status dsrt_gpu_cache_write(const dsrt_gpu_ctx *c, const dsrt_op *op);
dsrt_status dsrt_gpu_mla_prefill(const dsrt_gpu_ctx *c, const dsrt_op *op);
dsrt_status dsrt_gpu_mla_decode(const dsrt_gpu_ctx *c, const dsrt_op *op);
dsrt_status dsrt_gpu_indexer_scores(const dsrt_gpu_ctx *c, const dsrt_op *op);
dsrt_status dsrt_gpu_topk(const dsrt_gpu_ctx *c, const dsrt_op *op);
dsrt_status dsrt_gpu_moe_gate(const dsrt_gpu_ctx *c, const dsrt_op *op);
dsrt_status dsrt_gpu_moe_dispatch(const dsrt_gpu_ctx *c, const dsrt_op *op);
dsrt_status dsrt_gpu_moe_combine(const dsrt_gpu_ctx *c, const dsrt_op *op);
dsrt_status dsrt_gpu_sample(const dsrt_gpu_ctx *c, const dsrt_op *op);
/* Fills `bytes` at ptr with a 2- or 4-byte pattern (bytes a multiple of psize). */
dsrt_status dsrt_gpu_fill(const dsrt_gpu_ctx *c, void *ptr, size_t bytes, uint32_t pattern, int psize);
/* head_linear and linear without a library: fp32 dot products on plain cores. */
dsrt_status dsrt_gpu_head_linear(const dsrt_gpu_ctx *c, const dsrt_op *op);

/* Pieces of LINEAR / LINEAR_GROUPED that the backend composes with the vendor BLAS. */

/* y = alpha * x W^T (or per group with offsets), exact fp32 products: W float or e4m3 dequantized.
 * With act_quant, x is quantized per 1x128 block on the fly and each K block is promoted with its
 * scales (the official FP8 GEMM), all on plain cores. */
dsrt_status dsrt_gpu_linear_simt(const dsrt_gpu_ctx *c, const dsrt_op *op);
/* Quantizes x [M,K] (K % 128 == 0) per 1x128 block into q [M,K] e4m3 and f32 scales at
 * scales[m * s_m + kb * s_kb]. */
dsrt_status dsrt_gpu_quantize_act(const dsrt_gpu_ctx *c, const dsrt_gpu_tensor *x, bool pow2, uint8_t *q,
                                  float *scales, int64_t s_m, int64_t s_kb);
/* The dequantized FP8 route: x [M,K] (K % 128 == 0) quantized per 1x128 block with power-of-two scales
 * and written as bf16 q*s into xb [M][K] (exact). */
dsrt_status dsrt_gpu_quantize_act_bf16(const dsrt_gpu_ctx *c, const dsrt_gpu_tensor *x, uint16_t *xb);
/* Rows [n0, n0 + rows) of a 2-D e4m3 weight with UE8M0 scales as bf16 [rows][K] (exact); UNIMPLEMENTED
 * for other layouts. */
dsrt_status dsrt_gpu_dequant_weight_bf16(const dsrt_gpu_ctx *c, const dsrt_gpu_tensor *w, int64_t n0, int64_t rows,
                                         uint16_t *out);
/* The official FP8 GEMM on tensor cores from quantized activations: q [M,K] e4m3 (row stride K),
 * qs f32 scales [M][K/128] (row stride K/128), weight e4m3 with scales; grouped when offsets is
 * given (weight [G,N,K]). Needs use_mma. */
dsrt_status dsrt_gpu_fp8_gemm_mma(const dsrt_gpu_ctx *c, const uint8_t *q, const float *qs, int64_t M, int64_t K,
                                  const dsrt_gpu_tensor *w, const dsrt_gpu_tensor *offsets, float alpha,
                                  const dsrt_gpu_tensor *y);
/* Writes a weight's 128x128 block scales as f32 [ceil(N/128)][ld] (ld >= ceil(K/128)), or transposed
 * [ceil(K/128)][ld] (ld >= ceil(N/128)), zero padded: the layouts cuBLASLt's BLK128x128_32F mode reads. */
dsrt_status dsrt_gpu_weight_scales_f32(const dsrt_gpu_ctx *c, const dsrt_gpu_tensor *w, float *out, int64_t ld,
                                       int transposed);
/* y[m][n] = src[n][m] for src [N][ld] (ld >= M) holding y's dtype: bits are moved, not rounded. */
dsrt_status dsrt_gpu_transpose(const dsrt_gpu_ctx *c, const void *src, int64_t N, int64_t ld, const dsrt_gpu_tensor *y);

#ifdef __cplusplus
}
#endif
#endif
