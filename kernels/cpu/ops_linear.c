/* CPU reference: dense, grouped (MoE) and per-head linear layers, including the official FP8 GEMM. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cpu/cpu_ops.h"
#include "dsrt/act_quant.h"

#define TILE_N 32
#define TILE_M 64

/* Activations prepared once per op: f32 rows, or e4m3 values (as f32) with their block scales. */
typedef struct {
    const dsrt_tensor *x, *w, *y;
    int64_t M, K, N, nkb;
    float *xv;      /* [M][K] */
    float *xs;      /* [M][nkb] scales (act_quant only) */
    bool act_quant;
    float alpha;
    const int32_t *offsets; /* grouped: [G+1] */
    int64_t G;
} lin_ctx;

static void prep_rows(void *vctx, int64_t b, int64_t e, int th)
{
    dsrt_cpu_job *job = vctx;
    lin_ctx *c = job->extra;
    for (int64_t m = b; m < e; m++) {
        float *row = c->xv + m * c->K;
        dsrt_cpu_load_row(c->x, m * c->x->stride[0], c->K, row);
        if (!c->act_quant) continue;
        uint8_t q[128];
        for (int64_t kb = 0; kb < c->nkb; kb++) {
            int64_t k0 = kb * 128, n = c->K - k0 < 128 ? c->K - k0 : 128;
            float s;
            dsrt_act_quant_row(row + k0, n, 128, job->op->p.scale_pow2, q, &s);
            for (int64_t i = 0; i < n; i++) row[k0 + i] = dsrt_e4m3_values[q[i]]; /* keeps NaN codes NaN */
            c->xs[m * c->nkb + kb] = s;
        }
    }
}

/* Loads weight row n of group g as f32; dequantized unless `raw` (then fp8 values without scales). */
static void load_weight_row(const dsrt_tensor *w, int64_t g, int64_t n, int64_t K, bool raw, float *out)
{
    int64_t off = (w->ndim == 3 ? g * w->stride[0] : 0) + n * w->stride[w->ndim - 2];
    if (w->dtype == DSRT_E4M3) dsrt_cpu_e4m3_to_f32((const uint8_t *)dsrt_cpu_base(w) + off, K, out);
    else dsrt_cpu_load_row(w, off, K, out);
    if (raw || !w->scale.buf) return;
    for (int64_t k0 = 0; k0 < K; k0 += w->scale.block[1]) {
        float s = dsrt_cpu_block_scale(w, g, n, k0);
        int64_t k1 = k0 + w->scale.block[1] < K ? k0 + w->scale.block[1] : K;
        for (int64_t k = k0; k < k1; k++) out[k] *= s;
    }
}

/* One output of a weight row read directly from its storage (no row buffer): the decode (M = 1) path,
 * where the weights stream through once. Same arithmetic as the buffered path. */
static float direct_dot(lin_ctx *c, int64_t g, int64_t n, const float *xr, int64_t m)
{
    const dsrt_tensor *w = c->w;
    int64_t off = (w->ndim == 3 ? g * w->stride[0] : 0) + n * w->stride[w->ndim - 2];
    const char *base = dsrt_cpu_base(w);
    if (w->dtype == DSRT_BF16) return dsrt_cpu_dot_bf16(xr, (const uint16_t *)base + off, c->K);
    if (w->dtype == DSRT_F32) return dsrt_cpu_dot(xr, (const float *)base + off, c->K);
    /* e4m3: per 128-wide block, the partial sum times the block's scale (and sa with act_quant) */
    const uint8_t *wr = (const uint8_t *)base + off;
    float acc = 0;
    int64_t bc = w->scale.block[1];
    for (int64_t k0 = 0, kb = 0; k0 < c->K; k0 += bc, kb++) {
        int64_t len = c->K - k0 < bc ? c->K - k0 : bc;
        float part = dsrt_cpu_dot_e4m3(xr + k0, wr + k0, len), sb = dsrt_cpu_block_scale(w, g, n, k0);
        if (c->act_quant) acc += part * (c->xs[m * c->nkb + kb] * sb);
        else acc += part * sb;
    }
    return acc;
}

static bool direct_ok(const lin_ctx *c)
{
    const dsrt_tensor *w = c->w;
    if (w->dtype == DSRT_E4M3) return w->scale.buf && (!c->act_quant || w->scale.block[1] == 128);
    return w->dtype == DSRT_BF16 || w->dtype == DSRT_F32;
}

