/* Linear layers on CUDA and HIP: which engine runs each case.
 *
 *  - Float weights, same dtype as x (bf16/f16/f32): cuBLASLt (HIP: rocBLAS when it is installed,
 *    hip_rocblas.c), fp32 compute (no TF32), so products are exact and sums fp32 like the reference.
 *  - FP8 weights with act_quant (the official FP8 GEMM): x is quantized per 1x128 block by our kernel,
 *    then our tensor-core kernel (kernels/gpu/gpu_linear.cu) multiplies, promoting each 128-wide K
 *    block's partial sums to fp32 with both scales, as the official kernel does. With
 *    DSRT_CUDA_FP8_GEMM=auto|library, Hopper uses cuBLASLt's block-scaled FP8 GEMM instead (A: 128x128
 *    weight scales, BLK128x128_32F; B: 1x128 activation scales, VEC128_32F) where it takes the shape,
 *    after a one-time self-check against exact references. It is opt-in because the golden FP8 model
 *    drifted with it (docs/cuda.md). From DSRT_CUDA_FP8_DEQUANT_M rows on (default 256; prefill), both
 *    operands are dequantized exactly to bf16 and the vendor's bf16 GEMM runs (linear_fp8_dequant).
 *    Grouped (MoE) GEMMs always run our kernel.
 *  - Everything else (mixed dtypes, FP8 without act_quant, devices without tensor cores, every FP8
 *    GEMM of the HIP build): the plain kernel, fp32 products of exactly dequantized weights.
 * DSRT_CUDA_FP8_GEMM=exact|own|dequant|auto|library|simt picks the FP8 engine (tests compare them). cuBLASLt plans
 * (descriptors, layouts, the chosen algorithm) are cached per stream: the heuristic query costs tens of
 * microseconds, more than a decode-sized GEMM. */

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_backend.h"
#include "dsrt/fp8.h"
#include "dsrt/half.h"

#ifdef DSRT_GPU_HIP
#include "hip_rocblas.h"
#endif

static bool al16(const void *p) { return ((uintptr_t)p & 15) == 0; }
static size_t esize(dsrt_dtype t) { return dsrt_dtype_size(t); }

#if DSRT_GPU_HAVE_LT
#define LT_WORKSPACE (32u << 20)

static dsrt_status lt_check(cublasStatus_t st, const char *what)
{
    if (st == CUBLAS_STATUS_SUCCESS) return DSRT_OK;
    dsrt_code code = st == CUBLAS_STATUS_NOT_SUPPORTED ? DSRT_CODE_UNIMPLEMENTED : DSRT_CODE_DEVICE;
    return dsrt_error(code, "cublasLt: %s failed: %s", what, cublasLtGetStatusString(st));
}

#define LT_TRY(call, what) DSRT_TRY(lt_check((call), (what)))

static bool lt_type(dsrt_dtype dt, cudaDataType_t *t)
{
    switch (dt) {
    case DSRT_F32: *t = CUDA_R_32F; return true;
    case DSRT_BF16: *t = CUDA_R_16BF; return true;
    case DSRT_F16: *t = CUDA_R_16F; return true;
    case DSRT_E4M3: *t = CUDA_R_8F_E4M3; return true;
    default: return false;
    }
}

/* One cuBLASLt problem: D (m x n, column-major) = alpha op(A) op(B). */
typedef struct lt_problem {
    cudaDataType_t ta, tb, td;
    int transa;             /* A stored k x m and transposed */
    int64_t m, n, k, lda, ldb, ldd;
    int64_t batch, sa, sb, sd; /* strided batches */
    int fp8;                /* block-scaled FP8: scale modes below */
    int a_mode, b_mode;     /* cublasLtMatmulMatrixScale_t of A and B (fp8 only) */
    int d_row;              /* D stored row-major (CUBLASLT_ORDER_ROW) */
} lt_problem;

static void lt_release(dsrt_cuda_stream *s)
{
    for (int i = 0; i < DSRT_CUDA_LT_CACHE; i++) {
        dsrt_cuda_lt_plan *p = &s->plans[i];
        if (!p->used) continue;
        cublasLtMatrixLayoutDestroy(p->a);
        cublasLtMatrixLayoutDestroy(p->b);
        cublasLtMatrixLayoutDestroy(p->d);
        cublasLtMatmulDescDestroy(p->desc);
        p->used = false;
    }
    if (s->lt) cublasLtDestroy(s->lt);
    s->lt = NULL;
}

static void lt_key(const lt_problem *p, int64_t *k)
{
    memset(k, 0, sizeof(int64_t) * 20);
    k[0] = p->ta;
    k[1] = p->tb;
    k[2] = p->td;
    k[3] = p->transa;
    k[4] = p->m;
    k[5] = p->n;
    k[6] = p->k;
    k[7] = p->lda;
    k[8] = p->ldb;
    k[9] = p->ldd;
    k[10] = p->batch;
    k[11] = p->sa;
    k[12] = p->sb;
    k[13] = p->sd;
    k[14] = p->fp8;
    k[15] = p->a_mode;
    k[16] = p->b_mode;
    k[17] = p->d_row;
}

