/* CPU reference: element-wise ops, norms, RoPE, embedding, quantization, Hadamard. */
#include <math.h>
#include <stdlib.h>

#include "cpu/cpu_ops.h"
#include "cpu_simd.h"
#include "dsrt/act_quant.h"
#include "dsrt/hadamard.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__)
#define DSRT_SIMD_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define DSRT_SIMD_CLONES
#endif

DSRT_SIMD_CLONES float dsrt_cpu_dot(const float *a, const float *b, int64_t n)
{
    float acc[16] = {0};
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (int j = 0; j < 16; j++) acc[j] += a[i + j] * b[i + j];
    float s = 0;
    for (; i < n; i++) s += a[i] * b[i];
    for (int j = 0; j < 16; j++) s += acc[j];
    return s;
}

DSRT_SIMD_CLONES void dsrt_cpu_axpy(float *y, float a, const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++) y[i] += a * x[i];
}

/* e4m3 bits S.EEEE.MMM placed at f32 bits 31 and 26..20 give 2^(E-127) * (1.MMM) (or the subnormal
 * MMM/8 * 2^-126); times 2^120 that is the e4m3 value 2^(E-7) * 1.MMM (or MMM/8 * 2^-6), exactly. */
static inline float e4m3_bits(uint8_t b)
{
    uint32_t u = ((uint32_t)(b & 0x80) << 24) | ((uint32_t)(b & 0x7f) << 20);
    float f;
    memcpy(&f, &u, sizeof f);
    return f * 0x1p120f;
}

