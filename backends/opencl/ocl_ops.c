/* The ops on OpenCL: validated op values (hal/include/dsrt/ops.h) become kernel launches on the stream's
 * queue. Tensors are passed as (cl_mem, byte offset, dtype, element strides); kernels index rows with
 * 64-bit arithmetic. Temporaries live in the stream's scratch buffers. Paths are chosen from the op's
 * shapes and the device's capabilities (never from vendor names): GEMV for few rows, tiled GEMM or
 * CLBlast for many, split-K when a layer has too few output rows to fill the device. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dsrt/buffer.h"
#include "dsrt/half.h"
#include "ocl_internal.h"

#ifdef DSRT_HAVE_CLBLAST
#include <clblast_c.h>
#endif

/* ---- kernel arguments ---- */

typedef struct {
    cl_kernel k;
    cl_uint i;
    cl_int err;
    cl_uint bad;
} dsrt_kargs;

static void ka_raw(dsrt_kargs *a, size_t size, const void *v)
{
    if (a->err == CL_SUCCESS) {
        a->err = clSetKernelArg(a->k, a->i, size, v);
        if (a->err != CL_SUCCESS) a->bad = a->i;
    }
    a->i++;
}
static void ka_mem(dsrt_kargs *a, cl_mem m) { ka_raw(a, sizeof m, &m); }
static void ka_i32(dsrt_kargs *a, int64_t v)
{
    cl_int x = (cl_int)v;
    ka_raw(a, sizeof x, &x);
}
static void ka_i64(dsrt_kargs *a, int64_t v)
{
    cl_long x = (cl_long)v;
    ka_raw(a, sizeof x, &x);
}
static void ka_u64(dsrt_kargs *a, uint64_t v)
{
    cl_ulong x = (cl_ulong)v;
    ka_raw(a, sizeof x, &x);
}
static void ka_f32(dsrt_kargs *a, float v)
{
    cl_float x = v;
    ka_raw(a, sizeof x, &x);
}
static void ka_local(dsrt_kargs *a, size_t bytes) { ka_raw(a, bytes ? bytes : 4, NULL); }

static cl_mem mem_of(const dsrt_buffer *b) { return b ? ((dsrt_ocl_buffer *)dsrt_buffer_native(b))->mem : NULL; }

/* (buffer, byte offset) of a tensor; an absent tensor passes NULL, which kernels never dereference. */
static void ka_tensor(dsrt_kargs *a, const dsrt_tensor *t)
{
    ka_mem(a, t->buf ? mem_of(t->buf) : NULL);
    ka_u64(a, t->buf ? t->offset : 0);
}

/* A row-major operand as most kernels take it: buffer, byte offset, dtype, row stride. */
static void ka_rows(dsrt_kargs *a, const dsrt_tensor *t)
{
    ka_tensor(a, t);
    ka_i32(a, t->dtype);
    ka_i64(a, t->stride[0]);
}

/* A matrix operand as the kernels see it: a buffer (a tensor's or scratch), a byte offset, a dtype. */
typedef struct {
    cl_mem mem;
    size_t off;
    dsrt_dtype dt;
} dsrt_opnd;

static dsrt_opnd opnd_of(const dsrt_tensor *t)
{
    dsrt_opnd o = {t->buf ? mem_of(t->buf) : NULL, t->buf ? t->offset : 0, t->dtype};
    return o;
}

static dsrt_opnd opnd_mem(cl_mem m, size_t off, dsrt_dtype dt)
{
    dsrt_opnd o = {m, off, dt};
    return o;
}

static void ka_opnd(dsrt_kargs *a, dsrt_opnd o)
{
    ka_mem(a, o.mem);
    ka_u64(a, o.off);
}

/* The scale companion of t as (buffer, byte offset). */
static void ka_scale(dsrt_kargs *a, const dsrt_tensor *t)
{
    ka_mem(a, t->scale.buf ? mem_of(t->scale.buf) : NULL);
    ka_u64(a, t->scale.buf ? t->scale.offset : 0);
}

static dsrt_status dsrt_begin(dsrt_ocl_stream *s, dsrt_ocl_kernel_id id, dsrt_kargs *a)
{
    memset(a, 0, sizeof *a);
    return dsrt_ocl_kernel(s, id, &a->k);
}

static size_t round_up(size_t v, size_t m) { return (v + m - 1) / m * m; }

static dsrt_status dsrt_launch(dsrt_ocl_stream *s, dsrt_ocl_kernel_id id, dsrt_kargs *a, cl_uint dims,
                               const size_t *global, const size_t *local)
{
    if (a->err != CL_SUCCESS)
        return dsrt_ocl_fail(a->err, "setting argument %u of kernel '%s'", a->bad, dsrt_ocl_kernel_names[id]);
    for (cl_uint d = 0; d < dims; d++)
        if (global[d] == 0) return DSRT_OK; /* nothing to do */
    if (s->trace) { /* DSRT_OPENCL_TRACE=1: which kernel a driver crashed or hung on */
        fprintf(stderr, "dsrt opencl: launch %s global %zu x %zu local %zu\n", dsrt_ocl_kernel_names[id], global[0],
                dims > 1 ? global[1] : (size_t)1, local ? local[0] : (size_t)0);
        fflush(stderr);
    }
    cl_event ev = NULL;
    cl_int err = clEnqueueNDRangeKernel(s->q, a->k, dims, NULL, global, local, 0, NULL, s->profile ? &ev : NULL);
    if (err != CL_SUCCESS) return dsrt_ocl_fail(err, "launching kernel '%s'", dsrt_ocl_kernel_names[id]);
    return ev ? dsrt_ocl_profile_add(s, id, ev) : DSRT_OK;
}

static int wg_of(const dsrt_ocl_stream *s) { return s->dev->cfg.wg; }

static int pow2_ceil(int64_t v)
{
    int p = 1;
    while (p < v && p < (1 << 30)) p *= 2;
    return p;
}

static int pow2_floor(int64_t v)
{
    int p = 1;
    while ((int64_t)p * 2 <= v && p < (1 << 30)) p *= 2;
    return p;
}

/* Leading dims of a tensor of rank nd, right-aligned into three (d0, d1, d2) with strides; missing dims
 * are 1 with stride 0. */
typedef struct {
    int64_t d[3], s[3], rows;
} dsrt_lead;

static dsrt_lead lead_of(const dsrt_tensor *t)
{
    dsrt_lead l = {{1, 1, 1}, {0, 0, 0}, 1};
    int nl = t->ndim - 1;
    for (int i = 0; i < nl; i++) {
        l.d[3 - nl + i] = t->shape[i];
        l.s[3 - nl + i] = t->stride[i];
    }
    l.rows = l.d[0] * l.d[1] * l.d[2];
    return l;
}

static int64_t last_dim(const dsrt_tensor *t) { return t->shape[t->ndim - 1]; }

/* ---- capability checks ---- */

static bool refuse(char *why, size_t len, const char *fmt, ...) DSRT_PRINTF(3, 4);
static bool refuse(char *why, size_t len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, len, fmt, ap);
    va_end(ap);
    return false;
}

/* Largest power-of-two number of entries the top-k sort can hold in local memory (8 bytes each, plus
 * about 2 KB of histograms and scan space). */
static int64_t sort_capacity(const dsrt_ocl_device *d)
{
    size_t local = d->cfg.local_mem;
    size_t reserve = 2048 + 8 * (size_t)d->cfg.wg + 64;
    if (local <= reserve) return 0;
    return pow2_floor((int64_t)((local - reserve) / 8));
}

bool dsrt_ocl_supports_op(void *dctx, const dsrt_op *op, char *why, size_t why_len)
{
    const dsrt_ocl_device *d = dctx;
    const dsrt_op_info *info = dsrt_op_get_info(op->kind);
    /* Kernels read elements through typed pointers: every view must start on an element boundary. */
    for (int io = 0; io < 2; io++) {
        const dsrt_tensor *ts = io ? op->out : op->in;
        const char *const *names = io ? info->out_names : info->in_names;
        for (int i = 0; names[i]; i++) {
            const dsrt_tensor *t = &ts[i];
            if (!t->buf) continue;
            size_t es = dsrt_dtype_size(t->dtype);
            if (es > 1 && t->offset % es)
                return refuse(why, why_len, "'%s' starts at byte %zu, not a multiple of its %zu-byte elements",
                              names[i], t->offset, es);
            if (t->scale.buf && t->scale.dtype == DSRT_F32 && t->scale.offset % 4)
                return refuse(why, why_len, "the scales of '%s' start at byte %zu, not a multiple of 4", names[i],
                              t->scale.offset);
        }
    }
    if (d->cfg.wg < 64) return refuse(why, why_len, "the device runs fewer than 64 work items per group");
    int64_t cap = sort_capacity(d);
    switch (op->kind) {
    case DSRT_OP_CONVERT:
        if (op->in[0].scale.buf && op->in[0].ndim > 3) return refuse(why, why_len, "scaled tensors of rank > 3");
        return true;
    case DSRT_OP_TOPK:
        if (pow2_ceil(op->p.k) > cap)
            return refuse(why, why_len, "k = %d exceeds the %lld entries this device's local memory can sort", op->p.k,
                          (long long)cap);
        return true;
    case DSRT_OP_MLA_DECODE:
    case DSRT_OP_MLA_PREFILL:
        if (op->in[6].buf && pow2_ceil(op->in[6].shape[1]) > 2 * cap)
            return refuse(why, why_len, "%lld DSA indices per row exceed what this device's local memory can sort",
                          (long long)op->in[6].shape[1]);
        return true;
    case DSRT_OP_MOE_GATE: {
        int64_t E = op->in[0].shape[1], G = op->p.n_group;
        if ((size_t)(2 * E + 2 * G) * 4 + 4 * (size_t)d->cfg.wg > d->cfg.local_mem)
            return refuse(why, why_len, "%lld experts exceed this device's local memory", (long long)E);
        return true;
    }
    case DSRT_OP_MOE_DISPATCH:
        if ((size_t)(2 * op->p.expert_count + 1) * 4 + 4 * (size_t)d->cfg.wg > d->cfg.local_mem)
            return refuse(why, why_len, "%d local experts exceed this device's local memory", op->p.expert_count);
        return true;
    case DSRT_OP_MOE_COMBINE:
        if ((size_t)op->in[1].shape[1] * 4 > d->cfg.local_mem / 2)
            return refuse(why, why_len, "k = %lld slots per token exceed local memory", (long long)op->in[1].shape[1]);
        return true;
    case DSRT_OP_SAMPLE:
        if (cap < 64) return refuse(why, why_len, "the device's local memory is too small to sort candidates");
        return true;
    default: return true;
    }
}