static dsrt_status lt_layout(cublasLtMatrixLayout_t *l, cudaDataType_t t, int64_t rows, int64_t cols, int64_t ld,
                             int64_t batch, int64_t stride)
{
    LT_TRY(cublasLtMatrixLayoutCreate(l, t, (uint64_t)rows, (uint64_t)cols, ld), "cublasLtMatrixLayoutCreate");
    if (batch > 1) {
        int32_t b = (int32_t)batch;
        LT_TRY(cublasLtMatrixLayoutSetAttribute(*l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &b, sizeof b), "batch count");
        LT_TRY(cublasLtMatrixLayoutSetAttribute(*l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride, sizeof stride),
               "batch stride");
    }
    return DSRT_OK;
}

/* a_scale / b_scale: block-scaled FP8 needs its scale pointers set before the algorithm query. */
static dsrt_status lt_plan(dsrt_cuda_stream *s, const lt_problem *p, const void *a_scale, const void *b_scale,
                           dsrt_cuda_lt_plan **out)
{
    if (!s->lt) LT_TRY(cublasLtCreate(&s->lt), "cublasLtCreate");
    int64_t key[20];
    lt_key(p, key);
    dsrt_cuda_lt_plan *slot = NULL;
    for (int i = 0; i < DSRT_CUDA_LT_CACHE; i++) {
        dsrt_cuda_lt_plan *pl = &s->plans[i];
        if (pl->used && memcmp(pl->key, key, sizeof key) == 0) {
            pl->last_use = ++s->plan_clock;
            *out = pl;
            return DSRT_OK;
        }
    }
    for (int i = 0; i < DSRT_CUDA_LT_CACHE && !slot; i++)
        if (!s->plans[i].used) slot = &s->plans[i];
    if (!slot) {
        slot = &s->plans[0];
        for (int i = 1; i < DSRT_CUDA_LT_CACHE; i++)
            if (s->plans[i].last_use < slot->last_use) slot = &s->plans[i];
    }
    if (slot->used) { /* evict the least recently used */
        cublasLtMatrixLayoutDestroy(slot->a);
        cublasLtMatrixLayoutDestroy(slot->b);
        cublasLtMatrixLayoutDestroy(slot->d);
        cublasLtMatmulDescDestroy(slot->desc);
        slot->used = false;
    }
    dsrt_cuda_lt_plan pl;
    memset(&pl, 0, sizeof pl);
    memcpy(pl.key, key, sizeof key);
    LT_TRY(cublasLtMatmulDescCreate(&pl.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F), "cublasLtMatmulDescCreate");
    dsrt_status st = DSRT_OK;
    cublasOperation_t ta = p->transa ? CUBLAS_OP_T : CUBLAS_OP_N, tb = CUBLAS_OP_N;
    st = lt_check(cublasLtMatmulDescSetAttribute(pl.desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta), "transa");
    if (!st) st = lt_check(cublasLtMatmulDescSetAttribute(pl.desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb), "transb");
    if (!st && p->fp8) {
        int32_t am = p->a_mode, bm = p->b_mode;
        st = lt_check(cublasLtMatmulDescSetAttribute(pl.desc, CUBLASLT_MATMUL_DESC_A_SCALE_MODE, &am, sizeof am), "A scale mode");
        if (!st)
            st = lt_check(cublasLtMatmulDescSetAttribute(pl.desc, CUBLASLT_MATMUL_DESC_B_SCALE_MODE, &bm, sizeof bm),
                          "B scale mode");
        if (!st)
            st = lt_check(cublasLtMatmulDescSetAttribute(pl.desc, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &a_scale,
                                                         sizeof a_scale),
                          "A scale pointer");
        if (!st)
            st = lt_check(cublasLtMatmulDescSetAttribute(pl.desc, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &b_scale,
                                                         sizeof b_scale),
                          "B scale pointer");
    }
    if (!st) st = lt_layout(&pl.a, p->ta, p->transa ? p->k : p->m, p->transa ? p->m : p->k, p->lda, p->batch, p->sa);
    if (!st) st = lt_layout(&pl.b, p->tb, p->k, p->n, p->ldb, p->batch, p->sb);
    if (!st) st = lt_layout(&pl.d, p->td, p->m, p->n, p->ldd, p->batch, p->sd);
    if (!st && p->d_row) {
        int32_t order = CUBLASLT_ORDER_ROW;
        st = lt_check(cublasLtMatrixLayoutSetAttribute(pl.d, CUBLASLT_MATRIX_LAYOUT_ORDER, &order, sizeof order),
                      "row-major D");
    }
    cublasLtMatmulPreference_t pref = NULL;
    if (!st) st = lt_check(cublasLtMatmulPreferenceCreate(&pref), "cublasLtMatmulPreferenceCreate");
    if (!st) {
        uint64_t ws = LT_WORKSPACE;
        st = lt_check(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws),
                      "workspace preference");
    }
    if (!st) {
        cublasLtMatmulHeuristicResult_t res;
        int n = 0;
        st = lt_check(cublasLtMatmulAlgoGetHeuristic(s->lt, pl.desc, pl.a, pl.b, pl.d, pl.d, pref, 1, &res, &n),
                      "cublasLtMatmulAlgoGetHeuristic");
        if (!st && n < 1) st = dsrt_error(DSRT_CODE_UNIMPLEMENTED, "cublasLt has no algorithm for this GEMM");
        if (!st) {
            pl.algo = res.algo;
            pl.workspace = res.workspaceSize;
        }
    }
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    if (st) {
        if (pl.a) cublasLtMatrixLayoutDestroy(pl.a);
        if (pl.b) cublasLtMatrixLayoutDestroy(pl.b);
        if (pl.d) cublasLtMatrixLayoutDestroy(pl.d);
        cublasLtMatmulDescDestroy(pl.desc);
        return st;
    }
    pl.used = true;
    pl.last_use = ++s->plan_clock;
    *slot = pl;
    *out = slot;
    return DSRT_OK;
}