/* Output rows [m0, m1) x columns [n0, n1) with weight group g. */
static void linear_tile(dsrt_cpu_job *job, lin_ctx *c, int64_t g, int64_t m0, int64_t m1, int64_t n0, int64_t n1,
                        float *wrow)
{
    const dsrt_tensor *w = c->w, *y = c->y;
    char *yb = dsrt_cpu_base(y);
    if (m1 - m0 <= 2 && direct_ok(c)) {
        for (int64_t n = n0; n < n1; n++)
            for (int64_t m = m0; m < m1; m++)
                dsrt_cpu_st(yb, y->dtype, m * y->stride[0] + n * y->stride[1], c->alpha * direct_dot(c, g, n, c->xv + m * c->K, m));
        return;
    }
    for (int64_t n = n0; n < n1; n++) {
        load_weight_row(w, g, n, c->K, c->act_quant, wrow);
        for (int64_t m = m0; m < m1; m++) {
            const float *xr = c->xv + m * c->K;
            float acc;
            if (c->act_quant) {
                acc = 0;
                for (int64_t kb = 0; kb < c->nkb; kb++) {
                    int64_t k0 = kb * 128, len = c->K - k0 < 128 ? c->K - k0 : 128;
                    float part = dsrt_cpu_dot(xr + k0, wrow + k0, len);
                    acc += part * (c->xs[m * c->nkb + kb] * dsrt_cpu_block_scale(w, g, n, k0));
                }
            } else {
                acc = dsrt_cpu_dot(xr, wrow, c->K);
            }
            dsrt_cpu_st(yb, y->dtype, m * y->stride[0] + n * y->stride[1], c->alpha * acc);
        }
    }
}

static void linear_tiles(void *vctx, int64_t b, int64_t e, int th)
{
    dsrt_cpu_job *job = vctx;
    lin_ctx *c = job->extra;
    float *wrow = dsrt_job_alloc(job, c->K);
    if (!wrow) return;
    int64_t ntn = (c->N + TILE_N - 1) / TILE_N;
    for (int64_t it = b; it < e; it++) {
        int64_t tm = it / ntn, tn = it % ntn;
        int64_t m0 = tm * TILE_M, m1 = m0 + TILE_M < c->M ? m0 + TILE_M : c->M;
        int64_t n0 = tn * TILE_N, n1 = n0 + TILE_N < c->N ? n0 + TILE_N : c->N;
        linear_tile(job, c, 0, m0, m1, n0, n1, wrow);
    }
    free(wrow);
}

static dsrt_status prepare(dsrt_pool *pool, dsrt_cpu_job *job, lin_ctx *c)
{
    const dsrt_op *op = job->op;
    c->x = &op->in[0];
    c->w = &op->in[1];
    c->y = &op->out[0];
    c->M = c->x->shape[0];
    c->K = c->x->shape[1];
    c->N = c->w->shape[c->w->ndim - 2];
    c->nkb = (c->K + 127) / 128;
    c->act_quant = op->p.act_quant;
    c->alpha = op->p.alpha;
    c->xv = malloc(sizeof(float) * (size_t)(c->M * c->K + 1));
    c->xs = malloc(sizeof(float) * (size_t)(c->M * c->nkb + 1));
    if (!c->xv || !c->xs) {
        free(c->xv);
        free(c->xs);
        return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "cpu %s: out of host memory for %lld x %lld activations",
                          dsrt_op_name(op->kind), (long long)c->M, (long long)c->K);
    }
    job->extra = c;
    dsrt_pool_run(pool, c->M, 4, prep_rows, job);
    return DSRT_OK;
}

DSRT_CPU_OP(linear)
{
    dsrt_cpu_job job;
    dsrt_cpu_job_init(&job, op);
    lin_ctx c = {0};
    DSRT_TRY(prepare(pool, &job, &c));
    int64_t tiles = ((c.M + TILE_M - 1) / TILE_M) * ((c.N + TILE_N - 1) / TILE_N);
    dsrt_pool_run(pool, tiles, 1, linear_tiles, &job);
    free(c.xv);
    free(c.xs);
    return dsrt_job_status(&job);
}