/* ---- element-wise and row ops ---- */

static dsrt_status op_convert(dsrt_ocl_stream *s, const dsrt_op *op)
{
    const dsrt_tensor *x = &op->in[0], *y = &op->out[0];
    dsrt_lead lx = lead_of(x), ly = lead_of(y);
    int64_t n = last_dim(x), nd = x->ndim;
    bool has_scale = x->scale.buf != NULL;
    dsrt_kargs a;
    DSRT_TRY(dsrt_begin(s, DSRT_OCL_K_convert, &a));
    ka_tensor(&a, x);
    ka_i32(&a, x->dtype);
    for (int i = 0; i < 3; i++) ka_i64(&a, lx.s[i]);
    ka_tensor(&a, y);
    ka_i32(&a, y->dtype);
    for (int i = 0; i < 3; i++) ka_i64(&a, ly.s[i]);
    ka_i64(&a, lx.d[1]);
    ka_i64(&a, lx.d[2]);
    ka_i64(&a, lx.rows);
    ka_i64(&a, n);
    ka_scale(&a, x);
    ka_i32(&a, has_scale);
    ka_i32(&a, has_scale ? x->scale.dtype : DSRT_F32);
    ka_i32(&a, has_scale ? x->scale.block[0] : 1);
    ka_i32(&a, has_scale ? x->scale.block[1] : 1);
    ka_i64(&a, has_scale && nd == 3 ? x->scale.stride[0] : 0);
    ka_i64(&a, has_scale && nd >= 2 ? x->scale.stride[nd - 2] : 0);
    ka_i64(&a, has_scale ? x->scale.stride[nd - 1] : 0);
    ka_i64(&a, nd >= 2 ? x->shape[nd - 2] : 1);
    ka_i32(&a, !dsrt_dtype_is_float(x->dtype));
    ka_i32(&a, (int)dsrt_dtype_size(x->dtype));
    size_t g[2] = {round_up((size_t)n, 64), (size_t)lx.rows}, l[2] = {64, 1};
    return dsrt_launch(s, DSRT_OCL_K_convert, &a, 2, g, l);
}

static dsrt_status op_embed(dsrt_ocl_stream *s, const dsrt_op *op)
{
    const dsrt_tensor *tab = &op->in[0], *ids = &op->in[1], *y = &op->out[0];
    int64_t H = tab->shape[1], T = ids->shape[0];
    dsrt_kargs a;
    DSRT_TRY(dsrt_begin(s, DSRT_OCL_K_embed, &a));
    ka_rows(&a, tab);
    ka_i64(&a, tab->shape[0]);
    ka_tensor(&a, ids);
    ka_i64(&a, ids->stride[0]);
    ka_rows(&a, y);
    ka_i64(&a, H);
    ka_i64(&a, T);
    size_t g[2] = {round_up((size_t)H, 64), (size_t)T}, l[2] = {64, 1};
    return dsrt_launch(s, DSRT_OCL_K_embed, &a, 2, g, l);
}

static dsrt_status op_rms_norm(dsrt_ocl_stream *s, const dsrt_op *op)
{
    const dsrt_tensor *x = &op->in[0], *w = &op->in[1], *r = &op->in[2], *y = &op->out[0], *ro = &op->out[1];
    int64_t M = x->shape[0], D = x->shape[1];
    cl_mem tmp;
    DSRT_TRY(dsrt_ocl_scratch(s, 0, (size_t)(M * D) * 4, &tmp));
    dsrt_kargs a;
    DSRT_TRY(dsrt_begin(s, DSRT_OCL_K_rms_norm, &a));
    ka_rows(&a, x);
    ka_tensor(&a, w);
    ka_i32(&a, w->dtype);
    ka_tensor(&a, r);
    ka_i32(&a, r->buf ? r->dtype : DSRT_F32);
    ka_i64(&a, r->buf ? r->stride[0] : 0);
    ka_i32(&a, r->buf != NULL);
    ka_rows(&a, y);
    ka_tensor(&a, ro);
    ka_i32(&a, ro->buf ? ro->dtype : DSRT_F32);
    ka_i64(&a, ro->buf ? ro->stride[0] : 0);
    ka_i64(&a, D);
    ka_f32(&a, op->p.eps);
    ka_mem(&a, tmp);
    size_t L = (size_t)wg_of(s), g[2] = {L, (size_t)M}, l[2] = {L, 1};
    return dsrt_launch(s, DSRT_OCL_K_rms_norm, &a, 2, g, l);
}

static dsrt_status op_layer_norm(dsrt_ocl_stream *s, const dsrt_op *op)
{
    const dsrt_tensor *x = &op->in[0], *w = &op->in[1], *b = &op->in[2], *y = &op->out[0];
    int64_t M = x->shape[0], D = x->shape[1];
    dsrt_kargs a;
    DSRT_TRY(dsrt_begin(s, DSRT_OCL_K_layer_norm, &a));
    ka_rows(&a, x);
    ka_tensor(&a, w);
    ka_i32(&a, w->dtype);
    ka_tensor(&a, b);
    ka_i32(&a, b->dtype);
    ka_rows(&a, y);
    ka_i64(&a, D);
    ka_f32(&a, op->p.eps);
    size_t L = (size_t)wg_of(s), g[2] = {L, (size_t)M}, l[2] = {L, 1};
    return dsrt_launch(s, DSRT_OCL_K_layer_norm, &a, 2, g, l);
}

static dsrt_status op_rope(dsrt_ocl_stream *s, const dsrt_op *op)
{
    const dsrt_tensor *x = &op->in[0], *pos = &op->in[1], *cs = &op->in[2], *y = &op->out[0];
    bool three = x->ndim == 3;
    int64_t T = x->shape[0], H = three ? x->shape[1] : 1, R = last_dim(x);
    dsrt_kargs a;
    DSRT_TRY(dsrt_begin(s, DSRT_OCL_K_rope, &a));
    ka_rows(&a, x);
    ka_i64(&a, three ? x->stride[1] : 0);
    ka_rows(&a, y);
    ka_i64(&a, three ? y->stride[1] : 0);
    ka_tensor(&a, pos);
    ka_i64(&a, pos->stride[0]);
    ka_tensor(&a, cs);
    ka_i64(&a, cs->stride[0]);
    ka_i64(&a, cs->stride[1]);
    ka_i64(&a, cs->shape[0]);
    ka_i64(&a, H);
    ka_i64(&a, R);
    ka_i64(&a, T * H);
    ka_i32(&a, op->p.interleaved);
    size_t g[2] = {round_up((size_t)(R / 2), 32), (size_t)(T * H)}, l[2] = {32, 1};
    return dsrt_launch(s, DSRT_OCL_K_rope, &a, 2, g, l);
}

static dsrt_status op_swiglu(dsrt_ocl_stream *s, const dsrt_op *op)
{
    const dsrt_tensor *gt = &op->in[0], *u = &op->in[1], *y = &op->out[0];
    int64_t M = gt->shape[0], I = gt->shape[1];
    dsrt_kargs a;
    DSRT_TRY(dsrt_begin(s, DSRT_OCL_K_swiglu, &a));
    ka_rows(&a, gt);
    ka_rows(&a, u);
    ka_rows(&a, y);
    ka_i64(&a, I);
    ka_i64(&a, M);
    size_t g[2] = {round_up((size_t)I, 64), (size_t)M}, l[2] = {64, 1};
    return dsrt_launch(s, DSRT_OCL_K_swiglu, &a, 2, g, l);
}

static dsrt_status op_add(dsrt_ocl_stream *s, const dsrt_op *op)
{
    const dsrt_tensor *x = &op->in[0], *b = &op->in[1], *y = &op->out[0];
    dsrt_lead la = lead_of(x), lb = lead_of(b), ly = lead_of(y);
    int64_t n = last_dim(x);
    dsrt_kargs a;
    DSRT_TRY(dsrt_begin(s, DSRT_OCL_K_add, &a));
    ka_tensor(&a, x);
    ka_i32(&a, x->dtype);
    for (int i = 0; i < 3; i++) ka_i64(&a, la.s[i]);
    ka_tensor(&a, b);
    ka_i32(&a, b->dtype);
    for (int i = 0; i < 3; i++) ka_i64(&a, lb.s[i]);
    ka_tensor(&a, y);
    ka_i32(&a, y->dtype);
    for (int i = 0; i < 3; i++) ka_i64(&a, ly.s[i]);
    ka_i64(&a, la.d[1]);
    ka_i64(&a, la.d[2]);
    ka_i64(&a, la.rows);
    ka_i64(&a, n);
    size_t g[2] = {round_up((size_t)n, 64), (size_t)la.rows}, l[2] = {64, 1};
    return dsrt_launch(s, DSRT_OCL_K_add, &a, 2, g, l);
}

