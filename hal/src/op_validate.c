/* Validation of op values before any backend sees them: dtypes, ranks, shapes, views and parameters.
 * Messages name the op and operand and give expected and found values. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "hal_internal.h"
#include "dsrt/ops.h"

enum {
    M_F32 = 1 << DSRT_F32,
    M_BF16 = 1 << DSRT_BF16,
    M_F16 = 1 << DSRT_F16,
    M_E4M3 = 1 << DSRT_E4M3,
    M_E5M2 = 1 << DSRT_E5M2,
    M_I32 = 1 << DSRT_I32,
    M_I64 = 1 << DSRT_I64,
    M_U8 = 1 << DSRT_U8,
    M_UE8M0 = 1 << DSRT_UE8M0,
    M_FLOAT = M_F32 | M_BF16 | M_F16,
    M_ANYFLOAT = M_FLOAT | M_E4M3 | M_E5M2,
};

typedef struct vctx {
    const dsrt_op *op;
    const dsrt_op_info *info;
} vctx;

static const dsrt_tensor *in_t(const vctx *v, int i) { return &v->op->in[i]; }
static const dsrt_tensor *out_t(const vctx *v, int i) { return &v->op->out[i]; }

static const char *slot_name(const vctx *v, bool out, int i)
{
    const char *n = out ? v->info->out_names[i] : v->info->in_names[i];
    return n ? n : "?";
}

static void mask_names(unsigned mask, char *buf, size_t len)
{
    buf[0] = 0;
    for (int d = 0; d < DSRT_DTYPE_COUNT; d++)
        if (mask & (1u << d)) {
            size_t l = strlen(buf);
            snprintf(buf + l, len - l, "%s%s", l ? "/" : "", dsrt_dtype_name((dsrt_dtype)d));
        }
}

/* One past the last byte of a view; SIZE_MAX (fits no buffer) when the extent overflows. */
static size_t view_end(size_t offset, size_t esize, int ndim, const int64_t *shape, const int64_t *stride)
{
    size_t end;
    return dsrt_view_end(offset, esize, ndim, shape, stride, &end) ? end : SIZE_MAX;
}

/* Checks one operand: presence, dtype, rank, that the view (and its scales) fit the buffer, that the
 * innermost dimension is contiguous, and that outputs are writable. */
static dsrt_status operand(const vctx *v, bool out, int i, unsigned dtypes, int rmin, int rmax)
{
    const dsrt_tensor *t = out ? out_t(v, i) : in_t(v, i);
    const char *opn = v->info->name, *sn = slot_name(v, out, i);
    uint32_t optional = out ? v->info->out_optional : v->info->in_optional;
    if (!t->buf) {
        if (optional & (1u << i)) return DSRT_OK;
        return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "%s: required %s '%s' is missing", opn, out ? "output" : "input", sn);
    }
    if (!dsrt_dtype_valid(t->dtype) || !(dtypes & (1u << t->dtype))) {
        char want[128];
        mask_names(dtypes, want, sizeof want);
        return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "%s: '%s'%s%s has dtype %s, expected %s", opn, sn,
                          t->name ? " " : "", t->name ? t->name : "", dsrt_dtype_name(t->dtype), want);
    }
    if (t->ndim < rmin || t->ndim > rmax)
        return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "%s: '%s' has rank %d, expected %d%s%d", opn, sn, t->ndim, rmin,
                          rmin == rmax ? "" : "..", rmin == rmax ? rmin : rmax);
    for (int d = 0; d < t->ndim; d++)
        if (t->shape[d] < 0 || t->stride[d] < 0)
            return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "%s: '%s' has a negative dimension or stride", opn, sn);
    if (t->shape[t->ndim - 1] > 1 && t->stride[t->ndim - 1] != 1)
        return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "%s: '%s' innermost dimension must be contiguous (stride 1, found %lld)",
                          opn, sn, (long long)t->stride[t->ndim - 1]);
    size_t end = view_end(t->offset, dsrt_dtype_size(t->dtype), t->ndim, t->shape, t->stride);
    if (t->offset > t->buf->size || end > t->buf->size) {
        char d[128];
        return dsrt_error(DSRT_CODE_OUT_OF_RANGE, "%s: '%s' %s at byte %zu reaches byte %zu of a %zu-byte buffer", opn, sn,
                          dsrt_tensor_describe(t, d, sizeof d), t->offset, end, t->buf->size);
    }
    if (out && t->buf->readonly)
        return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "%s: output '%s' is in a read-only buffer", opn, sn);
    if (t->scale.buf) {
        if (t->scale.dtype != DSRT_F32 && t->scale.dtype != DSRT_UE8M0)
            return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "%s: '%s' scales have dtype %s, expected f32 or ue8m0", opn, sn,
                              dsrt_dtype_name(t->scale.dtype));
        if (t->scale.block[0] < 1 || t->scale.block[1] < 1)
            return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "%s: '%s' scale block %dx%d is not positive", opn, sn,
                              t->scale.block[0], t->scale.block[1]);
        int64_t shape[DSRT_MAX_DIMS];
        int64_t r, c;
        dsrt_tensor_scale_grid(t, &r, &c);
        for (int d = 0; d < t->ndim; d++) shape[d] = t->shape[d];
        if (t->ndim >= 2) shape[t->ndim - 2] = r;
        shape[t->ndim - 1] = c;
        size_t send = view_end(t->scale.offset, dsrt_dtype_size(t->scale.dtype), t->ndim, shape, t->scale.stride);
        if (t->scale.offset > t->scale.buf->size || send > t->scale.buf->size)
            return dsrt_error(DSRT_CODE_OUT_OF_RANGE, "%s: '%s' scales reach byte %zu of a %zu-byte buffer", opn, sn, send,
                              t->scale.buf->size);
        if (out && t->scale.buf->readonly)
            return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "%s: output '%s' scales are in a read-only buffer", opn, sn);
    }
    return DSRT_OK;
}