/* Grouped: work items are (group, column tile); each covers the group's rows in TILE_M pieces. */
static void grouped_tiles(void *vctx, int64_t b, int64_t e, int th)
{
    dsrt_cpu_job *job = vctx;
    lin_ctx *c = job->extra;
    float *wrow = dsrt_job_alloc(job, c->K);
    if (!wrow) return;
    int64_t ntn = (c->N + TILE_N - 1) / TILE_N;
    for (int64_t it = b; it < e; it++) {
        int64_t g = it / ntn, tn = it % ntn;
        int64_t r0 = c->offsets[g], r1 = c->offsets[g + 1];
        int64_t n0 = tn * TILE_N, n1 = n0 + TILE_N < c->N ? n0 + TILE_N : c->N;
        for (int64_t m0 = r0; m0 < r1; m0 += TILE_M)
            linear_tile(job, c, g, m0, m0 + TILE_M < r1 ? m0 + TILE_M : r1, n0, n1, wrow);
    }
    free(wrow);
}

DSRT_CPU_OP(linear_grouped)
{
    const dsrt_tensor *off = &op->in[2];
    int64_t G = op->in[1].shape[0], R = op->in[0].shape[0];
    const int32_t *o = dsrt_cpu_base(off);
    int32_t *offsets = malloc(sizeof(int32_t) * (size_t)(G + 1));
    if (!offsets) return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "cpu linear_grouped: out of memory");
    for (int64_t g = 0; g <= G; g++) {
        offsets[g] = o[g * off->stride[0]];
        if (offsets[g] < 0 || offsets[g] > R || (g > 0 && offsets[g] < offsets[g - 1])) {
            int32_t bad = offsets[g];
            free(offsets);
            return dsrt_error(DSRT_CODE_OUT_OF_RANGE,
                              "linear_grouped: offsets[%lld] = %d is not non-decreasing within 0..%lld rows",
                              (long long)g, bad, (long long)R);
        }
    }
    dsrt_cpu_job job;
    dsrt_cpu_job_init(&job, op);
    lin_ctx c = {0};
    dsrt_status st = prepare(pool, &job, &c);
    if (st) {
        free(offsets);
        return st;
    }
    c.offsets = offsets;
    c.G = G;
    dsrt_pool_run(pool, G * ((c.N + TILE_N - 1) / TILE_N), 1, grouped_tiles, &job);
    free(c.xv);
    free(c.xs);
    free(offsets);
    return dsrt_job_status(&job);
}

/* Per-head: items are (t, h) pairs; y[t,h,:] from W[h]. */
static void head_rows(void *vctx, int64_t b, int64_t e, int th)
{
    dsrt_cpu_job *job = vctx;
    const dsrt_op *op = job->op;
    const dsrt_tensor *x = &op->in[0], *w = &op->in[1], *y = &op->out[0];
    int64_t Hh = x->shape[1], K = x->shape[2], N = y->shape[2];
    float *buf = dsrt_job_alloc(job, K + 2 * N + (op->p.transpose_w ? 0 : K));
    if (!buf) return;
    float *xv = buf, *acc = buf + K, *wr = buf + K + N;
    for (int64_t it = b; it < e; it++) {
        int64_t t = it / Hh, h = it % Hh;
        dsrt_cpu_load_row(x, dsrt_cpu_at3(x, t, h, 0), K, xv);
        if (op->p.transpose_w) { /* W[h] is [K, N]: accumulate rows */
            memset(acc, 0, sizeof(float) * (size_t)N);
            for (int64_t k = 0; k < K; k++) {
                dsrt_cpu_load_row(w, dsrt_cpu_at3(w, h, k, 0), N, wr);
                dsrt_cpu_axpy(acc, xv[k], wr, N);
            }
        } else {
            for (int64_t n = 0; n < N; n++) {
                dsrt_cpu_load_row(w, dsrt_cpu_at3(w, h, n, 0), K, wr);
                acc[n] = dsrt_cpu_dot(xv, wr, K);
            }
        }
        dsrt_cpu_store_row(y, dsrt_cpu_at3(y, t, h, 0), N, acc);
    }
    free(buf);
}

DSRT_CPU_OP(head_linear)
{
    dsrt_cpu_job job;
    dsrt_cpu_job_init(&job, op);
    dsrt_pool_run(pool, op->in[0].shape[0] * op->in[0].shape[1], 1, head_rows, &job);
    return dsrt_job_status(&job);
}