static dsrt_status op_act_quant(dsrt_ocl_stream *s, const dsrt_op *op)
{
    const dsrt_tensor *x = &op->in[0], *q = &op->out[0];
    int64_t M = x->shape[0], K = x->shape[1];
    int blk = q->scale.block[1];
    int64_t nb = (K + blk - 1) / blk;
    dsrt_kargs a;
    DSRT_TRY(dsrt_begin(s, DSRT_OCL_K_act_quant, &a));
    ka_rows(&a, x);
    ka_tensor(&a, q);
    ka_i64(&a, q->stride[0]);
    ka_scale(&a, q);
    ka_i32(&a, q->scale.dtype);
    ka_i64(&a, q->scale.stride[0]);
    ka_i64(&a, q->scale.stride[1]);
    ka_i64(&a, K);
    ka_i32(&a, blk);
    ka_i32(&a, op->p.scale_pow2);
    size_t L = (size_t)(wg_of(s) < 128 ? wg_of(s) : 128), g[2] = {L * (size_t)nb, (size_t)M}, l[2] = {L, 1};
    return dsrt_launch(s, DSRT_OCL_K_act_quant, &a, 2, g, l);
}

static dsrt_status op_hadamard(dsrt_ocl_stream *s, const dsrt_op *op)
{
    const dsrt_tensor *x = &op->in[0], *y = &op->out[0];
    int64_t M = x->shape[0], n = x->shape[1];
    cl_mem tmp;
    DSRT_TRY(dsrt_ocl_scratch(s, 0, (size_t)(M * n) * 4, &tmp));
    dsrt_kargs a;
    DSRT_TRY(dsrt_begin(s, DSRT_OCL_K_hadamard, &a));
    ka_rows(&a, x);
    ka_rows(&a, y);
    ka_i64(&a, n);
    ka_mem(&a, tmp);
    size_t L = (size_t)(wg_of(s) < 128 ? wg_of(s) : 128), g[2] = {L, (size_t)M}, l[2] = {L, 1};
    return dsrt_launch(s, DSRT_OCL_K_hadamard, &a, 2, g, l);
}

static dsrt_status op_cache_write(dsrt_ocl_stream *s, const dsrt_op *op)
{
    const dsrt_tensor *x = &op->in[0], *slots = &op->in[1], *x2 = &op->in[2], *c = &op->out[0];
    int64_t T = x->shape[0];
    bool fp8 = op->p.format == DSRT_CACHE_FP8;
    dsrt_kargs a;
    DSRT_TRY(dsrt_begin(s, DSRT_OCL_K_cache_write, &a));
    ka_rows(&a, x);
    ka_i64(&a, x->shape[1]);
    ka_tensor(&a, slots);
    ka_i64(&a, slots->stride[0]);
    ka_tensor(&a, x2);
    ka_i32(&a, x2->buf ? x2->dtype : DSRT_F32);
    ka_i64(&a, x2->buf ? x2->stride[0] : 0);
    ka_i64(&a, x2->buf ? x2->shape[1] : 0);
    ka_rows(&a, c);
    ka_i64(&a, c->shape[0]);
    ka_i32(&a, fp8);
    ka_i32(&a, op->p.scale_pow2);
    size_t L = (size_t)(wg_of(s) < 128 ? wg_of(s) : 128), g[2] = {L, (size_t)T}, l[2] = {L, 1};
    return dsrt_launch(s, DSRT_OCL_K_cache_write, &a, 2, g, l);
}

/* ---- linear layers ---- */

/* A weight-by-activation product in the shape every linear path shares. */
typedef struct {
    dsrt_opnd x, w, y;
    const dsrt_tensor *wt; /* the weight tensor when it has a scale companion, else NULL */
    int64_t M, K, N;    /* rows of x, reduction length, output columns */
    int64_t batch;      /* grid slots: 1, heads, or active-expert slots */
    int64_t xs0, xs_g;  /* x row stride, per-batch stride (heads) */
    int64_t ws_g, ws_n; /* weight per-batch (head/expert) stride, row stride */
    int64_t ys0, ys_g;
    int64_t ss_g, ss_r, ss_c;
    bool transb;        /* W[k][n] (HEAD_LINEAR transpose_w) */
    bool act;
    bool grouped;
    bool accum;          /* y += result (tiled path only) */
    cl_mem xq, xs;       /* act: quantized x (f32) and its scales */
    cl_mem active;       /* grouped: active expert list */
    const dsrt_tensor *offsets;
    float alpha;
} dsrt_lin;

static void lin_scales(dsrt_lin *L, const dsrt_tensor *w)
{
    int nd = w->ndim;
    L->wt = w->scale.buf ? w : NULL;
    L->ss_g = w->scale.buf && nd == 3 ? w->scale.stride[0] : 0;
    L->ss_r = w->scale.buf ? w->scale.stride[nd - 2] : 0;
    L->ss_c = w->scale.buf ? w->scale.stride[nd - 1] : 0;
}

/* Common (x, act, weight, scales, y) argument block of gemv_* and gemm_tiled. */
static void ka_lin_x(dsrt_kargs *a, const dsrt_lin *L)
{
    if (L->act) {
        ka_mem(a, L->xq);
        ka_u64(a, 0);
        ka_i32(a, DSRT_F32);
        ka_i64(a, L->K);
        ka_i64(a, 0);
        ka_mem(a, L->xs);
        ka_u64(a, 0);
        ka_i64(a, L->K / 128);
        ka_i32(a, 1);
    } else {
        ka_opnd(a, L->x);
        ka_i32(a, L->x.dt);
        ka_i64(a, L->xs0);
        ka_i64(a, L->xs_g);
        ka_mem(a, NULL);
        ka_u64(a, 0);
        ka_i64(a, 0);
        ka_i32(a, 0);
    }
}

static void ka_lin_scales(dsrt_kargs *a, const dsrt_lin *L)
{
    const dsrt_tensor *w = L->wt;
    bool hs = w != NULL;
    if (hs) ka_scale(a, w);
    else {
        ka_mem(a, NULL);
        ka_u64(a, 0);
    }
    ka_i32(a, hs);
    ka_i32(a, hs ? w->scale.dtype : DSRT_F32);
    ka_i32(a, hs ? w->scale.block[0] : 1);
    ka_i32(a, hs ? w->scale.block[1] : 1);
    ka_i64(a, L->ss_g);
    ka_i64(a, L->ss_r);
    ka_i64(a, L->ss_c);
}

static void ka_lin_group(dsrt_kargs *a, const dsrt_lin *L)
{
    if (L->grouped) {
        ka_tensor(a, L->offsets);
        ka_i64(a, L->offsets->stride[0]);
        ka_mem(a, L->active);
    } else {
        ka_mem(a, NULL);
        ka_u64(a, 0);
        ka_i64(a, 0);
        ka_mem(a, NULL);
    }
    ka_i32(a, L->grouped);
}

/* log2 of the weight scale block's width when it is a power of two (kernels then shift), else -1. */
static int lin_sbc_shift(const dsrt_lin *L)
{
    if (!L->wt) return -1;
    int bc = L->wt->scale.block[1], sh = 0;
    if (bc & (bc - 1)) return -1;
    while ((1 << sh) < bc) sh++;
    return sh;
}