/* Expects dims of an operand: -1 is "any". */
static dsrt_status dims(const vctx *v, bool out, int i, int n, const int64_t *want)
{
    const dsrt_tensor *t = out ? out_t(v, i) : in_t(v, i);
    if (!t->buf) return DSRT_OK;
    bool ok = t->ndim == n;
    for (int d = 0; ok && d < n; d++)
        if (want[d] >= 0 && t->shape[d] != want[d]) ok = false;
    if (ok) return DSRT_OK;
    char found[96], exp[96] = "[";
    dsrt_tensor_describe(t, found, sizeof found);
    for (int d = 0; d < n; d++) {
        size_t l = strlen(exp);
        if (want[d] >= 0) snprintf(exp + l, sizeof exp - l, "%s%lld", d ? "," : "", (long long)want[d]);
        else snprintf(exp + l, sizeof exp - l, "%s*", d ? "," : "");
    }
    strncat(exp, "]", sizeof exp - strlen(exp) - 1);
    return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "%s: '%s' is %s, expected shape %s", v->info->name,
                      slot_name(v, out, i), found, exp);
}

#define D1(a) ((const int64_t[]){(a)})
#define D2(a, b) ((const int64_t[]){(a), (b)})
#define D3(a, b, c) ((const int64_t[]){(a), (b), (c)})

static dsrt_status bad(const vctx *v, const char *fmt, ...) DSRT_PRINTF(2, 3);
static dsrt_status bad(const vctx *v, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "%s: %s", v->info->name, msg);
}

static bool same_shape(const dsrt_tensor *a, const dsrt_tensor *b)
{
    if (a->ndim != b->ndim) return false;
    for (int d = 0; d < a->ndim; d++)
        if (a->shape[d] != b->shape[d]) return false;
    return true;
}

/* FP8 weight operands need their scales; float ones must not claim any. */
static dsrt_status weight_scales(const vctx *v, int i)
{
    const dsrt_tensor *w = in_t(v, i);
    if (w->dtype == DSRT_E4M3 && !w->scale.buf)
        return bad(v, "'%s'%s%s is e4m3 but has no block scales", slot_name(v, false, i), w->name ? " " : "",
                   w->name ? w->name : "");
    if (w->dtype != DSRT_E4M3 && w->scale.buf)
        return bad(v, "'%s'%s%s is %s and must not carry block scales (only e4m3 weights are scaled)",
                   slot_name(v, false, i), w->name ? " " : "", w->name ? w->name : "", dsrt_dtype_name(w->dtype));
    return DSRT_OK;
}