static dsrt_status lt_run(dsrt_cuda_stream *s, const lt_problem *p, float alpha, const void *A, const void *B, void *D,
                          const void *a_scale, const void *b_scale)
{
    dsrt_cuda_lt_plan *pl;
    DSRT_TRY(lt_plan(s, p, a_scale, b_scale, &pl));
    if (p->fp8) {
        LT_TRY(cublasLtMatmulDescSetAttribute(pl->desc, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &a_scale, sizeof a_scale),
               "A scale pointer");
        LT_TRY(cublasLtMatmulDescSetAttribute(pl->desc, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &b_scale, sizeof b_scale),
               "B scale pointer");
    }
    void *ws = NULL;
    if (pl->workspace) DSRT_TRY(dsrt_cuda_scratch(s, pl->workspace, &ws));
    float beta = 0;
    return lt_check(cublasLtMatmul(s->lt, pl->desc, &alpha, A, pl->a, B, pl->b, &beta, D, pl->d, D, pl->d, &pl->algo, ws,
                                   pl->workspace, s->s),
                    "cublasLtMatmul");
}


/* ---- FP8 block-scaled GEMM through cuBLASLt ----
 * On Hopper, cuBLASLt scales one operand per 1x128 vector (VEC128_32F) and the other per 128x128
 * block (BLK128x128_32F). Which operand may take which mode, how the scale tensors are laid out, and
 * whether D may be row-major are documented loosely and have changed between releases, so the first
 * use on a device tries the plausible arrangements on a problem with a known exact answer and keeps
 * the first that reproduces it (or none: then our kernel runs). */

static const dsrt_cuda_lt_variant lt_variants[] = {
    /* w_is_a, d_row, act_kmajor, w_scale_t */
    {1, 0, 0, 0}, /* A = W (128x128), B = x (1x128, [K/128][M]), D col-major N x M = y */
    {0, 1, 0, 0}, /* A = x (1x128), B = W (128x128), D row-major M x N = y */
    {0, 0, 0, 0}, /* A = x, B = W, D col-major M x N = y^T: transposed after */
    {0, 1, 1, 0}, /* as above with activation scales [M][K/128] */
    {0, 0, 1, 0},
    {1, 0, 1, 0},
    {0, 1, 0, 1}, /* weight scales [K/128][N/128 (padded to 4)] */
    {0, 0, 0, 1},
    {1, 0, 0, 1},
};

/* y = alpha x W^T from quantized x (q, qs laid out per the variant) and W with f32 block scales ws. */
static dsrt_status lt_fp8(dsrt_cuda_stream *s, const dsrt_cuda_lt_variant *v, const uint8_t *q, const float *qs,
                          int64_t M, int64_t K, const void *w, int64_t w_ld, int64_t N, const float *ws, void *d,
                          dsrt_dtype ddt, int64_t d_ld, float alpha)
{
    lt_problem p;
    memset(&p, 0, sizeof p);
    p.ta = CUDA_R_8F_E4M3;
    p.tb = CUDA_R_8F_E4M3;
    if (!lt_type(ddt, &p.td)) return dsrt_error(DSRT_CODE_UNIMPLEMENTED, "cublasLt: output dtype");
    p.transa = 1;
    p.k = K;
    p.batch = 1;
    p.fp8 = 1;
    p.d_row = v->d_row;
    const void *A, *B;
    const float *as, *bs;
    if (v->w_is_a) {
        p.m = N;
        p.n = M;
        p.lda = w_ld;
        p.ldb = K;
        p.a_mode = CUBLASLT_MATMUL_MATRIX_SCALE_BLK128x128_32F;
        p.b_mode = CUBLASLT_MATMUL_MATRIX_SCALE_VEC128_32F;
        A = w;
        B = q;
        as = ws;
        bs = qs;
    } else {
        p.m = M;
        p.n = N;
        p.lda = K;
        p.ldb = w_ld;
        p.a_mode = CUBLASLT_MATMUL_MATRIX_SCALE_VEC128_32F;
        p.b_mode = CUBLASLT_MATMUL_MATRIX_SCALE_BLK128x128_32F;
        A = q;
        B = w;
        as = qs;
        bs = ws;
    }
    p.ldd = d_ld;
    return lt_run(s, &p, alpha, A, B, d, as, bs);
}