static dsrt_status lin_gemv(dsrt_ocl_stream *s, const dsrt_lin *L)
{
    const dsrt_ocl_device *d = s->dev;
    const dsrt_tensor *w = L->wt;
    size_t wes = dsrt_dtype_size(L->w.dt);
    /* 16-element vector loads need 16-byte aligned weight rows and scale blocks that cover whole vectors. */
    bool vec = L->K % 16 == 0 && L->w.off % 16 == 0 && ((size_t)L->ws_n * wes) % 16 == 0 &&
               ((size_t)L->ws_g * wes) % 16 == 0 && (!w || L->act || w->scale.block[1] % 16 == 0);
    int WG = wg_of(s);
    int64_t kv = vec ? L->K / 16 : L->K;
    /* Work items along K: the largest power of two that keeps them all busy (at least 2 steps each,
     * >= 90% of the steps doing work); the rest of the group takes more rows. */
    int tk = 16;
    for (int cand = WG; cand >= 16; cand /= 2) {
        int64_t iters = (kv + cand - 1) / cand;
        if (iters >= 2 && (double)kv / (double)(iters * cand) >= 0.9) {
            tk = cand;
            break;
        }
    }
    if (tk > WG) tk = WG;
    int tr = WG / tk, rows_per_wg = tr * d->cfg.gemv_rows;
    int64_t nwg = (L->N + rows_per_wg - 1) / rows_per_wg;
    int64_t iters = (kv + tk - 1) / tk;
    /* Split K when the layer has too few row groups to fill the device (small-N projections): into a
     * number of parts that divides the steps evenly where one exists. */
    int ksplit = 1;
    if (!L->grouped && L->batch == 1 && nwg < 2 * (int64_t)d->info->caps.compute_units && iters > 1) {
        int64_t want = (2 * (int64_t)d->info->caps.compute_units + nwg - 1) / nwg;
        if (want > 16) want = 16;
        int64_t pick = want < iters ? want : iters;
        for (int64_t ks = pick; ks <= iters && ks <= 16; ks++)
            if (iters % ks == 0) {
                pick = ks;
                break;
            }
        ksplit = (int)pick;
    }
    int64_t kchunk = L->K;
    if (ksplit > 1) {
        int64_t step = vec ? 16 * (int64_t)tk : tk;
        kchunk = (iters + ksplit - 1) / ksplit * step;
        ksplit = (int)((L->K + kchunk - 1) / kchunk);
    }
    int sbc_shift = lin_sbc_shift(L);
    /* activation rows on 16-byte boundaries read as float4 (the quantized scratch always is) */
    size_t xes = dsrt_dtype_size(L->act ? DSRT_F32 : L->x.dt);
    bool xvec = L->act || (L->x.off % 16 == 0 && ((size_t)L->xs0 * xes) % 16 == 0 && ((size_t)L->xs_g * xes) % 16 == 0);
    cl_mem part = NULL;
    if (ksplit > 1) DSRT_TRY(dsrt_ocl_scratch(s, 3, (size_t)(ksplit * L->M * L->N) * 4, &part));
    dsrt_ocl_kernel_id id = L->w.dt == DSRT_F32    ? DSRT_OCL_K_gemv_f32
                            : L->w.dt == DSRT_BF16 ? DSRT_OCL_K_gemv_bf16
                            : L->w.dt == DSRT_F16  ? DSRT_OCL_K_gemv_f16
                            : d->cfg.fp8_arith      ? DSRT_OCL_K_gemv_e4m3
                                                    : DSRT_OCL_K_gemv_e4m3_lut;
    dsrt_kargs a;
    DSRT_TRY(dsrt_begin(s, id, &a));
    ka_lin_x(&a, L);
    ka_opnd(&a, L->w);
    ka_i64(&a, L->ws_g);
    ka_i64(&a, L->ws_n);
    ka_lin_scales(&a, L);
    ka_opnd(&a, L->y);
    ka_i32(&a, L->y.dt);
    ka_i64(&a, L->ys0);
    ka_i64(&a, L->ys_g);
    ka_i64(&a, L->K);
    ka_i64(&a, L->N);
    ka_i64(&a, L->M);
    ka_f32(&a, L->alpha);
    ka_i32(&a, tk);
    ka_i32(&a, vec);
    ka_lin_group(&a, L);
    ka_i32(&a, ksplit);
    ka_i64(&a, kchunk);
    ka_mem(&a, part);
    ka_i32(&a, sbc_shift);
    ka_i32(&a, xvec);
    size_t g[3] = {(size_t)nwg * (size_t)WG, (size_t)L->batch, (size_t)ksplit}, l[3] = {(size_t)WG, 1, 1};
    DSRT_TRY(dsrt_launch(s, id, &a, 3, g, l));
    if (ksplit == 1) return DSRT_OK;
    DSRT_TRY(dsrt_begin(s, DSRT_OCL_K_splitk_reduce, &a));
    ka_mem(&a, part);
    ka_i32(&a, ksplit);
    ka_i64(&a, L->M);
    ka_i64(&a, L->N);
    ka_opnd(&a, L->y);
    ka_i32(&a, L->y.dt);
    ka_i64(&a, L->ys0);
    ka_f32(&a, L->alpha);
    size_t g2[2] = {round_up((size_t)L->N, 64), (size_t)L->M}, l2[2] = {64, 1};
    return dsrt_launch(s, DSRT_OCL_K_splitk_reduce, &a, 2, g2, l2);
}

static dsrt_status lin_tiled(dsrt_ocl_stream *s, const dsrt_lin *L)
{
    dsrt_kargs a;
    DSRT_TRY(dsrt_begin(s, DSRT_OCL_K_gemm_tiled, &a));
    ka_lin_x(&a, L);
    ka_opnd(&a, L->w);
    ka_i32(&a, L->w.dt);
    ka_i64(&a, L->ws_g);
    ka_i64(&a, L->ws_n);
    ka_i32(&a, L->transb);
    ka_lin_scales(&a, L);
    ka_opnd(&a, L->y);
    ka_i32(&a, L->y.dt);
    ka_i64(&a, L->ys0);
    ka_i64(&a, L->ys_g);
    ka_i64(&a, L->K);
    ka_i64(&a, L->N);
    ka_i64(&a, L->M);
    ka_f32(&a, L->alpha);
    ka_lin_group(&a, L);
    ka_i32(&a, L->accum);
    ka_i32(&a, lin_sbc_shift(L));
    size_t mt = L->grouped ? 1 : (size_t)((L->M + 63) / 64);
    size_t g[3] = {(size_t)((L->N + 63) / 64) * 16, mt * 16, (size_t)L->batch}, l[3] = {16, 16, 1};
    return dsrt_launch(s, DSRT_OCL_K_gemm_tiled, &a, 3, g, l);
}

#ifdef DSRT_HAVE_CLBLAST
static dsrt_status clblast_status(CLBlastStatusCode c, const char *what)
{
    if (c == CLBlastSuccess) return DSRT_OK;
    return dsrt_error(DSRT_CODE_DEVICE, "opencl: CLBlast %s failed with status %d", what, (int)c);
}
#endif

static dsrt_status op_linear(dsrt_ocl_stream *s, const dsrt_op *op)
{
    bool grouped = op->kind == DSRT_OP_LINEAR_GROUPED;
    const dsrt_tensor *x = &op->in[0], *w = &op->in[1], *y = &op->out[0];
    dsrt_lin L;
    memset(&L, 0, sizeof L);
    L.x = opnd_of(x);
    L.w = opnd_of(w);
    L.y = opnd_of(y);
    L.M = x->shape[0];
    L.K = x->shape[1];
    L.N = w->shape[w->ndim - 2];
    L.xs0 = x->stride[0];
    L.ws_g = grouped ? w->stride[0] : 0;
    L.ws_n = w->stride[w->ndim - 2];
    L.ys0 = y->stride[0];
    L.act = op->p.act_quant;
    L.alpha = grouped ? 1.0f : op->p.alpha;
    L.grouped = grouped;
    L.batch = 1;
    lin_scales(&L, w);
    if (L.M == 0 || L.N == 0) return DSRT_OK;
#ifdef DSRT_HAVE_CLBLAST
    if (!grouped && !L.act && s->dev->cfg.clblast && L.M >= 32 && x->dtype == DSRT_F32 && w->dtype == DSRT_F32 &&
        y->dtype == DSRT_F32 && !w->scale.buf) {
        cl_command_queue q = s->q;
        return clblast_status(CLBlastSgemm(CLBlastLayoutRowMajor, CLBlastTransposeNo, CLBlastTransposeYes,
                                           (size_t)L.M, (size_t)L.N, (size_t)L.K, L.alpha, mem_of(x->buf),
                                           x->offset / 4, (size_t)x->stride[0], mem_of(w->buf), w->offset / 4,
                                           (size_t)w->stride[0], 0.0f, mem_of(y->buf), y->offset / 4,
                                           (size_t)y->stride[0], &q, NULL),
                              "SGEMM");
    }
    if (!grouped && !L.act && s->dev->cfg.hgemm && L.M >= 32 && x->dtype == DSRT_F16 && w->dtype == DSRT_F16 &&
        y->dtype == DSRT_F16 && !w->scale.buf) {
        cl_command_queue q = s->q;
        return clblast_status(CLBlastHgemm(CLBlastLayoutRowMajor, CLBlastTransposeNo, CLBlastTransposeYes, (size_t)L.M,
                                           (size_t)L.N, (size_t)L.K, dsrt_f32_to_f16(L.alpha), mem_of(x->buf),
                                           x->offset / 2, (size_t)x->stride[0], mem_of(w->buf), w->offset / 2,
                                           (size_t)w->stride[0], dsrt_f32_to_f16(0.0f), mem_of(y->buf), y->offset / 2,
                                           (size_t)y->stride[0], &q, NULL),
                              "HGEMM");
    }
#endif
    if (L.act) {
        int64_t nkb = L.K / 128;
        DSRT_TRY(dsrt_ocl_scratch(s, 0, (size_t)(L.M * L.K) * 4, &L.xq));
        DSRT_TRY(dsrt_ocl_scratch(s, 1, (size_t)(L.M * nkb) * 4, &L.xs));
        dsrt_kargs a;
        DSRT_TRY(dsrt_begin(s, DSRT_OCL_K_prep_rows, &a));
        ka_rows(&a, x);
        ka_i64(&a, L.K);
        ka_mem(&a, L.xq);
        ka_mem(&a, L.xs);
        ka_i64(&a, nkb);
        ka_i32(&a, op->p.scale_pow2);
        size_t W = (size_t)(wg_of(s) < 128 ? wg_of(s) : 128), g[2] = {W * (size_t)nkb, (size_t)L.M}, l[2] = {W, 1};
        DSRT_TRY(dsrt_launch(s, DSRT_OCL_K_prep_rows, &a, 2, g, l));
    }
    bool few_rows;
    if (grouped) {
        int64_t G = w->shape[0], slots = G < L.M ? G : L.M;
        if (slots < 1) slots = 1;
        L.offsets = &op->in[2];
        L.batch = slots;
        DSRT_TRY(dsrt_ocl_scratch(s, 2, (size_t)slots * 4, &L.active));
        dsrt_kargs a;
        DSRT_TRY(dsrt_begin(s, DSRT_OCL_K_group_compact, &a));
        ka_tensor(&a, L.offsets);
        ka_i64(&a, L.offsets->stride[0]);
        ka_i64(&a, G);
        ka_i64(&a, L.M);
        ka_mem(&a, L.active);
        ka_i32(&a, slots);
        size_t g[1] = {(size_t)wg_of(s)}, l[1] = {(size_t)wg_of(s)};
        DSRT_TRY(dsrt_launch(s, DSRT_OCL_K_group_compact, &a, 1, g, l));
        /* Rows per active expert decide: decode routes a handful of rows to each. */
        few_rows = L.M <= 16 * slots;
    } else {
        few_rows = L.M <= 16;
    }
    return (few_rows || !s->dev->cfg.tiled) ? lin_gemv(s, &L) : lin_tiled(s, &L);
}