static int64_t fp8_row_bytes(int64_t w1, int64_t w2) { return w1 + 4 * ((w1 + 127) / 128) + 2 * w2; }

static dsrt_status validate_attention_index(const vctx *v, int bt, int rs, int kl, int64_t T)
{
    DSRT_TRY(operand(v, false, bt, M_I32, 2, 2));
    DSRT_TRY(operand(v, false, rs, M_I32, 1, 1));
    DSRT_TRY(operand(v, false, kl, M_I32, 1, 1));
    DSRT_TRY(dims(v, false, rs, 1, D1(T)));
    DSRT_TRY(dims(v, false, kl, 1, D1(T)));
    if (v->op->p.page_size < 1) return bad(v, "page_size %d must be >= 1", v->op->p.page_size);
    return DSRT_OK;
}

static dsrt_status validate(const vctx *v)
{
    const dsrt_op *op = v->op;
    const dsrt_op_params *p = &op->p;
    switch (op->kind) {
    case DSRT_OP_CONVERT: {
        DSRT_TRY(operand(v, false, 0, M_ANYFLOAT | M_I32 | M_I64 | M_U8, 1, 4));
        DSRT_TRY(operand(v, true, 0, M_ANYFLOAT | M_I32 | M_I64 | M_U8, 1, 4));
        const dsrt_tensor *x = in_t(v, 0), *y = out_t(v, 0);
        if (!same_shape(x, y)) return bad(v, "x and y shapes differ");
        bool xi = !dsrt_dtype_is_float(x->dtype), yi = !dsrt_dtype_is_float(y->dtype);
        if ((xi || yi) && x->dtype != y->dtype)
            return bad(v, "integer data converts only to its own dtype (%s to %s)", dsrt_dtype_name(x->dtype),
                       dsrt_dtype_name(y->dtype));
        return DSRT_OK;
    }
    case DSRT_OP_EMBED: {
        DSRT_TRY(operand(v, false, 0, M_FLOAT, 2, 2));
        DSRT_TRY(operand(v, false, 1, M_I32, 1, 1));
        DSRT_TRY(operand(v, true, 0, M_FLOAT, 2, 2));
        return dims(v, true, 0, 2, D2(in_t(v, 1)->shape[0], in_t(v, 0)->shape[1]));
    }
    case DSRT_OP_RMS_NORM:
    case DSRT_OP_LAYER_NORM: {
        bool rms = op->kind == DSRT_OP_RMS_NORM;
        DSRT_TRY(operand(v, false, 0, M_FLOAT, 2, 2));
        DSRT_TRY(operand(v, false, 1, M_FLOAT, 1, 1));
        DSRT_TRY(operand(v, false, 2, M_FLOAT, rms ? 2 : 1, rms ? 2 : 1));
        DSRT_TRY(operand(v, true, 0, M_FLOAT, 2, 2));
        int64_t M = in_t(v, 0)->shape[0], D = in_t(v, 0)->shape[1];
        DSRT_TRY(dims(v, false, 1, 1, D1(D)));
        DSRT_TRY(dims(v, true, 0, 2, D2(M, D)));
        if (rms) {
            bool has_res = in_t(v, 2)->buf != NULL;
            if (has_res != (out_t(v, 1)->buf != NULL))
                return bad(v, "'residual' and 'residual_out' must be given together");
            DSRT_TRY(dims(v, false, 2, 2, D2(M, D)));
            DSRT_TRY(operand(v, true, 1, M_FLOAT, 2, 2));
            DSRT_TRY(dims(v, true, 1, 2, D2(M, D)));
        } else {
            DSRT_TRY(dims(v, false, 2, 1, D1(D)));
        }
        if (!(p->eps >= 0) || !isfinite(p->eps)) return bad(v, "eps %g must be finite and >= 0", (double)p->eps);
        return DSRT_OK;
    }
    case DSRT_OP_ROPE: {
        DSRT_TRY(operand(v, false, 0, M_FLOAT, 2, 3));
        DSRT_TRY(operand(v, false, 1, M_I32, 1, 1));
        DSRT_TRY(operand(v, false, 2, M_F32, 3, 3));
        DSRT_TRY(operand(v, true, 0, M_FLOAT, 2, 3));
        const dsrt_tensor *x = in_t(v, 0);
        int64_t R = x->shape[x->ndim - 1];
        if (R % 2) return bad(v, "rotary width %lld must be even", (long long)R);
        DSRT_TRY(dims(v, false, 1, 1, D1(x->shape[0])));
        DSRT_TRY(dims(v, false, 2, 3, D3(-1, R / 2, 2)));
        if (!same_shape(x, out_t(v, 0))) return bad(v, "x and y shapes differ");
        return DSRT_OK;
    }
    case DSRT_OP_LINEAR:
    case DSRT_OP_LINEAR_GROUPED: {
        bool grouped = op->kind == DSRT_OP_LINEAR_GROUPED;
        DSRT_TRY(operand(v, false, 0, M_FLOAT, 2, 2));
        DSRT_TRY(operand(v, false, 1, M_FLOAT | M_E4M3, grouped ? 3 : 2, grouped ? 3 : 2));
        DSRT_TRY(weight_scales(v, 1));
        DSRT_TRY(operand(v, true, 0, M_FLOAT, 2, 2));
        const dsrt_tensor *x = in_t(v, 0), *w = in_t(v, 1);
        int64_t M = x->shape[0], K = x->shape[1], N = w->shape[w->ndim - 2];
        if (w->shape[w->ndim - 1] != K)
            return bad(v, "x has %lld columns but the weight%s%s has K = %lld", (long long)K, w->name ? " " : "",
                       w->name ? w->name : "", (long long)w->shape[w->ndim - 1]);
        DSRT_TRY(dims(v, true, 0, 2, D2(M, N)));
        if (grouped) {
            DSRT_TRY(operand(v, false, 2, M_I32, 1, 1));
            DSRT_TRY(dims(v, false, 2, 1, D1(w->shape[0] + 1)));
        }
        if (p->act_quant) {
            if (w->dtype != DSRT_E4M3) return bad(v, "act_quant needs an e4m3 weight, found %s", dsrt_dtype_name(w->dtype));
            if (K % 128) return bad(v, "act_quant needs K to be a multiple of 128, found %lld", (long long)K);
            /* Each 1x128 activation block is multiplied by one weight scale: a weight block must not
             * end inside an activation block. */
            if (w->scale.block[1] % 128)
                return bad(v, "act_quant needs weight scale blocks whose width is a multiple of 128, found %dx%d",
                           w->scale.block[0], w->scale.block[1]);
        }
        if (!isfinite(p->alpha)) return bad(v, "alpha is not finite");
        return DSRT_OK;
    }
    case DSRT_OP_HEAD_LINEAR: {
        DSRT_TRY(operand(v, false, 0, M_FLOAT, 3, 3));
        DSRT_TRY(operand(v, false, 1, M_FLOAT, 3, 3));
        DSRT_TRY(operand(v, true, 0, M_FLOAT, 3, 3));
        const dsrt_tensor *x = in_t(v, 0), *w = in_t(v, 1);
        int64_t T = x->shape[0], Hh = x->shape[1], K = x->shape[2];
        int64_t N = p->transpose_w ? w->shape[2] : w->shape[1];
        DSRT_TRY(dims(v, false, 1, 3, p->transpose_w ? D3(Hh, K, -1) : D3(Hh, -1, K)));
        return dims(v, true, 0, 3, D3(T, Hh, N));
    }
    case DSRT_OP_SWIGLU: {
        DSRT_TRY(operand(v, false, 0, M_FLOAT, 2, 2));
        DSRT_TRY(operand(v, false, 1, M_FLOAT, 2, 2));
        DSRT_TRY(operand(v, true, 0, M_FLOAT, 2, 2));
        const dsrt_tensor *g = in_t(v, 0);
        DSRT_TRY(dims(v, false, 1, 2, D2(g->shape[0], g->shape[1])));
        return dims(v, true, 0, 2, D2(g->shape[0], g->shape[1]));
    }
    case DSRT_OP_ADD: {
        DSRT_TRY(operand(v, false, 0, M_FLOAT, 1, 4));
        DSRT_TRY(operand(v, false, 1, M_FLOAT, 1, 4));
        DSRT_TRY(operand(v, true, 0, M_FLOAT, 1, 4));
        if (!same_shape(in_t(v, 0), in_t(v, 1)) || !same_shape(in_t(v, 0), out_t(v, 0)))
            return bad(v, "a, b and y must have the same shape");
        return DSRT_OK;
    }
    case DSRT_OP_ACT_QUANT: {
        DSRT_TRY(operand(v, false, 0, M_FLOAT, 2, 2));
        DSRT_TRY(operand(v, true, 0, M_E4M3, 2, 2));
        const dsrt_tensor *x = in_t(v, 0), *q = out_t(v, 0);
        DSRT_TRY(dims(v, true, 0, 2, D2(x->shape[0], x->shape[1])));
        if (!q->scale.buf) return bad(v, "'q' needs a scale companion to receive the scales");
        if (q->scale.block[0] != 1 || q->scale.block[1] < 1)
            return bad(v, "'q' scale blocks must be 1 x N rows (found %dx%d)", q->scale.block[0], q->scale.block[1]);
        if (q->scale.dtype == DSRT_UE8M0 && !p->scale_pow2) return bad(v, "ue8m0 scales need scale_pow2");
        return DSRT_OK;
    }
    case DSRT_OP_HADAMARD: {
        DSRT_TRY(operand(v, false, 0, M_FLOAT, 2, 2));
        DSRT_TRY(operand(v, true, 0, M_FLOAT, 2, 2));
        int64_t n = in_t(v, 0)->shape[1];
        if (n < 1 || (n & (n - 1))) return bad(v, "width %lld is not a power of two", (long long)n);
        return dims(v, true, 0, 2, D2(in_t(v, 0)->shape[0], n));
    }
    case DSRT_OP_CACHE_WRITE: {
        DSRT_TRY(operand(v, false, 0, M_FLOAT, 2, 2));
        DSRT_TRY(operand(v, false, 1, M_I32, 1, 1));
        DSRT_TRY(operand(v, false, 2, M_FLOAT, 2, 2));
        int64_t T = in_t(v, 0)->shape[0], W1 = in_t(v, 0)->shape[1];
        int64_t W2 = in_t(v, 2)->buf ? in_t(v, 2)->shape[1] : 0;
        DSRT_TRY(dims(v, false, 1, 1, D1(T)));
        DSRT_TRY(dims(v, false, 2, 2, D2(T, -1)));
        if (p->format == DSRT_CACHE_PLAIN) {
            DSRT_TRY(operand(v, true, 0, M_FLOAT, 2, 2));
            return dims(v, true, 0, 2, D2(-1, W1 + W2));
        }
        if (p->format != DSRT_CACHE_FP8) return bad(v, "unknown cache format %d", (int)p->format);
        DSRT_TRY(operand(v, true, 0, M_U8, 2, 2));
        return dims(v, true, 0, 2, D2(-1, fp8_row_bytes(W1, W2)));
    }
    case DSRT_OP_MLA_PREFILL: {
        DSRT_TRY(operand(v, false, 0, M_FLOAT, 3, 3));
        DSRT_TRY(operand(v, false, 1, M_FLOAT, 3, 3));
        DSRT_TRY(operand(v, false, 2, M_FLOAT, 2, 2));
        DSRT_TRY(operand(v, false, 3, M_FLOAT, 3, 3));
        DSRT_TRY(operand(v, false, 4, M_I32, 1, 1));
        DSRT_TRY(operand(v, false, 5, M_I32, 1, 1));
        DSRT_TRY(operand(v, false, 6, M_I32, 2, 2));
        DSRT_TRY(operand(v, true, 0, M_FLOAT, 3, 3));
        const dsrt_tensor *q = in_t(v, 0), *kn = in_t(v, 1), *kp = in_t(v, 2), *vv = in_t(v, 3);
        int64_t T = q->shape[0], Hh = q->shape[1], L = kn->shape[0], Dn = kn->shape[2], Dr = kp->shape[1];
        if (q->shape[2] != Dn + Dr)
            return bad(v, "q head width %lld != k_nope %lld + k_pe %lld", (long long)q->shape[2], (long long)Dn, (long long)Dr);
        DSRT_TRY(dims(v, false, 1, 3, D3(L, Hh, Dn)));
        DSRT_TRY(dims(v, false, 2, 2, D2(L, Dr)));
        DSRT_TRY(dims(v, false, 3, 3, D3(L, Hh, -1)));
        DSRT_TRY(dims(v, false, 4, 1, D1(T)));
        DSRT_TRY(dims(v, false, 5, 1, D1(T)));
        DSRT_TRY(dims(v, false, 6, 2, D2(T, -1)));
        DSRT_TRY(dims(v, true, 0, 3, D3(T, Hh, vv->shape[2])));
        if (!isfinite(p->scale)) return bad(v, "scale is not finite");
        return DSRT_OK;
    }
    case DSRT_OP_MLA_DECODE: {
        DSRT_TRY(operand(v, false, 0, M_FLOAT, 3, 3));
        DSRT_TRY(operand(v, false, 1, M_FLOAT, 3, 3));
        DSRT_TRY(operand(v, false, 6, M_I32, 2, 2));
        DSRT_TRY(operand(v, true, 0, M_FLOAT, 3, 3));
        const dsrt_tensor *ql = in_t(v, 0), *qp = in_t(v, 1);
        int64_t T = ql->shape[0], Hh = ql->shape[1], Dc = ql->shape[2], Dr = qp->shape[2];
        DSRT_TRY(dims(v, false, 1, 3, D3(T, Hh, -1)));
        if (p->format == DSRT_CACHE_PLAIN) {
            DSRT_TRY(operand(v, false, 2, M_FLOAT, 2, 2));
            DSRT_TRY(dims(v, false, 2, 2, D2(-1, Dc + Dr)));
        } else if (p->format == DSRT_CACHE_FP8) {
            DSRT_TRY(operand(v, false, 2, M_U8, 2, 2));
            DSRT_TRY(dims(v, false, 2, 2, D2(-1, fp8_row_bytes(Dc, Dr))));
        } else {
            return bad(v, "unknown cache format %d", (int)p->format);
        }
        DSRT_TRY(validate_attention_index(v, 3, 4, 5, T));
        DSRT_TRY(dims(v, false, 6, 2, D2(T, -1)));
        DSRT_TRY(dims(v, true, 0, 3, D3(T, Hh, Dc)));
        if (!isfinite(p->scale)) return bad(v, "scale is not finite");
        return DSRT_OK;
    }
    case DSRT_OP_INDEXER_SCORES: {
        bool fp8 = p->format == DSRT_CACHE_FP8;
        if (!fp8 && p->format != DSRT_CACHE_PLAIN) return bad(v, "unknown cache format %d", (int)p->format);
        DSRT_TRY(operand(v, false, 0, fp8 ? M_E4M3 : M_FLOAT, 3, 3));
        DSRT_TRY(operand(v, false, 1, M_F32, 2, 2));
        DSRT_TRY(operand(v, false, 2, fp8 ? M_U8 : M_FLOAT, 2, 2));
        DSRT_TRY(operand(v, true, 0, M_F32, 2, 2));
        const dsrt_tensor *q = in_t(v, 0);
        int64_t T = q->shape[0], Hi = q->shape[1], D = q->shape[2];
        if (fp8 && (!q->scale.buf || q->scale.block[0] != 1 || q->scale.block[1] != 128))
            return bad(v, "with the FP8 format 'q' must carry 1x128 block scales");
        DSRT_TRY(dims(v, false, 1, 2, D2(T, Hi)));
        DSRT_TRY(dims(v, false, 2, 2, D2(-1, fp8 ? fp8_row_bytes(D, 0) : D)));
        DSRT_TRY(validate_attention_index(v, 3, 4, 5, T));
        DSRT_TRY(dims(v, true, 0, 2, D2(T, -1)));
        if (!isfinite(p->scale)) return bad(v, "scale is not finite");
        return DSRT_OK;
    }
    case DSRT_OP_TOPK: {
        DSRT_TRY(operand(v, false, 0, M_F32, 2, 2));
        DSRT_TRY(operand(v, false, 1, M_I32, 1, 1));
        DSRT_TRY(operand(v, true, 0, M_I32, 2, 2));
        int64_t T = in_t(v, 0)->shape[0];
        if (p->k < 1) return bad(v, "k = %d must be >= 1", p->k);
        DSRT_TRY(dims(v, false, 1, 1, D1(T)));
        return dims(v, true, 0, 2, D2(T, p->k));
    }
    case DSRT_OP_MOE_GATE: {
        DSRT_TRY(operand(v, false, 0, M_F32, 2, 2));
        DSRT_TRY(operand(v, false, 1, M_F32, 1, 1));
        DSRT_TRY(operand(v, true, 0, M_I32, 2, 2));
        DSRT_TRY(operand(v, true, 1, M_F32, 2, 2));
        int64_t T = in_t(v, 0)->shape[0], E = in_t(v, 0)->shape[1];
        DSRT_TRY(dims(v, false, 1, 1, D1(E)));
        if (p->k < 1 || p->k > E) return bad(v, "k = %d must be in 1..%lld experts", p->k, (long long)E);
        if (p->n_group < 1 || E % p->n_group)
            return bad(v, "n_group = %d must divide the %lld experts", p->n_group, (long long)E);
        if (p->topk_group < 1 || p->topk_group > p->n_group)
            return bad(v, "topk_group = %d must be in 1..n_group (%d)", p->topk_group, p->n_group);
        if ((int64_t)p->k > (int64_t)p->topk_group * (E / p->n_group))
            return bad(v, "k = %d exceeds the %lld experts in the %d kept groups", p->k,
                       (long long)(p->topk_group * (E / p->n_group)), p->topk_group);
        if (p->score_func != DSRT_SCORE_SIGMOID && p->score_func != DSRT_SCORE_SOFTMAX)
            return bad(v, "unknown score function %d", (int)p->score_func);
        if (!isfinite(p->route_scale)) return bad(v, "route_scale is not finite");
        DSRT_TRY(dims(v, true, 0, 2, D2(T, p->k)));
        return dims(v, true, 1, 2, D2(T, p->k));
    }
    case DSRT_OP_MOE_DISPATCH: {
        DSRT_TRY(operand(v, false, 0, M_FLOAT, 2, 2));
        DSRT_TRY(operand(v, false, 1, M_I32, 2, 2));
        DSRT_TRY(operand(v, true, 0, M_FLOAT, 2, 2));
        DSRT_TRY(operand(v, true, 1, M_I32, 1, 1));
        DSRT_TRY(operand(v, true, 2, M_I32, 1, 1));
        DSRT_TRY(operand(v, true, 3, M_I32, 2, 2));
        int64_t T = in_t(v, 0)->shape[0], H = in_t(v, 0)->shape[1], k = in_t(v, 1)->shape[1];
        DSRT_TRY(dims(v, false, 1, 2, D2(T, -1)));
        if (p->expert_begin < 0 || p->expert_count < 1)
            return bad(v, "expert range begin %d count %d is invalid", p->expert_begin, p->expert_count);
        if (out_t(v, 0)->shape[0] < T * k || out_t(v, 2)->shape[0] < T * k)
            return bad(v, "x_perm and row_token need at least T*k = %lld rows", (long long)(T * k));
        DSRT_TRY(dims(v, true, 0, 2, D2(-1, H)));
        DSRT_TRY(dims(v, true, 1, 1, D1(p->expert_count + 1)));
        return dims(v, true, 3, 2, D2(T, k));
    }
    case DSRT_OP_MOE_COMBINE: {
        DSRT_TRY(operand(v, false, 0, M_FLOAT, 2, 2));
        DSRT_TRY(operand(v, false, 1, M_I32, 2, 2));
        DSRT_TRY(operand(v, false, 2, M_I32, 2, 2));
        DSRT_TRY(operand(v, false, 3, M_F32, 2, 2));
        DSRT_TRY(operand(v, false, 4, M_FLOAT, 2, 2));
        DSRT_TRY(operand(v, true, 0, M_FLOAT, 2, 2));
        int64_t T = in_t(v, 1)->shape[0], k = in_t(v, 1)->shape[1], H = in_t(v, 0)->shape[1];
        DSRT_TRY(dims(v, false, 2, 2, D2(T, k)));
        DSRT_TRY(dims(v, false, 3, 2, D2(T, k)));
        DSRT_TRY(dims(v, false, 4, 2, D2(T, H)));
        return dims(v, true, 0, 2, D2(T, H));
    }
    case DSRT_OP_SAMPLE: {
        DSRT_TRY(operand(v, false, 0, M_F32, 2, 2));
        DSRT_TRY(operand(v, false, 1, M_F32, 1, 1));
        DSRT_TRY(operand(v, true, 0, M_I32, 1, 1));
        int64_t B = in_t(v, 0)->shape[0];
        DSRT_TRY(dims(v, false, 1, 1, D1(B)));
        DSRT_TRY(dims(v, true, 0, 1, D1(B)));
        if (in_t(v, 0)->shape[1] < 1) return bad(v, "logits have no columns");
        if (p->top_k < 0) return bad(v, "top_k %d must be >= 0", p->top_k);
        if (!(p->top_p > 0 && p->top_p <= 1)) return bad(v, "top_p %g must be in (0, 1]", (double)p->top_p);
        if (!(p->min_p >= 0 && p->min_p < 1)) return bad(v, "min_p %g must be in [0, 1)", (double)p->min_p);
        if (isnan(p->temperature)) return bad(v, "temperature is NaN");
        return DSRT_OK;
    }
    case DSRT_OP_COUNT: break;
    }
    return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "invalid op kind %d", (int)op->kind);
}