/* Where element (m, n) of D lands for a variant (D [rows][ld] as stored). */
static int64_t lt_d_index(const dsrt_cuda_lt_variant *v, int64_t m, int64_t n, int64_t M, int64_t N)
{
    if (v->w_is_a) return m * N + n;       /* col-major N x M: y row-major */
    if (v->d_row) return m * N + n;        /* row-major M x N */
    return n * M + m;                      /* col-major M x N: y transposed */
}

static int64_t lt_d_ld(const dsrt_cuda_lt_variant *v, int64_t M, int64_t N) { return (v->w_is_a || v->d_row) ? N : M; }

/* One self-check problem: M x K codes against N x K, random power-of-two scales, the exact answer in
 * doubles; the device buffers are made for it and freed after. */
typedef struct lt_check_problem {
    int M, N, K, nkb, nrb, l4, nb4;
    uint8_t *hq, *hw;
    float *sa, *sw, *hqs, *hws, *hy;
    uint16_t *hyb;
    double *ref;
    void *dq, *dw, *dqs, *dws, *dy;
} lt_check_problem;

static void lt_check_free(lt_check_problem *c)
{
    cudaFree(c->dq);
    cudaFree(c->dw);
    cudaFree(c->dqs);
    cudaFree(c->dws);
    cudaFree(c->dy);
    cudaGetLastError();
    free(c->hq);
    free(c->hw);
    free(c->sa);
    free(c->sw);
    free(c->hqs);
    free(c->hws);
    free(c->hy);
    free(c->hyb);
    free(c->ref);
    memset(c, 0, sizeof *c);
}

static bool lt_check_make(lt_check_problem *c, int M, int N, int K, uint64_t r)
{
    memset(c, 0, sizeof *c);
    c->M = M, c->N = N, c->K = K, c->nkb = K / 128, c->nrb = (N + 127) / 128;
    c->l4 = (c->nkb + 3) / 4 * 4, c->nb4 = (c->nrb + 3) / 4 * 4;
    size_t mn = (size_t)M * (size_t)N;
    c->hq = malloc((size_t)M * K), c->hw = malloc((size_t)N * K);
    c->sa = malloc(sizeof(float) * M * c->nkb), c->sw = malloc(sizeof(float) * c->nrb * c->nkb);
    c->hqs = malloc(sizeof(float) * M * c->nkb), c->hws = malloc(sizeof(float) * c->nb4 * c->l4);
    c->hy = malloc(sizeof(float) * mn), c->hyb = malloc(sizeof(uint16_t) * mn), c->ref = malloc(sizeof(double) * mn);
    if (!c->hq || !c->hw || !c->sa || !c->sw || !c->hqs || !c->hws || !c->hy || !c->hyb || !c->ref) return false;
#define RND() (r = r * 6364136223846793005ull + 1442695040888963407ull, (uint32_t)(r >> 33))
    for (int i = 0; i < M * K + N * K; i++) { /* codes without the NaN pattern, random signs */
        uint8_t mag = (uint8_t)(RND() % 0x7f);
        uint8_t code = (uint8_t)(mag | ((RND() & 1) ? 0x80 : 0));
        if (i < M * K) c->hq[i] = code;
        else c->hw[i - M * K] = code;
    }
    for (int i = 0; i < M * c->nkb; i++) c->sa[i] = ldexpf(1.0f, (int)(RND() % 7) - 12);       /* sa[m][kb] */
    for (int i = 0; i < c->nrb * c->nkb; i++) c->sw[i] = ldexpf(1.0f, (int)(RND() % 7) - 10); /* sw[nb][kb] */
#undef RND
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            double acc = 0;
            for (int kb = 0; kb < c->nkb; kb++) {
                double part = 0;
                for (int k = kb * 128; k < kb * 128 + 128; k++)
                    part += (double)dsrt_e4m3_values[c->hq[m * K + k]] * dsrt_e4m3_values[c->hw[n * K + k]];
                acc += part * c->sa[m * c->nkb + kb] * c->sw[(n / 128) * c->nkb + kb];
            }
            c->ref[m * N + n] = acc;
        }
    if (cudaMalloc(&c->dq, (size_t)M * K) || cudaMalloc(&c->dw, (size_t)N * K) ||
        cudaMalloc(&c->dqs, sizeof(float) * M * c->nkb) || cudaMalloc(&c->dws, sizeof(float) * c->nb4 * c->l4) ||
        cudaMalloc(&c->dy, sizeof(float) * mn))
        return false;
    return !cudaMemcpy(c->dq, c->hq, (size_t)M * K, cudaMemcpyHostToDevice) &&
           !cudaMemcpy(c->dw, c->hw, (size_t)N * K, cudaMemcpyHostToDevice);
}