static dsrt_status op_head_linear(dsrt_ocl_stream *s, const dsrt_op *op)
{
    const dsrt_tensor *x = &op->in[0], *w = &op->in[1], *y = &op->out[0];
    int64_t T = x->shape[0], Hh = x->shape[1], K = x->shape[2], N = y->shape[2];
    bool tw = op->p.transpose_w;
    if (T == 0 || Hh == 0 || N == 0) return DSRT_OK;
#ifdef DSRT_HAVE_CLBLAST
    if (s->dev->cfg.clblast && T >= 32 && x->dtype == DSRT_F32 && w->dtype == DSRT_F32 && y->dtype == DSRT_F32) {
        cl_command_queue q = s->q;
        return clblast_status(
            CLBlastSgemmStridedBatched(CLBlastLayoutRowMajor, CLBlastTransposeNo,
                                       tw ? CLBlastTransposeNo : CLBlastTransposeYes, (size_t)T, (size_t)N, (size_t)K,
                                       1.0f, mem_of(x->buf), x->offset / 4, (size_t)x->stride[0], (size_t)x->stride[1],
                                       mem_of(w->buf), w->offset / 4, (size_t)w->stride[1], (size_t)w->stride[0], 0.0f,
                                       mem_of(y->buf), y->offset / 4, (size_t)y->stride[0], (size_t)y->stride[1],
                                       (size_t)Hh, &q, NULL),
            "batched SGEMM");
    }
#endif
    if (tw && (T <= 16 || !s->dev->cfg.tiled)) {
        dsrt_kargs a;
        DSRT_TRY(dsrt_begin(s, DSRT_OCL_K_gemv_cols, &a));
        ka_rows(&a, x);
        ka_i64(&a, x->stride[1]);
        ka_rows(&a, w);
        ka_i64(&a, w->stride[1]);
        ka_rows(&a, y);
        ka_i64(&a, y->stride[1]);
        ka_i64(&a, K);
        ka_i64(&a, N);
        ka_i64(&a, T);
        size_t g[2] = {round_up((size_t)N, 64), (size_t)Hh}, l[2] = {64, 1};
        return dsrt_launch(s, DSRT_OCL_K_gemv_cols, &a, 2, g, l);
    }
    dsrt_lin L;
    memset(&L, 0, sizeof L);
    L.x = opnd_of(x);
    L.w = opnd_of(w);
    L.y = opnd_of(y);
    L.M = T;
    L.K = K;
    L.N = N;
    L.batch = Hh;
    L.xs0 = x->stride[0];
    L.xs_g = x->stride[1];
    L.ws_g = w->stride[0];
    L.ws_n = w->stride[1];
    L.ys0 = y->stride[0];
    L.ys_g = y->stride[1];
    L.transb = tw;
    L.alpha = 1.0f;
    lin_scales(&L, w);
    if (!s->dev->cfg.tiled && !tw) return lin_gemv(s, &L);
    return (!tw && T <= 16) ? lin_gemv(s, &L) : lin_tiled(s, &L);
}

/* ---- attention ---- */

/* Budget for the per-op score matrix [rows][heads][positions]: rows are processed in batches that fit. */
#define DSRT_SCORE_BUDGET ((size_t)256 << 20)

typedef struct {
    cl_mem list, count, S;
    int64_t cap;
} dsrt_attn_scratch;

/* Lists the attended key rows of rows [0, T) (tensors already offset to the batch): DSA rows sort their
 * indices in one work group each; other rows list positions in parallel. */
static dsrt_status attn_positions(dsrt_ocl_stream *s, int mode, const dsrt_tensor *kv_len, const dsrt_tensor *row_seq,
                                  const dsrt_tensor *kv_start, const dsrt_tensor *idx, const dsrt_tensor *bt,
                                  int page, int64_t S, int64_t T, const dsrt_attn_scratch *sc)
{
    dsrt_ocl_kernel_id id = idx->buf ? DSRT_OCL_K_attn_positions : DSRT_OCL_K_attn_slots;
    dsrt_kargs a;
    DSRT_TRY(dsrt_begin(s, id, &a));
    ka_i32(&a, mode);
    ka_tensor(&a, kv_len);
    ka_i64(&a, kv_len->stride[0]);
    ka_tensor(&a, row_seq);
    ka_i64(&a, row_seq->buf ? row_seq->stride[0] : 0);
    ka_tensor(&a, kv_start);
    ka_i64(&a, kv_start->buf ? kv_start->stride[0] : 0);
    int n_pad = 1;
    if (idx->buf) {
        n_pad = pow2_ceil(idx->shape[1]);
        ka_tensor(&a, idx);
        ka_i64(&a, idx->stride[0]);
        ka_i64(&a, idx->shape[1]);
    }
    ka_tensor(&a, bt);
    ka_i64(&a, bt->buf ? bt->stride[0] : 0);
    ka_i64(&a, bt->buf ? bt->stride[1] : 0);
    ka_i64(&a, bt->buf ? bt->shape[0] : 0);
    ka_i64(&a, bt->buf ? bt->shape[1] : 0);
    ka_i32(&a, page);
    ka_i64(&a, S);
    ka_mem(&a, sc->list);
    ka_mem(&a, sc->count);
    ka_i64(&a, sc->cap);
    if (idx->buf) {
        ka_local(&a, (size_t)n_pad * 4);
        ka_i32(&a, n_pad);
        size_t L = (size_t)wg_of(s), g[1] = {L * (size_t)T}, l[1] = {L};
        return dsrt_launch(s, id, &a, 1, g, l);
    }
    size_t g[2] = {round_up((size_t)sc->cap, 64), (size_t)T}, l[2] = {64, 1};
    return dsrt_launch(s, id, &a, 2, g, l);
}

static dsrt_status attn_softmax(dsrt_ocl_stream *s, const dsrt_attn_scratch *sc, int64_t T, int64_t Hh, bool bf16)
{
    dsrt_kargs a;
    DSRT_TRY(dsrt_begin(s, DSRT_OCL_K_attn_softmax, &a));
    ka_mem(&a, sc->S);
    ka_mem(&a, sc->count);
    ka_i64(&a, sc->cap);
    ka_i64(&a, Hh);
    ka_i32(&a, bf16);
    size_t L = (size_t)wg_of(s), g[2] = {L * (size_t)Hh, (size_t)T}, l[2] = {L, 1};
    return dsrt_launch(s, DSRT_OCL_K_attn_softmax, &a, 2, g, l);
}

/* A view of rows [t0, t0+n) of a tensor indexed by query row (dim 0). */
static dsrt_tensor rows_of(const dsrt_tensor *t, int64_t t0, int64_t n)
{
    dsrt_tensor r = *t;
    if (!t->buf) return r;
    r.offset += (size_t)(t0 * t->stride[0]) * dsrt_dtype_size(t->dtype);
    r.shape[0] = n;
    return r;
}

static dsrt_status attn_scratch(dsrt_ocl_stream *s, int64_t T, int64_t Hh, int64_t cap, dsrt_attn_scratch *sc)
{
    sc->cap = cap;
    DSRT_TRY(dsrt_ocl_scratch(s, 0, (size_t)(T * cap) * 4, &sc->list));
    DSRT_TRY(dsrt_ocl_scratch(s, 1, (size_t)T * 4, &sc->count));
    return dsrt_ocl_scratch(s, 2, (size_t)(T * Hh * cap) * 4, &sc->S);
}

static int64_t attn_batch_rows(int64_t T, int64_t Hh, int64_t cap)
{
    int64_t per = Hh * (cap > 0 ? cap : 1) * 4;
    int64_t tb = (int64_t)(DSRT_SCORE_BUDGET / (size_t)per);
    if (tb < 1) tb = 1;
    return tb < T ? tb : T;
}