static inline float bf16_bits(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

DSRT_SIMD_CLONES void dsrt_cpu_bf16_to_f32(const uint16_t *in, int64_t n, float *out)
{
    for (int64_t i = 0; i < n; i++) out[i] = bf16_bits(in[i]);
}

DSRT_SIMD_CLONES void dsrt_cpu_e4m3_to_f32(const uint8_t *in, int64_t n, float *out)
{
    for (int64_t i = 0; i < n; i++) out[i] = e4m3_bits(in[i]);
}

DSRT_SIMD_CLONES static float dot_e4m3_portable(const float *x, const uint8_t *w, int64_t n)
{
    float acc[16] = {0};
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (int j = 0; j < 16; j++) acc[j] += x[i + j] * e4m3_bits(w[i + j]);
    float s = 0;
    for (; i < n; i++) s += x[i] * e4m3_bits(w[i]);
    for (int j = 0; j < 16; j++) s += acc[j];
    return s;
}

DSRT_SIMD_CLONES static float dot_bf16_portable(const float *x, const uint16_t *w, int64_t n)
{
    float acc[16] = {0};
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (int j = 0; j < 16; j++) acc[j] += x[i + j] * bf16_bits(w[i + j]);
    float s = 0;
    for (; i < n; i++) s += x[i] * bf16_bits(w[i]);
    for (int j = 0; j < 16; j++) s += acc[j];
    return s;
}

/* ---- convert ---- */
static void convert_rows(void *vctx, int64_t b, int64_t e, int th)
{
    dsrt_cpu_job *job = vctx;
    const dsrt_op *op = job->op;
    const dsrt_tensor *x = &op->in[0], *y = &op->out[0];
    int64_t n = x->shape[x->ndim - 1];
    float *row = dsrt_job_alloc(job, n);
    if (!row) return;
    bool ints = !dsrt_dtype_is_float(x->dtype);
    for (int64_t r = b; r < e; r++) {
        int64_t xo = dsrt_cpu_row_offset(x, r), yo = dsrt_cpu_row_offset(y, r);
        if (ints) {
            size_t es = dsrt_dtype_size(x->dtype);
            memmove((char *)dsrt_cpu_base(y) + (size_t)yo * es, (const char *)dsrt_cpu_base(x) + (size_t)xo * es,
                    (size_t)n * es);
            continue;
        }
        dsrt_cpu_load_row(x, xo, n, row);
        if (x->scale.buf) {
            int64_t lead = 0, rr = 0, rows2 = x->ndim >= 2 ? x->shape[x->ndim - 2] : 1;
            rr = r % rows2;
            lead = r / rows2;
            for (int64_t c = 0; c < n; c++) row[c] *= dsrt_cpu_block_scale(x, lead, rr, c);
        }
        dsrt_cpu_store_row(y, yo, n, row);
    }
    free(row);
}

dsrt_status dsrt_cpu_convert(dsrt_pool *pool, const dsrt_op *op)
{
    const dsrt_tensor *x = &op->in[0];
    if (x->scale.buf && x->ndim > 3)
        return dsrt_error(DSRT_CODE_UNIMPLEMENTED, "cpu convert: scaled tensors of rank > 3");
    dsrt_cpu_job job;
    dsrt_cpu_job_init(&job, op);
    dsrt_pool_run(pool, dsrt_cpu_rows(x), 16, convert_rows, &job);
    return dsrt_job_status(&job);
}

/* ---- embed ---- */
static void embed_rows(void *vctx, int64_t b, int64_t e, int th)
{
    dsrt_cpu_job *job = vctx;
    const dsrt_op *op = job->op;
    const dsrt_tensor *tab = &op->in[0], *ids = &op->in[1], *y = &op->out[0];
    int64_t V = tab->shape[0], H = tab->shape[1];
    float *row = dsrt_job_alloc(job, H);
    if (!row) return;
    for (int64_t t = b; t < e; t++) {
        int32_t id = dsrt_cpu_i32(ids, t * ids->stride[0]);
        if (id < 0 || id >= V) memset(row, 0, sizeof(float) * (size_t)H);
        else dsrt_cpu_load_row(tab, id * tab->stride[0], H, row);
        dsrt_cpu_store_row(y, t * y->stride[0], H, row);
    }
    free(row);
}

dsrt_status dsrt_cpu_embed(dsrt_pool *pool, const dsrt_op *op)
{
    dsrt_cpu_job job;
    dsrt_cpu_job_init(&job, op);
    dsrt_pool_run(pool, op->in[1].shape[0], 4, embed_rows, &job);
    return dsrt_job_status(&job);
}

/* ---- norms ---- */
static void rms_rows(void *vctx, int64_t b, int64_t e, int th)
{
    dsrt_cpu_job *job = vctx;
    const dsrt_op *op = job->op;
    const dsrt_tensor *x = &op->in[0], *w = &op->in[1], *res = &op->in[2], *y = &op->out[0], *ro = &op->out[1];
    int64_t D = x->shape[1];
    float *s = dsrt_job_alloc(job, 2 * D);
    if (!s) return;
    float *wv = s + D;
    dsrt_cpu_load_row(w, 0, D, wv);
    for (int64_t m = b; m < e; m++) {
        dsrt_cpu_load_row(x, m * x->stride[0], D, s);
        if (res->buf) {
            for (int64_t i = 0; i < D; i++) s[i] += dsrt_cpu_ld(dsrt_cpu_base(res), res->dtype, m * res->stride[0] + i);
            dsrt_cpu_store_row(ro, m * ro->stride[0], D, s);
        }
        float ss = 0;
        for (int64_t i = 0; i < D; i++) ss += s[i] * s[i];
        float r = 1.0f / sqrtf(ss / (float)D + op->p.eps);
        for (int64_t i = 0; i < D; i++) s[i] = wv[i] * (s[i] * r);
        dsrt_cpu_store_row(y, m * y->stride[0], D, s);
    }
    free(s);
}

dsrt_status dsrt_cpu_rms_norm(dsrt_pool *pool, const dsrt_op *op)
{
    dsrt_cpu_job job;
    dsrt_cpu_job_init(&job, op);
    dsrt_pool_run(pool, op->in[0].shape[0], 4, rms_rows, &job);
    return dsrt_job_status(&job);
}

static void ln_rows(void *vctx, int64_t b, int64_t e, int th)
{
    dsrt_cpu_job *job = vctx;
    const dsrt_op *op = job->op;
    const dsrt_tensor *x = &op->in[0], *w = &op->in[1], *bi = &op->in[2], *y = &op->out[0];
    int64_t D = x->shape[1];
    float *s = dsrt_job_alloc(job, 3 * D);
    if (!s) return;
    float *wv = s + D, *bv = s + 2 * D;
    dsrt_cpu_load_row(w, 0, D, wv);
    dsrt_cpu_load_row(bi, 0, D, bv);
    for (int64_t m = b; m < e; m++) {
        dsrt_cpu_load_row(x, m * x->stride[0], D, s);
        float mean = 0, var = 0;
        for (int64_t i = 0; i < D; i++) mean += s[i];
        mean /= (float)D;
        for (int64_t i = 0; i < D; i++) var += (s[i] - mean) * (s[i] - mean);
        var /= (float)D;
        float r = 1.0f / sqrtf(var + op->p.eps);
        for (int64_t i = 0; i < D; i++) s[i] = (s[i] - mean) * r * wv[i] + bv[i];
        dsrt_cpu_store_row(y, m * y->stride[0], D, s);
    }
    free(s);
}

dsrt_status dsrt_cpu_layer_norm(dsrt_pool *pool, const dsrt_op *op)
{
    dsrt_cpu_job job;
    dsrt_cpu_job_init(&job, op);
    dsrt_pool_run(pool, op->in[0].shape[0], 4, ln_rows, &job);
    return dsrt_job_status(&job);
}

/* ---- rope ---- */
static void rope_rows(void *vctx, int64_t b, int64_t e, int th)
{
    dsrt_cpu_job *job = vctx;
    const dsrt_op *op = job->op;
    const dsrt_tensor *x = &op->in[0], *pos = &op->in[1], *cs = &op->in[2], *y = &op->out[0];
    int64_t R = x->shape[x->ndim - 1], H = x->ndim == 3 ? x->shape[1] : 1, half = R / 2, P = cs->shape[0];
    float *v = dsrt_job_alloc(job, 2 * R);
    if (!v) return;
    float *o = v + R;
    const float *tab = dsrt_cpu_base(cs);
    for (int64_t r = b; r < e; r++) {
        int64_t t = r / H, h = r % H;
        int64_t xo = t * x->stride[0] + (x->ndim == 3 ? h * x->stride[1] : 0);
        int64_t yo = t * y->stride[0] + (y->ndim == 3 ? h * y->stride[1] : 0);
        int32_t p = dsrt_cpu_i32(pos, t * pos->stride[0]);
        dsrt_cpu_load_row(x, xo, R, v);
        if (p < 0 || p >= P) {
            dsrt_cpu_store_row(y, yo, R, v);
            continue;
        }
        for (int64_t i = 0; i < half; i++) {
            float c = tab[p * cs->stride[0] + i * cs->stride[1]], s = tab[p * cs->stride[0] + i * cs->stride[1] + 1];
            int64_t a = op->p.interleaved ? 2 * i : i, bb = op->p.interleaved ? 2 * i + 1 : i + half;
            o[a] = v[a] * c - v[bb] * s;
            o[bb] = v[bb] * c + v[a] * s;
        }
        dsrt_cpu_store_row(y, yo, R, o);
    }
    free(v);
}

dsrt_status dsrt_cpu_rope(dsrt_pool *pool, const dsrt_op *op)
{
    const dsrt_tensor *x = &op->in[0];
    int64_t rows = x->shape[0] * (x->ndim == 3 ? x->shape[1] : 1);
    dsrt_cpu_job job;
    dsrt_cpu_job_init(&job, op);
    dsrt_pool_run(pool, rows, 16, rope_rows, &job);
    return dsrt_job_status(&job);
}

/* ---- swiglu, add ---- */
static void swiglu_rows(void *vctx, int64_t b, int64_t e, int th)
{
    dsrt_cpu_job *job = vctx;
    const dsrt_op *op = job->op;
    const dsrt_tensor *g = &op->in[0], *u = &op->in[1], *y = &op->out[0];
    int64_t I = g->shape[1];
    float *gv = dsrt_job_alloc(job, 2 * I);
    if (!gv) return;
    float *uv = gv + I;
    for (int64_t m = b; m < e; m++) {
        dsrt_cpu_load_row(g, m * g->stride[0], I, gv);
        dsrt_cpu_load_row(u, m * u->stride[0], I, uv);
        for (int64_t i = 0; i < I; i++) gv[i] = gv[i] / (1.0f + expf(-gv[i])) * uv[i];
        dsrt_cpu_store_row(y, m * y->stride[0], I, gv);
    }
    free(gv);
}

dsrt_status dsrt_cpu_swiglu(dsrt_pool *pool, const dsrt_op *op)
{
    dsrt_cpu_job job;
    dsrt_cpu_job_init(&job, op);
    dsrt_pool_run(pool, op->in[0].shape[0], 4, swiglu_rows, &job);
    return dsrt_job_status(&job);
}

static void add_rows(void *vctx, int64_t b, int64_t e, int th)
{
    dsrt_cpu_job *job = vctx;
    const dsrt_op *op = job->op;
    const dsrt_tensor *a = &op->in[0], *bb = &op->in[1], *y = &op->out[0];
    int64_t n = a->shape[a->ndim - 1];
    float *av = dsrt_job_alloc(job, 2 * n);
    if (!av) return;
    float *bv = av + n;
    for (int64_t r = b; r < e; r++) {
        dsrt_cpu_load_row(a, dsrt_cpu_row_offset(a, r), n, av);
        dsrt_cpu_load_row(bb, dsrt_cpu_row_offset(bb, r), n, bv);
        for (int64_t i = 0; i < n; i++) av[i] += bv[i];
        dsrt_cpu_store_row(y, dsrt_cpu_row_offset(y, r), n, av);
    }
    free(av);
}

dsrt_status dsrt_cpu_add(dsrt_pool *pool, const dsrt_op *op)
{
    dsrt_cpu_job job;
    dsrt_cpu_job_init(&job, op);
    dsrt_pool_run(pool, dsrt_cpu_rows(&op->in[0]), 4, add_rows, &job);
    return dsrt_job_status(&job);
}

/* ---- act_quant, hadamard ---- */
static void store_scale(const dsrt_tensor *q, int64_t idx, float s)
{
    char *b = (char *)dsrt_buffer_host_ptr(q->scale.buf) + q->scale.offset;
    if (q->scale.dtype == DSRT_UE8M0) {
        uint8_t e = 0;
        dsrt_status_free(dsrt_f32_to_ue8m0(s, &e)); /* pow2 scales by validation */
        ((uint8_t *)b)[idx] = e;
    } else {
        ((float *)b)[idx] = s;
    }
}

static void act_quant_rows(void *vctx, int64_t b, int64_t e, int th)
{
    dsrt_cpu_job *job = vctx;
    const dsrt_op *op = job->op;
    const dsrt_tensor *x = &op->in[0], *q = &op->out[0];
    int64_t K = x->shape[1];
    int blk = q->scale.block[1];
    int64_t nb = (K + blk - 1) / blk;
    float *v = dsrt_job_alloc(job, K + nb);
    if (!v) return;
    float *sc = v + K;
    for (int64_t m = b; m < e; m++) {
        dsrt_cpu_load_row(x, m * x->stride[0], K, v);
        uint8_t *qo = (uint8_t *)dsrt_cpu_base(q) + m * q->stride[0];
        dsrt_act_quant_row(v, K, blk, op->p.scale_pow2, qo, sc);
        for (int64_t i = 0; i < nb; i++) store_scale(q, m * q->scale.stride[0] + i * q->scale.stride[1], sc[i]);
    }
    free(v);
}

dsrt_status dsrt_cpu_act_quant(dsrt_pool *pool, const dsrt_op *op)
{
    dsrt_cpu_job job;
    dsrt_cpu_job_init(&job, op);
    dsrt_pool_run(pool, op->in[0].shape[0], 4, act_quant_rows, &job);
    return dsrt_job_status(&job);
}

static void hadamard_rows(void *vctx, int64_t b, int64_t e, int th)
{
    dsrt_cpu_job *job = vctx;
    const dsrt_op *op = job->op;
    const dsrt_tensor *x = &op->in[0], *y = &op->out[0];
    int64_t n = x->shape[1];
    float *v = dsrt_job_alloc(job, n);
    if (!v) return;
    for (int64_t m = b; m < e; m++) {
        dsrt_cpu_load_row(x, m * x->stride[0], n, v);
        dsrt_status_free(dsrt_hadamard_f32(v, n)); /* n is a power of two by validation */
        dsrt_cpu_store_row(y, m * y->stride[0], n, v);
    }
    free(v);
}

dsrt_status dsrt_cpu_hadamard(dsrt_pool *pool, const dsrt_op *op)
{
    dsrt_cpu_job job;
    dsrt_cpu_job_init(&job, op);
    dsrt_pool_run(pool, op->in[0].shape[0], 4, hadamard_rows, &job);
    return dsrt_job_status(&job);
}

/* ---- cache_write ---- */
static void cache_rows(void *vctx, int64_t b, int64_t e, int th)
{
    dsrt_cpu_job *job = vctx;
    const dsrt_op *op = job->op;
    const dsrt_tensor *src = &op->in[0], *slots = &op->in[1], *src2 = &op->in[2], *cache = &op->out[0];
    int64_t W1 = src->shape[1], W2 = src2->buf ? src2->shape[1] : 0, S = cache->shape[0];
    int64_t nb = (W1 + 127) / 128;
    float *v = dsrt_job_alloc(job, W1 + W2 + nb);
    if (!v) return;
    float *sc = v + W1 + W2;
    for (int64_t t = b; t < e; t++) {
        int32_t slot = dsrt_cpu_i32(slots, t * slots->stride[0]);
        if (slot < 0 || slot >= S) continue;
        dsrt_cpu_load_row(src, t * src->stride[0], W1, v);
        if (W2) dsrt_cpu_load_row(src2, t * src2->stride[0], W2, v + W1);
        if (op->p.format == DSRT_CACHE_PLAIN) {
            dsrt_cpu_store_row(cache, slot * cache->stride[0], W1 + W2, v);
            continue;
        }
        uint8_t *row = (uint8_t *)dsrt_cpu_base(cache) + slot * cache->stride[0];
        dsrt_act_quant_row(v, W1, 128, op->p.scale_pow2, row, sc);
        memcpy(row + W1, sc, sizeof(float) * (size_t)nb);
        uint16_t *tail = (uint16_t *)(row + W1 + 4 * nb);
        for (int64_t i = 0; i < W2; i++) {
            uint16_t h = dsrt_f32_to_bf16(v[W1 + i]);
            memcpy(tail + i, &h, sizeof h); /* the tail may be unaligned for odd widths */
        }
    }
    free(v);
}

dsrt_status dsrt_cpu_cache_write(dsrt_pool *pool, const dsrt_op *op)
{
    dsrt_cpu_job job;
    dsrt_cpu_job_init(&job, op);
    dsrt_pool_run(pool, op->in[0].shape[0], 4, cache_rows, &job);
    return dsrt_job_status(&job);
}

float dsrt_cpu_dot_e4m3(const float *x, const uint8_t *w, int64_t n)
{
    return dsrt_cpu_avx2() ? dsrt_cpu_dot_e4m3_avx2(x, w, n) : dot_e4m3_portable(x, w, n);
}

float dsrt_cpu_dot_bf16(const float *x, const uint16_t *w, int64_t n)
{
    return dsrt_cpu_avx2() ? dsrt_cpu_dot_bf16_avx2(x, w, n) : dot_bf16_portable(x, w, n);
}