dsrt_status dsrt_op_validate(const dsrt_op *op)
{
    if (!op) return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "op is NULL");
    const dsrt_op_info *info = dsrt_op_get_info(op->kind);
    if (!info) return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "invalid op kind %d", (int)op->kind);
    /* Operands past the op's list must be absent: a stray one is a caller bug. */
    int nin = 0, nout = 0;
    while (info->in_names[nin]) nin++;
    while (info->out_names[nout]) nout++;
    for (int i = nin; i < DSRT_OP_MAX_IN; i++)
        if (op->in[i].buf) return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "%s takes %d inputs; input %d is set", info->name, nin, i);
    for (int i = nout; i < DSRT_OP_MAX_OUT; i++)
        if (op->out[i].buf) return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "%s takes %d outputs; output %d is set", info->name, nout, i);
    vctx v = {op, info};
    return validate(&v);
}

static dsrt_status check_devices(const dsrt_op *op, const dsrt_device *dev)
{
    const dsrt_op_info *info = dsrt_op_get_info(op->kind);
    for (int i = 0; info->in_names[i]; i++) {
        const dsrt_tensor *t = &op->in[i];
        if ((t->buf && t->buf->dev != dev) || (t->buf && t->scale.buf && t->scale.buf->dev != dev))
            return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "%s: input '%s' lives on %s, not on the stream's device %s",
                              info->name, info->in_names[i], t->buf->dev->label, dev->label);
    }
    for (int i = 0; info->out_names[i]; i++) {
        const dsrt_tensor *t = &op->out[i];
        if ((t->buf && t->buf->dev != dev) || (t->buf && t->scale.buf && t->scale.buf->dev != dev))
            return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "%s: output '%s' lives on %s, not on the stream's device %s",
                              info->name, info->out_names[i], t->buf->dev->label, dev->label);
    }
    return DSRT_OK;
}

dsrt_status dsrt_device_supports(dsrt_device *dev, const dsrt_op *op)
{
    if (!dev) return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "device is NULL");
    DSRT_TRY(dsrt_op_validate(op));
    char why[256] = "";
    if (dev->backend->vt->supports_op(dev->dctx, op, why, sizeof why)) return DSRT_OK;
    return dsrt_error(DSRT_CODE_UNIMPLEMENTED, "%s: not supported on %s: %s", dsrt_op_name(op->kind), dev->label,
                      why[0] ? why : "the backend gives no reason");
}

dsrt_status dsrt_enqueue(dsrt_stream *s, const dsrt_op *op)
{
    if (!s) return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "stream is NULL");
    DSRT_TRY(dsrt_device_supports(s->dev, op));
    DSRT_TRY(check_devices(op, s->dev));
    return s->dev->backend->vt->enqueue_op(s->sctx, op);
}