static dsrt_status op_mla_decode(dsrt_ocl_stream *s, const dsrt_op *op)
{
    const dsrt_tensor *ql = &op->in[0], *qp = &op->in[1], *cache = &op->in[2], *bt = &op->in[3];
    const dsrt_tensor *row_seq = &op->in[4], *kv_len = &op->in[5], *idx = &op->in[6], *o = &op->out[0];
    const dsrt_ocl_device *d = s->dev;
    int64_t T = ql->shape[0], Hh = ql->shape[1], Dc = ql->shape[2], Dr = qp->shape[2];
    bool fp8 = op->p.format == DSRT_CACHE_FP8, bf16 = ql->dtype == DSRT_BF16;
    int page = op->p.page_size;
    int64_t cap = idx->buf ? idx->shape[1] : bt->shape[1] * page;
    if (cap < 1) cap = 1;
    int WG = wg_of(s);
    int64_t CU = d->info->caps.compute_units > 0 ? d->info->caps.compute_units : 1;
    int64_t tb_max = attn_batch_rows(T, Hh, cap);
    for (int64_t t0 = 0; t0 < T; t0 += tb_max) {
        int64_t Tb = T - t0 < tb_max ? T - t0 : tb_max;
        dsrt_tensor qlb = rows_of(ql, t0, Tb), qpb = rows_of(qp, t0, Tb), rsb = rows_of(row_seq, t0, Tb);
        dsrt_tensor klb = rows_of(kv_len, t0, Tb), ib = rows_of(idx, t0, Tb), ob = rows_of(o, t0, Tb);
        dsrt_attn_scratch sc;
        DSRT_TRY(attn_scratch(s, Tb, Hh, cap, &sc));
        dsrt_tensor none;
        memset(&none, 0, sizeof none);
        DSRT_TRY(attn_positions(s, 0, &klb, &rsb, &none, &ib, bt, page, cache->shape[0], Tb, &sc));
        /* scores: the heads of a query row share each staged cache tile (2 heads x 8 positions per work
         * item). Start with 32-position tiles and every head in one group; while that leaves the device
         * under-filled, shrink the tiles, and split the heads only when 8-position tiles still leave
         * compute units idle: every head group stages and decodes the tile again (measured on the H100
         * through NVIDIA's driver: a 16-head group cost as much as all 128 heads, 0.36 ms a launch). */
        int TJ = 32;
        int64_t nh_step = Hh;
        for (;;) {
            int64_t fit = 2 * (int64_t)WG / (TJ / 8); /* heads one work group holds */
            nh_step = nh_step < fit ? nh_step : fit;
            int64_t wgs = (cap + TJ - 1) / TJ * Tb * ((Hh + nh_step - 1) / nh_step);
            if (wgs >= 2 * CU) break;
            if (TJ > 8) TJ /= 2;
            else if (wgs < CU && nh_step >= 32) nh_step = (nh_step + 1) / 2;
            else break;
        }
        for (int64_t h0 = 0; h0 < Hh; h0 += nh_step) {
            int64_t nh = Hh - h0 < nh_step ? Hh - h0 : nh_step;
            int64_t hp = (nh + 1) / 2;
            int items = (int)(hp * (TJ / 8));
            int Lw = pow2_ceil(items);
            if (Lw > WG) Lw = WG;
            if (Lw < 32) Lw = 32;
            dsrt_kargs a;
            DSRT_TRY(dsrt_begin(s, DSRT_OCL_K_mla_decode_scores, &a));
            ka_tensor(&a, &qlb);
            ka_i32(&a, ql->dtype);
            ka_i64(&a, ql->stride[0]);
            ka_i64(&a, ql->stride[1]);
            ka_i64(&a, Dc);
            ka_tensor(&a, &qpb);
            ka_i32(&a, qp->dtype);
            ka_i64(&a, qp->stride[0]);
            ka_i64(&a, qp->stride[1]);
            ka_i64(&a, Dr);
            ka_rows(&a, cache);
            ka_i32(&a, fp8);
            ka_mem(&a, sc.list);
            ka_mem(&a, sc.count);
            ka_i64(&a, cap);
            ka_mem(&a, sc.S);
            ka_i64(&a, Hh);
            ka_i64(&a, h0);
            ka_i64(&a, nh);
            ka_f32(&a, op->p.scale);
            ka_i32(&a, bf16);
            ka_i32(&a, TJ);
            ka_local(&a, (size_t)(2 * hp) * 36 * 4);
            ka_local(&a, (size_t)TJ * 36 * 4);
            ka_local(&a, (size_t)TJ * 4);
            size_t g[2] = {(size_t)((cap + TJ - 1) / TJ) * (size_t)Lw, (size_t)Tb}, l[2] = {(size_t)Lw, 1};
            DSRT_TRY(dsrt_launch(s, DSRT_OCL_K_mla_decode_scores, &a, 2, g, l));
        }
        DSRT_TRY(attn_softmax(s, &sc, Tb, Hh, bf16));
        /* p . c: splits over positions so one query row still fills the device */
        int64_t ndc = (Dc + 63) / 64;
        /* about one wave: more splits only add partial sums to write and add up */
        int64_t nsplit = (CU + ndc * Tb - 1) / (ndc * Tb);
        int64_t max_split = (cap + 31) / 32;
        if (nsplit > max_split) nsplit = max_split;
        if (nsplit < 1) nsplit = 1;
        int64_t split_len = ((cap + nsplit - 1) / nsplit + 31) / 32 * 32;
        nsplit = (cap + split_len - 1) / split_len;
        int64_t hmax = WG / 2; /* 8 heads x 16 dim quads per item */
        for (int64_t h0 = 0; h0 < Hh; h0 += hmax) {
            int64_t nh = Hh - h0 < hmax ? Hh - h0 : hmax;
            int64_t octs = (nh + 7) / 8;
            cl_mem part;
            DSRT_TRY(dsrt_ocl_scratch(s, 3, (size_t)(nsplit * Tb * nh * Dc) * 4, &part));
            int Lw = pow2_ceil(octs * 16);
            if (Lw > WG) Lw = WG;
            if (Lw < 32) Lw = 32;
            dsrt_kargs a;
            DSRT_TRY(dsrt_begin(s, DSRT_OCL_K_mla_decode_pv, &a));
            ka_rows(&a, cache);
            ka_i32(&a, fp8);
            ka_i64(&a, Dc);
            ka_mem(&a, sc.list);
            ka_mem(&a, sc.count);
            ka_i64(&a, cap);
            ka_mem(&a, sc.S);
            ka_i64(&a, Hh);
            ka_i64(&a, h0);
            ka_i64(&a, nh);
            ka_i64(&a, split_len);
            ka_i64(&a, Tb);
            ka_mem(&a, part);
            ka_local(&a, (size_t)32 * 68 * 4);
            ka_local(&a, (size_t)32 * (size_t)(octs * 8 + 4) * 4);
            size_t g[3] = {(size_t)ndc * (size_t)Lw, (size_t)nsplit, (size_t)Tb}, l[3] = {(size_t)Lw, 1, 1};
            DSRT_TRY(dsrt_launch(s, DSRT_OCL_K_mla_decode_pv, &a, 3, g, l));
            DSRT_TRY(dsrt_begin(s, DSRT_OCL_K_mla_decode_reduce, &a));
            ka_mem(&a, part);
            ka_i64(&a, nsplit);
            ka_i64(&a, Tb);
            ka_i64(&a, nh);
            ka_i64(&a, Dc);
            ka_i64(&a, h0);
            ka_tensor(&a, &ob);
            ka_i32(&a, o->dtype);
            ka_i64(&a, o->stride[0]);
            ka_i64(&a, o->stride[1]);
            size_t g2[3] = {round_up((size_t)Dc, 64), (size_t)nh, (size_t)Tb}, l2[3] = {64, 1, 1};
            DSRT_TRY(dsrt_launch(s, DSRT_OCL_K_mla_decode_reduce, &a, 3, g2, l2));
        }
    }
    return DSRT_OK;
}

static dsrt_status lin_tiled(dsrt_ocl_stream *s, const dsrt_lin *L);

/* Expanded prefill without DSA indices: per head, S = q_pe.k_pe^T + q_nope.k_nope^T and O = P.V are
 * tiled GEMMs (keys and values are read once per tile of 64 query rows, not once per row), with a
 * masked softmax between them. Rows and heads go in batches whose score matrix fits the budget. */
static dsrt_status mla_prefill_dense(dsrt_ocl_stream *s, const dsrt_op *op)
{
    const dsrt_tensor *q = &op->in[0], *kn = &op->in[1], *kp = &op->in[2], *v = &op->in[3];
    const dsrt_tensor *kv_start = &op->in[4], *kv_len = &op->in[5], *o = &op->out[0];
    int64_t T = q->shape[0], Hh = q->shape[1], Dn = kn->shape[2], Dr = kp->shape[1], Dv = v->shape[2];
    int64_t L = kn->shape[0];
    bool bf16 = q->dtype == DSRT_BF16;
    size_t qes = dsrt_dtype_size(q->dtype), oes = dsrt_dtype_size(o->dtype);
    int64_t per_row = L * 4, nh = Hh;
    int64_t tb = (int64_t)(DSRT_SCORE_BUDGET / (size_t)(per_row * nh));
    while (tb < 64 && nh > 1) { /* keep GEMM tiles full: fewer heads per batch before fewer rows */
        nh = (nh + 1) / 2;
        tb = (int64_t)(DSRT_SCORE_BUDGET / (size_t)(per_row * nh));
    }
    if (tb < 1) tb = 1;
    if (tb > T) tb = T;
    int WG = wg_of(s);
    for (int64_t h0 = 0; h0 < Hh; h0 += nh) {
        int64_t hb = Hh - h0 < nh ? Hh - h0 : nh;
        for (int64_t t0 = 0; t0 < T; t0 += tb) {
            int64_t Tb = T - t0 < tb ? T - t0 : tb;
            cl_mem S;
            DSRT_TRY(dsrt_ocl_scratch(s, 2, (size_t)(hb * Tb * L) * 4, &S));
            size_t qbase = q->offset + (size_t)(t0 * q->stride[0] + h0 * q->stride[1]) * qes;
            for (int part = 0; part < 2; part++) { /* rope part, then nope part added */
                int64_t K = part ? Dn : Dr;
                if (K == 0) continue;
                dsrt_lin Lm;
                memset(&Lm, 0, sizeof Lm);
                Lm.x = opnd_mem(mem_of(q->buf), qbase + (size_t)(part ? 0 : Dn) * qes, q->dtype);
                Lm.xs0 = q->stride[0];
                Lm.xs_g = q->stride[1];
                if (part) {
                    Lm.w = opnd_of(kn);
                    Lm.w.off += (size_t)(h0 * kn->stride[1]) * dsrt_dtype_size(kn->dtype);
                    Lm.ws_n = kn->stride[0];
                    Lm.ws_g = kn->stride[1];
                } else {
                    Lm.w = opnd_of(kp);
                    Lm.ws_n = kp->stride[0];
                    Lm.ws_g = 0; /* k_pe is shared by the heads */
                }
                Lm.y = opnd_mem(S, 0, DSRT_F32);
                Lm.ys0 = L;
                Lm.ys_g = Tb * L;
                Lm.M = Tb;
                Lm.K = K;
                Lm.N = L;
                Lm.batch = hb;
                Lm.alpha = 1.0f;
                Lm.accum = part && Dr > 0;
                DSRT_TRY(lin_tiled(s, &Lm));
            }
            dsrt_tensor ksb = rows_of(kv_start, t0, Tb), klb = rows_of(kv_len, t0, Tb);
            dsrt_kargs a;
            DSRT_TRY(dsrt_begin(s, DSRT_OCL_K_attn_softmax_dense, &a));
            ka_mem(&a, S);
            ka_i64(&a, L);
            ka_i64(&a, Tb);
            ka_tensor(&a, &ksb);
            ka_i64(&a, kv_start->stride[0]);
            ka_tensor(&a, &klb);
            ka_i64(&a, kv_len->stride[0]);
            ka_f32(&a, op->p.scale);
            ka_i32(&a, bf16);
            size_t g[2] = {(size_t)WG * (size_t)hb, (size_t)Tb}, l[2] = {(size_t)WG, 1};
            DSRT_TRY(dsrt_launch(s, DSRT_OCL_K_attn_softmax_dense, &a, 2, g, l));
            dsrt_lin Lv;
            memset(&Lv, 0, sizeof Lv);
            Lv.x = opnd_mem(S, 0, DSRT_F32);
            Lv.xs0 = L;
            Lv.xs_g = Tb * L;
            Lv.w = opnd_of(v);
            Lv.w.off += (size_t)(h0 * v->stride[1]) * dsrt_dtype_size(v->dtype);
            Lv.ws_n = v->stride[0];
            Lv.ws_g = v->stride[1];
            Lv.transb = true;
            Lv.y = opnd_of(o);
            Lv.y.off += (size_t)(t0 * o->stride[0] + h0 * o->stride[1]) * oes;
            Lv.ys0 = o->stride[0];
            Lv.ys_g = o->stride[1];
            Lv.M = Tb;
            Lv.K = L;
            Lv.N = Dv;
            Lv.batch = hb;
            Lv.alpha = 1.0f;
            DSRT_TRY(lin_tiled(s, &Lv));
        }
    }
    return DSRT_OK;
}