/* Runs one variant on one problem; *err is the relative squared error against the exact answer. */
static dsrt_status lt_check_run(dsrt_cuda_stream *s, const dsrt_cuda_lt_variant *v, dsrt_dtype ddt, lt_check_problem *c,
                                double *err)
{
    int M = c->M, N = c->N, K = c->K, nkb = c->nkb;
    for (int m = 0; m < M; m++)
        for (int kb = 0; kb < nkb; kb++) c->hqs[v->act_kmajor ? m * nkb + kb : kb * M + m] = c->sa[m * nkb + kb];
    memset(c->hws, 0, sizeof(float) * c->nb4 * c->l4);
    for (int nb = 0; nb < c->nrb; nb++)
        for (int kb = 0; kb < nkb; kb++) c->hws[v->w_scale_t ? kb * c->nb4 + nb : nb * c->l4 + kb] = c->sw[nb * nkb + kb];
    cudaMemcpy(c->dqs, c->hqs, sizeof(float) * M * nkb, cudaMemcpyHostToDevice);
    cudaMemcpy(c->dws, c->hws, sizeof(float) * c->nb4 * c->l4, cudaMemcpyHostToDevice);
    cudaMemset(c->dy, 0xff, sizeof(float) * M * N);
    dsrt_status st = lt_fp8(s, v, c->dq, c->dqs, M, K, c->dw, K, N, c->dws, c->dy, ddt, lt_d_ld(v, M, N), 1.0f);
    if (!st) st = dsrt_cuda_check(cudaStreamSynchronize(s->s), "self-check");
    if (!st && ddt == DSRT_BF16) {
        st = dsrt_cuda_check(cudaMemcpy(c->hyb, c->dy, sizeof(uint16_t) * M * N, cudaMemcpyDeviceToHost), "self-check");
        for (int i = 0; i < M * N; i++) c->hy[i] = dsrt_bf16_to_f32(c->hyb[i]);
    } else if (!st) {
        st = dsrt_cuda_check(cudaMemcpy(c->hy, c->dy, sizeof(float) * M * N, cudaMemcpyDeviceToHost), "self-check");
    }
    if (st) return st;
    double num = 0, den = 0;
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            double e = (double)c->hy[lt_d_index(v, m, n, M, N)] - c->ref[m * N + n];
            num += isfinite(e) ? e * e : 1e300;
            den += c->ref[m * N + n] * c->ref[m * N + n];
        }
    *err = num / den;
    return DSRT_OK;
}

/* Which arrangement of operands and scales the library computes correctly, tried on an aligned problem
 * and on one whose row, column and K block counts are ragged (decode- and prefill-sized M, scale
 * tensors that need padding): the variant must reproduce both. */
static void lt_fp8_selfcheck(dsrt_cuda_stream *s)
{
    dsrt_cuda_device *d = s->dev;
    lt_check_problem pr[2];
    memset(pr, 0, sizeof pr);
    d->lt_fp8_checked = -1;
    snprintf(d->lt_fp8_note, sizeof d->lt_fp8_note, "cuBLASLt block-scaled FP8: self-check did not run");
    char tried[240] = "";
    if (!lt_check_make(&pr[0], 128, 256, 512, 0x243f6a8885a308d3ull) || !lt_check_make(&pr[1], 20, 392, 640, 0x13198a2e03707344ull))
        goto done;
    const size_t nv = sizeof lt_variants / sizeof lt_variants[0];
    /* bf16 output first (what the library's block-scaled kernels are documented with), then f32 */
    for (size_t vt = 0; vt < 2 * nv && d->lt_fp8_checked < 0; vt++) {
        const dsrt_cuda_lt_variant *v = &lt_variants[vt % nv];
        dsrt_dtype ddt = vt < nv ? DSRT_BF16 : DSRT_F32;
        double worst = 0;
        dsrt_status st = DSRT_OK;
        for (int i = 0; i < 2 && !st; i++) {
            double err = 0;
            st = lt_check_run(s, v, ddt, &pr[i], &err);
            if (!st && err > worst) worst = err;
        }
        size_t l = strlen(tried);
        if (st) {
            if (vt == 0) snprintf(d->lt_fp8_note, sizeof d->lt_fp8_note, "%.150s", dsrt_status_message(st));
            snprintf(tried + l, sizeof tried - l, "%s%s%zu:x", l ? " " : "", ddt == DSRT_BF16 ? "b" : "f", vt % nv);
            dsrt_status_free(st);
            continue;
        }
        snprintf(tried + l, sizeof tried - l, "%s%s%zu:%.1e", l ? " " : "", ddt == DSRT_BF16 ? "b" : "f", vt % nv, worst);
        if (worst < (ddt == DSRT_BF16 ? 1e-4 : 1e-6)) { /* bf16 rounding alone gives about 4e-6 */
            d->lt_variant = *v;
            d->lt_fp8_checked = 1;
        }
    }
    {
        char first[160];
        snprintf(first, sizeof first, "%.150s", d->lt_fp8_note);
        snprintf(d->lt_fp8_note, sizeof d->lt_fp8_note, "cuBLASLt block-scaled FP8 self-check [%s]: %s%s%.100s", tried,
                 d->lt_fp8_checked > 0 ? "library used" : "library not used", d->lt_fp8_checked > 0 ? "" : "; first refusal: ",
                 d->lt_fp8_checked > 0 ? "" : first);
    }
done:
    if (getenv("DSRT_CUDA_VERBOSE")) fprintf(stderr, "dsrt cuda:%d: %s\n", d->index, d->lt_fp8_note);
    lt_check_free(&pr[0]);
    lt_check_free(&pr[1]);
}

#endif /* DSRT_GPU_HAVE_LT */

void dsrt_cuda_blas_release(dsrt_cuda_stream *s)
{
#if DSRT_GPU_HAVE_LT
    lt_release(s);
#else
    if (s->blas_handle) dsrt_hip_rocblas_destroy_handle(s->dev->blas, s->blas_handle);
    s->blas_handle = NULL;
#endif
}

/* Whether the vendor BLAS takes a float GEMM with inputs of dtype `in` and output `out`: inputs f32,
 * bf16 or f16; outputs of the input's dtype or f32 (f32 inputs: f32 only). */
static bool blas_types_ok(dsrt_dtype in, dsrt_dtype out)
{
    if (in != DSRT_F32 && in != DSRT_BF16 && in != DSRT_F16) return false;
    if (in == DSRT_F32) return out == DSRT_F32;
    return out == in || out == DSRT_F32;
}

/* A float GEMM through the vendor BLAS; UNIMPLEMENTED when it refuses (the caller runs our kernel). */
static dsrt_status blas_gemm(dsrt_cuda_stream *s, const dsrt_gpu_blas_gemm *g, float alpha, const void *A,
                             const void *B, void *D)
{
#if DSRT_GPU_HAVE_LT
    lt_problem p;
    memset(&p, 0, sizeof p);
    if (!lt_type(g->in, &p.ta) || !lt_type(g->out, &p.td))
        return dsrt_error(DSRT_CODE_UNIMPLEMENTED, "cublasLt: dtypes %s -> %s", dsrt_dtype_name(g->in),
                          dsrt_dtype_name(g->out));
    p.tb = p.ta;
    p.transa = g->transa;
    p.m = g->m;
    p.n = g->n;
    p.k = g->k;
    p.lda = g->lda;
    p.ldb = g->ldb;
    p.ldd = g->ldd;
    p.batch = g->batch;
    p.sa = g->sa;
    p.sb = g->sb;
    p.sd = g->sd;
    return lt_run(s, &p, alpha, A, B, D, NULL, NULL);
#else
    if (!s->dev->blas) return dsrt_error(DSRT_CODE_UNIMPLEMENTED, "%s", s->dev->blas_note);
    /* rocBLAS may allocate its workspace while it runs, which a graph capture cannot record */
    if (s->capturing) return dsrt_error(DSRT_CODE_UNIMPLEMENTED, "rocBLAS: not used while capturing a graph");
    return dsrt_hip_rocblas_gemm(s->dev->blas, &s->blas_handle, s->s, g, alpha, A, B, D);
#endif
}

/* y [n][m] (row stride ldy) = alpha * x [n][k] (ldx) W [m][k]^T (ldw), all of dtype `in` but y (`out`),
 * through the vendor BLAS: the shape of every linear it runs. */
static dsrt_status blas_linear(dsrt_cuda_stream *s, dsrt_dtype in, dsrt_dtype out, int64_t m, int64_t n, int64_t k,
                               const void *W, int64_t ldw, const void *x, int64_t ldx, void *y, int64_t ldy, float alpha)
{
    dsrt_gpu_blas_gemm g;
    memset(&g, 0, sizeof g);
    g.in = in;
    g.out = out;
    g.transa = 1;
    g.m = m;
    g.n = n;
    g.k = k;
    g.lda = ldw;
    g.ldb = ldx;
    g.ldd = ldy;
    g.batch = 1;
    return blas_gemm(s, &g, alpha, W, x, y);
}

/* The dequantized route for prefill-sized FP8 GEMMs: the activations quantized as the official kernel
 * does and written back as bf16 q*s, the weight dequantized to bf16 a slab of rows at a time, then the
 * vendor's bf16 GEMM with fp32 accumulation. With power-of-two scales both dequantizations are exact,
 * so the GEMM multiplies the same values as the FP8 GEMM and sums them in fp32 (SPEC: "fp32
 * accumulation"); only the order of the fp32 sums differs from ours. It costs ~3 bytes of memory
 * traffic per weight element, which prefill's arithmetic hides and decode's would not: hence the row
 * threshold. UNIMPLEMENTED where it does not apply (f32 scales, grouped weights, no BLAS). */