static dsrt_status op_mla_prefill(dsrt_ocl_stream *s, const dsrt_op *op)
{
    if (!op->in[6].buf && s->dev->cfg.tiled && !s->dev->cfg.prefill_lists) return mla_prefill_dense(s, op);
    const dsrt_tensor *q = &op->in[0], *kn = &op->in[1], *kp = &op->in[2], *v = &op->in[3];
    const dsrt_tensor *kv_start = &op->in[4], *kv_len = &op->in[5], *idx = &op->in[6], *o = &op->out[0];
    int64_t T = q->shape[0], Hh = q->shape[1], Dn = kn->shape[2], Dr = kp->shape[1], Dv = v->shape[2];
    int64_t L = kn->shape[0];
    bool bf16 = q->dtype == DSRT_BF16;
    int64_t cap = idx->buf ? idx->shape[1] : L;
    if (cap < 1) cap = 1;
    int WG = wg_of(s);
    int64_t tb_max = attn_batch_rows(T, Hh, cap);
    for (int64_t t0 = 0; t0 < T; t0 += tb_max) {
        int64_t Tb = T - t0 < tb_max ? T - t0 : tb_max;
        dsrt_tensor qb = rows_of(q, t0, Tb), ksb = rows_of(kv_start, t0, Tb), klb = rows_of(kv_len, t0, Tb);
        dsrt_tensor ib = rows_of(idx, t0, Tb), ob = rows_of(o, t0, Tb);
        dsrt_attn_scratch sc;
        DSRT_TRY(attn_scratch(s, Tb, Hh, cap, &sc));
        dsrt_tensor none;
        memset(&none, 0, sizeof none);
        DSRT_TRY(attn_positions(s, 1, &klb, &none, &ksb, &ib, &none, 1, L, Tb, &sc));
        dsrt_kargs a;
        DSRT_TRY(dsrt_begin(s, DSRT_OCL_K_mla_prefill_scores, &a));
        ka_tensor(&a, &qb);
        ka_i32(&a, q->dtype);
        ka_i64(&a, q->stride[0]);
        ka_i64(&a, q->stride[1]);
        ka_rows(&a, kn);
        ka_i64(&a, kn->stride[1]);
        ka_i64(&a, Dn);
        ka_rows(&a, kp);
        ka_i64(&a, Dr);
        ka_mem(&a, sc.list);
        ka_mem(&a, sc.count);
        ka_i64(&a, cap);
        ka_mem(&a, sc.S);
        ka_i64(&a, Hh);
        ka_f32(&a, op->p.scale);
        ka_i32(&a, bf16);
        ka_local(&a, (size_t)(Dn + Dr) * 4);
        size_t g[2] = {(size_t)WG * (size_t)Hh, (size_t)Tb}, l[2] = {(size_t)WG, 1};
        DSRT_TRY(dsrt_launch(s, DSRT_OCL_K_mla_prefill_scores, &a, 2, g, l));
        DSRT_TRY(attn_softmax(s, &sc, Tb, Hh, bf16));
        int Lv = pow2_ceil(Dv);
        if (Lv > WG) Lv = WG;
        DSRT_TRY(dsrt_begin(s, DSRT_OCL_K_mla_prefill_pv, &a));
        ka_rows(&a, v);
        ka_i64(&a, v->stride[1]);
        ka_i64(&a, Dv);
        ka_mem(&a, sc.list);
        ka_mem(&a, sc.count);
        ka_i64(&a, cap);
        ka_mem(&a, sc.S);
        ka_i64(&a, Hh);
        ka_tensor(&a, &ob);
        ka_i32(&a, o->dtype);
        ka_i64(&a, o->stride[0]);
        ka_i64(&a, o->stride[1]);
        size_t g2[2] = {(size_t)Lv * (size_t)Hh, (size_t)Tb}, l2[2] = {(size_t)Lv, 1};
        DSRT_TRY(dsrt_launch(s, DSRT_OCL_K_mla_prefill_pv, &a, 2, g2, l2));
    }
    return DSRT_OK;
}

/* ---- indexer, top-k ---- */

static dsrt_status op_indexer_scores(dsrt_ocl_stream *s, const dsrt_op *op)
{
    const dsrt_tensor *q = &op->in[0], *w = &op->in[1], *kc = &op->in[2], *bt = &op->in[3];
    const dsrt_tensor *row_seq = &op->in[4], *kv_len = &op->in[5], *out = &op->out[0];
    int64_t T = q->shape[0], Hi = q->shape[1], D = q->shape[2], Lout = out->shape[1];
    bool fp8 = op->p.format == DSRT_CACHE_FP8;
    int64_t nb = (D + 127) / 128;
    int WG = wg_of(s);
    dsrt_kargs a;
    DSRT_TRY(dsrt_begin(s, DSRT_OCL_K_indexer_scores, &a));
    ka_rows(&a, q);
    ka_i64(&a, q->stride[1]);
    ka_i64(&a, Hi);
    ka_i64(&a, D);
    ka_scale(&a, q);
    ka_i32(&a, q->scale.buf ? q->scale.dtype : DSRT_F32);
    ka_i64(&a, q->scale.buf ? q->scale.stride[0] : 0);
    ka_i64(&a, q->scale.buf ? q->scale.stride[1] : 0);
    ka_i64(&a, q->scale.buf ? q->scale.stride[2] : 0);
    ka_tensor(&a, w);
    ka_i64(&a, w->stride[0]);
    ka_rows(&a, kc);
    ka_i32(&a, fp8);
    ka_tensor(&a, bt);
    ka_i64(&a, bt->stride[0]);
    ka_i64(&a, bt->stride[1]);
    ka_i64(&a, bt->shape[0]);
    ka_i64(&a, bt->shape[1]);
    ka_i32(&a, op->p.page_size);
    ka_i64(&a, kc->shape[0]);
    ka_tensor(&a, row_seq);
    ka_i64(&a, row_seq->stride[0]);
    ka_tensor(&a, kv_len);
    ka_i64(&a, kv_len->stride[0]);
    ka_tensor(&a, out);
    ka_i64(&a, out->stride[0]);
    ka_i64(&a, Lout);
    ka_f32(&a, op->p.scale);
    ka_local(&a, (size_t)(64 * nb) * 4);
    size_t g[2] = {(size_t)((Lout + 63) / 64) * (size_t)WG, (size_t)T}, l[2] = {(size_t)WG, 1};
    return dsrt_launch(s, DSRT_OCL_K_indexer_scores, &a, 2, g, l);
}

static dsrt_status op_topk(dsrt_ocl_stream *s, const dsrt_op *op)
{
    const dsrt_tensor *sc = &op->in[0], *len = &op->in[1], *out = &op->out[0];
    int64_t T = sc->shape[0];
    int kpad = pow2_ceil(op->p.k);
    dsrt_kargs a;
    DSRT_TRY(dsrt_begin(s, DSRT_OCL_K_topk, &a));
    ka_tensor(&a, sc);
    ka_i64(&a, sc->stride[0]);
    ka_i64(&a, sc->shape[1]);
    ka_tensor(&a, len);
    ka_i64(&a, len->buf ? len->stride[0] : 0);
    ka_i32(&a, len->buf != NULL);
    ka_tensor(&a, out);
    ka_i64(&a, out->stride[0]);
    ka_i32(&a, op->p.k);
    ka_local(&a, (size_t)kpad * 8);
    ka_i32(&a, kpad);
    ka_i32(&a, op->p.by_position);
    size_t L = (size_t)wg_of(s), g[2] = {L, (size_t)T}, l[2] = {L, 1};
    return dsrt_launch(s, DSRT_OCL_K_topk, &a, 2, g, l);
}

/* ---- MoE ---- */

static dsrt_status op_moe_gate(dsrt_ocl_stream *s, const dsrt_op *op)
{
    const dsrt_tensor *lg = &op->in[0], *bias = &op->in[1], *ids = &op->out[0], *wt = &op->out[1];
    int64_t T = lg->shape[0], E = lg->shape[1];
    int G = op->p.n_group;
    dsrt_kargs a;
    DSRT_TRY(dsrt_begin(s, DSRT_OCL_K_moe_gate, &a));
    ka_tensor(&a, lg);
    ka_i64(&a, lg->stride[0]);
    ka_i64(&a, E);
    ka_tensor(&a, bias);
    ka_i64(&a, bias->buf ? bias->stride[0] : 0);
    ka_i32(&a, bias->buf != NULL);
    ka_tensor(&a, ids);
    ka_i64(&a, ids->stride[0]);
    ka_tensor(&a, wt);
    ka_i64(&a, wt->stride[0]);
    ka_i32(&a, op->p.k);
    ka_i32(&a, G);
    ka_i32(&a, op->p.topk_group);
    ka_i32(&a, op->p.score_func == DSRT_SCORE_SOFTMAX);
    ka_i32(&a, op->p.norm_topk);
    ka_f32(&a, op->p.route_scale);
    ka_local(&a, (size_t)E * 4);
    ka_local(&a, (size_t)E * 4);
    ka_local(&a, (size_t)G * 4);
    ka_local(&a, (size_t)G * 4);
    size_t L = (size_t)wg_of(s), g[2] = {L, (size_t)T}, l[2] = {L, 1};
    return dsrt_launch(s, DSRT_OCL_K_moe_gate, &a, 2, g, l);
}

static dsrt_status op_moe_dispatch(dsrt_ocl_stream *s, const dsrt_op *op)
{
    const dsrt_tensor *x = &op->in[0], *ids = &op->in[1], *xp = &op->out[0], *off = &op->out[1];
    const dsrt_tensor *rt = &op->out[2], *sr = &op->out[3];
    int64_t T = ids->shape[0], k = ids->shape[1], H = x->shape[1];
    int G = op->p.expert_count;
    dsrt_kargs a;
    DSRT_TRY(dsrt_begin(s, DSRT_OCL_K_moe_dispatch_index, &a));
    ka_tensor(&a, ids);
    ka_i64(&a, ids->stride[0]);
    ka_i64(&a, ids->stride[1]);
    ka_i64(&a, T);
    ka_i32(&a, k);
    ka_i32(&a, op->p.expert_begin);
    ka_i32(&a, G);
    ka_tensor(&a, off);
    ka_i64(&a, off->stride[0]);
    ka_tensor(&a, rt);
    ka_i64(&a, rt->stride[0]);
    ka_i64(&a, rt->shape[0]);
    ka_tensor(&a, sr);
    ka_i64(&a, sr->stride[0]);
    ka_i64(&a, sr->stride[1]);
    ka_local(&a, (size_t)(G + 1) * 4);
    ka_local(&a, (size_t)G * 4);
    size_t L = (size_t)wg_of(s), g[1] = {L}, l[1] = {L};
    DSRT_TRY(dsrt_launch(s, DSRT_OCL_K_moe_dispatch_index, &a, 1, g, l));
    DSRT_TRY(dsrt_begin(s, DSRT_OCL_K_moe_dispatch_copy, &a));
    ka_rows(&a, x);
    ka_rows(&a, xp);
    ka_tensor(&a, rt);
    ka_i64(&a, rt->stride[0]);
    ka_tensor(&a, off);
    ka_i64(&a, off->stride[0]);
    ka_i32(&a, G);
    ka_i64(&a, H);
    ka_i64(&a, T * k);
    size_t g2[2] = {round_up((size_t)H, 64), (size_t)(T * k)}, l2[2] = {64, 1};
    return dsrt_launch(s, DSRT_OCL_K_moe_dispatch_copy, &a, 2, g2, l2);
}

static dsrt_status op_moe_combine(dsrt_ocl_stream *s, const dsrt_op *op)
{
    const dsrt_tensor *yp = &op->in[0], *sr = &op->in[1], *ids = &op->in[2], *wt = &op->in[3], *sh = &op->in[4];
    const dsrt_tensor *y = &op->out[0];
    int64_t T = sr->shape[0], k = sr->shape[1], H = yp->shape[1];
    dsrt_kargs a;
    DSRT_TRY(dsrt_begin(s, DSRT_OCL_K_moe_combine, &a));
    ka_rows(&a, yp);
    ka_i64(&a, yp->shape[0]);
    ka_tensor(&a, sr);
    ka_i64(&a, sr->stride[0]);
    ka_i64(&a, sr->stride[1]);
    ka_tensor(&a, ids);
    ka_i64(&a, ids->stride[0]);
    ka_i64(&a, ids->stride[1]);
    ka_tensor(&a, wt);
    ka_i64(&a, wt->stride[0]);
    ka_i64(&a, wt->stride[1]);
    ka_tensor(&a, sh);
    ka_i32(&a, sh->buf ? sh->dtype : DSRT_F32);
    ka_i64(&a, sh->buf ? sh->stride[0] : 0);
    ka_i32(&a, sh->buf != NULL);
    ka_rows(&a, y);
    ka_i64(&a, H);
    ka_i32(&a, k);
    ka_local(&a, (size_t)k * 4);
    ka_local(&a, (size_t)k * 4);
    ka_local(&a, (size_t)k * 4);
    size_t L = (size_t)wg_of(s), g[2] = {round_up((size_t)H, L), (size_t)T}, l[2] = {L, 1};
    return dsrt_launch(s, DSRT_OCL_K_moe_combine, &a, 2, g, l);
}

static void ka_sample_common(dsrt_kargs *a, const dsrt_op *op)
{
    const dsrt_tensor *lg = &op->in[0], *u = &op->in[1], *ids = &op->out[0];
    ka_tensor(a, lg);
    ka_i64(a, lg->stride[0]);
    ka_i64(a, lg->shape[1]);
    ka_tensor(a, u);
    ka_i64(a, u->stride[0]);
    ka_tensor(a, ids);
    ka_i64(a, ids->stride[0]);
    ka_f32(a, op->p.temperature);
    ka_i32(a, op->p.top_k);
    ka_f32(a, op->p.top_p);
    ka_f32(a, op->p.min_p);
}

static dsrt_status op_sample(dsrt_ocl_stream *s, const dsrt_op *op)
{
    int64_t B = op->in[0].shape[0], V = op->in[0].shape[1];
    int64_t cap = sort_capacity(s->dev);
    int C = pow2_ceil(V < 1024 ? V : 1024);
    if (C > cap) C = (int)cap;
    cl_mem st, ist;
    DSRT_TRY(dsrt_ocl_scratch(s, 0, (size_t)B * 4 * 8, &st)); /* 4 doubles (or floats) per row */
    DSRT_TRY(dsrt_ocl_scratch(s, 1, (size_t)B * 2 * 8, &ist));
    size_t L = (size_t)wg_of(s), g[2] = {L, (size_t)B}, l[2] = {L, 1};
    dsrt_kargs a;
    DSRT_TRY(dsrt_begin(s, DSRT_OCL_K_sample_prep, &a));
    ka_sample_common(&a, op);
    ka_mem(&a, st);
    ka_mem(&a, ist);
    DSRT_TRY(dsrt_launch(s, DSRT_OCL_K_sample_prep, &a, 2, g, l));
    DSRT_TRY(dsrt_begin(s, DSRT_OCL_K_sample, &a));
    ka_sample_common(&a, op);
    ka_mem(&a, st);
    ka_mem(&a, ist);
    ka_local(&a, (size_t)C * 8);
    ka_i32(&a, C);
    return dsrt_launch(s, DSRT_OCL_K_sample, &a, 2, g, l);
}

dsrt_status dsrt_ocl_enqueue_op(void *sctx, const dsrt_op *op)
{
    dsrt_ocl_stream *s = sctx;
    dsrt_status st;
    switch (op->kind) {
    case DSRT_OP_CONVERT: st = op_convert(s, op); break;
    case DSRT_OP_EMBED: st = op_embed(s, op); break;
    case DSRT_OP_RMS_NORM: st = op_rms_norm(s, op); break;
    case DSRT_OP_LAYER_NORM: st = op_layer_norm(s, op); break;
    case DSRT_OP_ROPE: st = op_rope(s, op); break;
    case DSRT_OP_LINEAR:
    case DSRT_OP_LINEAR_GROUPED: st = op_linear(s, op); break;
    case DSRT_OP_HEAD_LINEAR: st = op_head_linear(s, op); break;
    case DSRT_OP_SWIGLU: st = op_swiglu(s, op); break;
    case DSRT_OP_ADD: st = op_add(s, op); break;
    case DSRT_OP_ACT_QUANT: st = op_act_quant(s, op); break;
    case DSRT_OP_HADAMARD: st = op_hadamard(s, op); break;
    case DSRT_OP_CACHE_WRITE: st = op_cache_write(s, op); break;
    case DSRT_OP_MLA_PREFILL: st = op_mla_prefill(s, op); break;
    case DSRT_OP_MLA_DECODE: st = op_mla_decode(s, op); break;
    case DSRT_OP_INDEXER_SCORES: st = op_indexer_scores(s, op); break;
    case DSRT_OP_TOPK: st = op_topk(s, op); break;
    case DSRT_OP_MOE_GATE: st = op_moe_gate(s, op); break;
    case DSRT_OP_MOE_DISPATCH: st = op_moe_dispatch(s, op); break;
    case DSRT_OP_MOE_COMBINE: st = op_moe_combine(s, op); break;
    case DSRT_OP_SAMPLE: st = op_sample(s, op); break;
    default: return dsrt_error(DSRT_CODE_UNIMPLEMENTED, "opencl: op %d has no implementation", (int)op->kind);
    }
    return dsrt_status_wrap(st, "opencl %s", dsrt_op_name(op->kind));
}