static dsrt_status linear_fp8_dequant(dsrt_cuda_stream *s, const dsrt_gpu_ctx *c, const dsrt_op *op)
{
    dsrt_gpu_tensor x = dsrt_gpu_tensor_of(&op->in[0]), w = dsrt_gpu_tensor_of(&op->in[1]), y = dsrt_gpu_tensor_of(&op->out[0]);
    dsrt_dtype yt = op->out[0].dtype;
    int64_t M = x.shape[0], K = x.shape[1], N = w.shape[0];
#if DSRT_GPU_HAVE_LT
    bool blas_ok = true;
#else
    bool blas_ok = s->dev->blas && !s->capturing; /* as blas_gemm decides, before any kernel is spent */
#endif
    if (!op->p.scale_pow2 || w.ndim != 2 || w.sdtype != DSRT_UE8M0 || !blas_types_ok(DSRT_BF16, yt) ||
        getenv(DSRT_GPU_ENV("NO_BLAS")) || !blas_ok)
        return dsrt_error(DSRT_CODE_UNIMPLEMENTED,
                          "%s: the dequantized FP8 route needs power-of-two activation scales, a 2-D weight with "
                          "UE8M0 scales, a bf16 or f32 output and the vendor BLAS",
                          dsrt_op_name(op->kind));
    /* weight rows per slab: ~32 MB of bf16 in whole 128-row blocks, so scratch stays bounded */
    int64_t slab = ((int64_t)(16 << 20) / K) / 128 * 128;
    if (slab < 128) slab = 128;
    if (slab > N) slab = N;
    uint16_t *xb, *wb;
    DSRT_TRY(dsrt_cuda_scratch(s, sizeof(uint16_t) * (size_t)(M * K), (void **)&xb));
    DSRT_TRY(dsrt_cuda_scratch(s, sizeof(uint16_t) * (size_t)(slab * K), (void **)&wb));
    DSRT_TRY(dsrt_gpu_quantize_act_bf16(c, &x, xb));
    for (int64_t n0 = 0; n0 < N; n0 += slab) {
        int64_t rows = N - n0 < slab ? N - n0 : slab;
        DSRT_TRY(dsrt_gpu_dequant_weight_bf16(c, &w, n0, rows, wb));
        DSRT_TRY(blas_linear(s, DSRT_BF16, yt, rows, M, K, wb, K, xb, K, y.p + n0 * (int64_t)esize(yt), y.stride[0],
                             op->p.alpha));
    }
    return DSRT_OK;
}

static dsrt_status linear_fp8(dsrt_cuda_stream *s, const dsrt_gpu_ctx *c, const dsrt_op *op)
{
    dsrt_cuda_device *d = s->dev;
    bool grouped = op->kind == DSRT_OP_LINEAR_GROUPED;
    const dsrt_tensor *wt = &op->in[1];
    dsrt_gpu_tensor x = dsrt_gpu_tensor_of(&op->in[0]), w = dsrt_gpu_tensor_of(wt), y = dsrt_gpu_tensor_of(&op->out[0]);
    int64_t M = x.shape[0], K = x.shape[1], N = w.shape[w.ndim - 2], nkb = K / 128;
    if (M == 0 || N == 0) return DSRT_OK;
    if (d->fp8_simt) return dsrt_gpu_linear_simt(c, op);
#if DSRT_GPU_HAVE_LT
    cudaDataType_t yt;
    bool lib = !grouped && d->cc_major == 9 &&
               (d->fp8_mode == DSRT_GPU_FP8_AUTO || d->fp8_mode == DSRT_GPU_FP8_LIBRARY) && w.sblock[0] == 128 &&
               w.sblock[1] == 128 && al16(w.p) && w.stride[0] % 16 == 0 && al16(y.p) &&
               ((size_t)y.stride[0] * esize(op->out[0].dtype)) % 16 == 0 && lt_type(op->out[0].dtype, &yt) &&
               M % 4 == 0 && N % 4 == 0;
    if (lib && d->lt_fp8_checked == 0 && !s->capturing) lt_fp8_selfcheck(s);
    lib = lib && d->lt_fp8_checked > 0;
    if (lib) {
        const dsrt_cuda_lt_variant *v = &d->lt_variant;
        int64_t nrb = (N + 127) / 128, l4 = (nkb + 3) / 4 * 4, nb4 = (nrb + 3) / 4 * 4;
        uint8_t *q;
        float *qs, *ws;
        DSRT_TRY(dsrt_cuda_scratch(s, (size_t)(M * K), (void **)&q));
        DSRT_TRY(dsrt_cuda_scratch(s, sizeof(float) * (size_t)(M * nkb), (void **)&qs));
        DSRT_TRY(dsrt_cuda_scratch(s, sizeof(float) * (size_t)(nb4 * l4), (void **)&ws));
        DSRT_TRY(dsrt_gpu_quantize_act(c, &x, op->p.scale_pow2, q, qs, v->act_kmajor ? nkb : 1, v->act_kmajor ? 1 : M));
        DSRT_TRY(dsrt_gpu_weight_scales_f32(c, &w, ws, v->w_scale_t ? nb4 : l4, v->w_scale_t));
        dsrt_status st;
        if (v->w_is_a || v->d_row) {
            st = lt_fp8(s, v, q, qs, M, K, w.p, w.stride[0], N, ws, y.p, op->out[0].dtype, y.stride[0], op->p.alpha);
        } else { /* D comes out transposed: into scratch, then transposed into y */
            void *dt;
            DSRT_TRY(dsrt_cuda_scratch(s, esize(op->out[0].dtype) * (size_t)(M * N), &dt));
            st = lt_fp8(s, v, q, qs, M, K, w.p, w.stride[0], N, ws, dt, op->out[0].dtype, M, op->p.alpha);
            if (!st) st = dsrt_gpu_transpose(c, dt, N, M, &y);
        }
        if (!st || d->fp8_mode == DSRT_GPU_FP8_LIBRARY) return st;
        dsrt_status_free(st); /* auto: the library refused this shape; our kernel runs it */
    } else if (d->fp8_mode == DSRT_GPU_FP8_LIBRARY) {
        return dsrt_error(DSRT_CODE_UNIMPLEMENTED, "%s: cuBLASLt block-scaled FP8 cannot run this case (%s)",
                          dsrt_op_name(op->kind), d->lt_fp8_note[0] ? d->lt_fp8_note : "shape, layout or device");
    }
#else
    /* No vendor block-scaled FP8 GEMM is wired up on HIP yet (hipBLASLt's would be, on MI300). */
    if (d->fp8_mode == DSRT_GPU_FP8_LIBRARY)
        return dsrt_error(DSRT_CODE_UNIMPLEMENTED, "%s: no vendor block-scaled FP8 GEMM in the " DSRT_GPU_RT_TITLE " backend",
                          dsrt_op_name(op->kind));
#endif
    bool deq = !grouped && (d->fp8_mode == DSRT_GPU_FP8_DEQUANT ||
                            ((d->fp8_mode == DSRT_GPU_FP8_EXACT || d->fp8_mode == DSRT_GPU_FP8_AUTO) && M >= d->fp8_dequant_m));
    if (deq) {
        dsrt_status st = linear_fp8_dequant(s, c, op);
        if (!st || d->fp8_mode == DSRT_GPU_FP8_DEQUANT || dsrt_status_code(st) != DSRT_CODE_UNIMPLEMENTED) return st;
        dsrt_status_free(st); /* the route does not take this case: our kernel runs it */
    }
    bool mma = c->use_mma && al16(w.p) && w.stride[w.ndim - 2] % 16 == 0 && (w.ndim == 2 || w.stride[0] % 16 == 0);
    if (!mma) return dsrt_gpu_linear_simt(c, op);
    uint8_t *q;
    float *qs;
    DSRT_TRY(dsrt_cuda_scratch(s, (size_t)(M * K), (void **)&q));
    DSRT_TRY(dsrt_cuda_scratch(s, sizeof(float) * (size_t)(M * nkb), (void **)&qs));
    DSRT_TRY(dsrt_gpu_quantize_act(c, &x, op->p.scale_pow2, q, qs, nkb, 1));
    dsrt_gpu_tensor off = grouped ? dsrt_gpu_tensor_of(&op->in[2]) : (dsrt_gpu_tensor){0};
    return dsrt_gpu_fp8_gemm_mma(c, q, qs, M, K, &w, grouped ? &off : NULL, op->p.alpha, &y);
}

dsrt_status dsrt_cuda_linear(dsrt_cuda_stream *s, const dsrt_gpu_ctx *c, const dsrt_op *op)
{
    if (op->p.act_quant) return linear_fp8(s, c, op);
    const dsrt_tensor *x = &op->in[0], *w = &op->in[1], *y = &op->out[0];
    if (op->kind == DSRT_OP_LINEAR && w->dtype == x->dtype && blas_types_ok(x->dtype, y->dtype) &&
        !getenv(DSRT_GPU_ENV("NO_BLAS")) && x->shape[0] > 0 && w->shape[0] > 0) {
        dsrt_gpu_tensor gx = dsrt_gpu_tensor_of(x), gw = dsrt_gpu_tensor_of(w), gy = dsrt_gpu_tensor_of(y);
        dsrt_status st = blas_linear(s, x->dtype, y->dtype, w->shape[0], x->shape[0], x->shape[1], gw.p, w->stride[0],
                                     gx.p, x->stride[0], gy.p, y->stride[0], op->p.alpha);
        if (!st || dsrt_status_code(st) != DSRT_CODE_UNIMPLEMENTED) return st;
        dsrt_status_free(st);
    }
    return dsrt_gpu_linear_simt(c, op);
}

dsrt_status dsrt_cuda_head_linear(dsrt_cuda_stream *s, const dsrt_gpu_ctx *c, const dsrt_op *op)
{
    const dsrt_tensor *x = &op->in[0], *w = &op->in[1], *y = &op->out[0];
    if (w->dtype == x->dtype && blas_types_ok(x->dtype, y->dtype) && !getenv(DSRT_GPU_ENV("NO_BLAS")) &&
        x->shape[0] > 0 && x->shape[1] > 0 && y->shape[2] > 0) {
        dsrt_gpu_blas_gemm g;
        memset(&g, 0, sizeof g);
        g.in = x->dtype;
        g.out = y->dtype;
        g.transa = op->p.transpose_w ? 0 : 1;
        g.m = y->shape[2];
        g.n = x->shape[0];
        g.k = x->shape[2];
        g.lda = w->stride[1];
        g.ldb = x->stride[0];
        g.ldd = y->stride[0];
        g.batch = x->shape[1];
        g.sa = w->stride[0];
        g.sb = x->stride[1];
        g.sd = y->stride[1];
        dsrt_gpu_tensor gx = dsrt_gpu_tensor_of(x), gw = dsrt_gpu_tensor_of(w), gy = dsrt_gpu_tensor_of(y);
        dsrt_status st = blas_gemm(s, &g, 1.0f, gw.p, gx.p, gy.p);
        if (!st || dsrt_status_code(st) != DSRT_CODE_UNIMPLEMENTED) return st;
        dsrt_status_free(st);
    }
    return dsrt_gpu_head_linear(c, op);
}
