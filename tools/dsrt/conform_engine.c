/* dsrt conform: running one case on the target and the reference through the HAL, memory-safety
 * canaries, determinism, and recording the result. */
#include <fnmatch.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "conform.h"

double cf_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

const char *cf_status_name(cf_status s) { return s == CF_PASS ? "pass" : s == CF_FAIL ? "fail" : "skip"; }

/* Per-op NMSE limits (docs/conformance.md explains each class):
 *   0     conversions and copies: fully specified, one rounding, nothing to disagree about;
 *   1e-7  element-wise and row-wise fp32 math (norms, RoPE, SwiGLU, add, Hadamard, combine);
 *   1e-6  FP8 quantization (one e4m3 code off in about a thousand values) and the indexer scores;
 *   5e-4  GEMMs and attention: the summation order is the implementation's choice. */
double cf_default_limit(dsrt_op_kind kind)
{
    switch (kind) {
    case DSRT_OP_CONVERT:
    case DSRT_OP_EMBED:
    case DSRT_OP_CACHE_WRITE:
    case DSRT_OP_MOE_DISPATCH: return 0.0;
    case DSRT_OP_ACT_QUANT:
    case DSRT_OP_INDEXER_SCORES: return 1e-6;
    case DSRT_OP_LINEAR:
    case DSRT_OP_LINEAR_GROUPED:
    case DSRT_OP_HEAD_LINEAR:
    case DSRT_OP_MLA_PREFILL:
    case DSRT_OP_MLA_DECODE: return 5e-4;
    default: return 1e-7;
    }
}

const char *cf_op_check_text(dsrt_op_kind kind)
{
    switch (kind) {
    case DSRT_OP_CONVERT:
    case DSRT_OP_EMBED: return "exact values";
    case DSRT_OP_CACHE_WRITE: return "exact (plain), NMSE 1e-6 dequantized (fp8)";
    case DSRT_OP_MOE_DISPATCH: return "exact";
    case DSRT_OP_ACT_QUANT: return "NMSE 1e-6 dequantized";
    case DSRT_OP_INDEXER_SCORES: return "NMSE 1e-6, -inf in place";
    case DSRT_OP_TOPK: return "same scores selected, ties may swap";
    case DSRT_OP_MOE_GATE: return "same experts up to ties, weights NMSE 1e-7";
    case DSRT_OP_SAMPLE: return "same token, boundary draws excepted";
    case DSRT_OP_LINEAR:
    case DSRT_OP_LINEAR_GROUPED:
    case DSRT_OP_HEAD_LINEAR:
    case DSRT_OP_MLA_PREFILL:
    case DSRT_OP_MLA_DECODE: return "NMSE 5e-4";
    default: return "NMSE 1e-7";
    }
}

static bool cf_match_one(const char *pat, size_t n, const char *op, const char *id)
{
    char p[128];
    if (n >= sizeof p) n = sizeof p - 1;
    memcpy(p, pat, n);
    p[n] = 0;
    return fnmatch(p, op, 0) == 0 || fnmatch(p, id, 0) == 0;
}

/* --ops: comma-separated globs; a case runs when one matches its op name or its id. */
static bool cf_selected(const cf_options *o, const char *op, const char *id)
{
    if (!o->ops || !o->ops[0]) return true;
    const char *s = o->ops;
    while (*s) {
        size_t n = strcspn(s, ",");
        if (n && cf_match_one(s, n, op, id)) return true;
        s += n;
        if (*s == ',') s++;
    }
    return false;
}

static uint64_t cf_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

cf_case *cf_begin(cf_suite *S, dsrt_op_kind kind, bool in_quick, const char *tags, const char *fmt, ...)
{
    if (S->opt->quick && !in_quick) return NULL;
    char variant[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(variant, sizeof variant, fmt, ap);
    va_end(ap);
    char id[200];
    snprintf(id, sizeof id, "%s/%s", dsrt_op_name(kind), variant);
    if (!cf_selected(S->opt, dsrt_op_name(kind), id)) return NULL;
    if (S->opt->list) {
        fprintf(S->log, "%s\n", id);
        return NULL;
    }
    cf_case *c = calloc(1, sizeof *c);
    if (!c) {
        S->oom = true;
        return NULL;
    }
    c->kind = kind;
    snprintf(c->id, sizeof c->id, "%s", id);
    snprintf(c->variant, sizeof c->variant, "%s", variant);
    snprintf(c->tags, sizeof c->tags, "%s", tags ? tags : "");
    c->p = dsrt_op_init(kind).p;
    /* Inputs depend on the seed and the case id only, so --ops and --quick do not change them. */
    c->rng = S->opt->seed ^ cf_hash(id);
    for (int o = 0; o < CF_NOUT; o++) {
        c->out[o].alias = -1;
        c->check[o].limit = -1;
        c->check[o].rows_from = -1;
    }
    return c;
}

/* ---- buffers, images and runs ---- */

static uint8_t cf_canary(size_t i) { return (uint8_t)(0x5Bu + 37u * (unsigned)i + (unsigned)(i >> 8)); }

typedef struct cf_layout {
    int64_t rows, cols, ld;
    size_t esize, payload, size;
} cf_layout;

static cf_layout cf_layout_of(const cf_operand *t)
{
    cf_layout L;
    L.esize = dsrt_dtype_size(t->dtype);
    L.cols = t->shape[t->ndim - 1];
    L.rows = 1;
    for (int d = 0; d < t->ndim - 1; d++) L.rows *= t->shape[d];
    L.ld = L.cols + t->pad;
    L.payload = (L.rows == 0 || L.cols == 0) ? 0 : (size_t)(L.rows * L.ld) * L.esize;
    L.size = CF_GUARD + L.payload + CF_GUARD;
    return L;
}

static void cf_strides(const cf_operand *t, int64_t *stride)
{
    int nd = t->ndim;
    stride[nd - 1] = 1;
    if (nd >= 2) stride[nd - 2] = t->shape[nd - 1] + t->pad;
    for (int d = nd - 3; d >= 0; d--) stride[d] = stride[d + 1] * (t->shape[d + 1] ? t->shape[d + 1] : 1);
}

/* Canaries everywhere, then the elements row by row (padding keeps its canaries). */
static uint8_t *cf_image(const cf_operand *t, const cf_layout *L)
{
    uint8_t *img = malloc(L->size);
    if (!img) return NULL;
    for (size_t i = 0; i < L->size; i++) img[i] = cf_canary(i);
    size_t rb = (size_t)L->cols * L->esize;
    for (int64_t r = 0; r < L->rows && L->payload; r++)
        memcpy(img + CF_GUARD + (size_t)(r * L->ld) * L->esize, t->data + (size_t)r * rb, rb);
    return img;
}

static uint8_t *cf_scale_image(const cf_operand *t, size_t *size)
{
    size_t bytes = (size_t)cf_scale_numel(t) * dsrt_dtype_size(t->sdtype);
    *size = CF_GUARD + bytes + CF_GUARD;
    uint8_t *img = malloc(*size);
    if (!img) return NULL;
    for (size_t i = 0; i < *size; i++) img[i] = cf_canary(i);
    if (bytes) memcpy(img + CF_GUARD, t->sdata, bytes);
    return img;
}

/* One operand buffer (data or scales) on a device: what was written and what came back. */
typedef struct cf_slot {
    dsrt_buffer *buf;
    uint8_t *img, *back;
    size_t size;
} cf_slot;

typedef struct cf_run {
    cf_slot d[CF_NOPER], s[CF_NOPER]; /* inputs 0..7, outputs 8..11 */
    cf_operand outs[CF_NOUT];         /* outputs as read back (logical) */
    char guard[512];                  /* canary damage, "" when intact */
    double ms;
} cf_run;

static void cf_run_free_slots(cf_run *R)
{
    for (int k = 0; k < CF_NOPER; k++) {
        cf_slot *sl[2] = {&R->d[k], &R->s[k]};
        for (int j = 0; j < 2; j++) {
            dsrt_buffer_release(sl[j]->buf);
            free(sl[j]->img);
            free(sl[j]->back);
            memset(sl[j], 0, sizeof *sl[j]);
        }
    }
}

static void cf_run_free(cf_run *R)
{
    cf_run_free_slots(R);
    for (int o = 0; o < CF_NOUT; o++) {
        free(R->outs[o].data);
        free(R->outs[o].sdata);
    }
    memset(R, 0, sizeof *R);
}

static const char *cf_operand_name(dsrt_op_kind kind, int k)
{
    const dsrt_op_info *info = dsrt_op_get_info(kind);
    const char *n = k < CF_NIN ? info->in_names[k] : info->out_names[k - CF_NIN];
    return n ? n : "?";
}

typedef enum { CF_RUN_OK, CF_RUN_SKIP, CF_RUN_FAIL } cf_run_status;

static dsrt_status cf_alloc_slot(dsrt_device *dev, cf_slot *s)
{
    return dsrt_buffer_alloc(dev, s->size, &s->buf);
}

/* Checks that nothing outside the output views changed: guards, padding, inputs, input scales. */
static void cf_check_guards(const cf_case *c, cf_run *R)
{
    char *msg = R->guard;
    size_t cap = sizeof R->guard;
    msg[0] = 0;
    for (int k = 0; k < CF_NOPER; k++) {
        bool is_out = k >= CF_NIN;
        const cf_operand *t = is_out ? &c->out[k - CF_NIN] : &c->in[k];
        if (!t->present || (is_out && t->alias >= 0)) continue;
        /* An input is written only when an output aliases it. */
        bool written = is_out;
        for (int o = 0; !is_out && o < CF_NOUT; o++)
            if (c->out[o].present && c->out[o].alias == k) written = true;
        cf_layout L = cf_layout_of(t);
        const cf_slot *sl = &R->d[k];
        size_t before = 0, after = 0, gaps = 0, inside = 0, first = (size_t)-1;
        for (size_t i = 0; i < CF_GUARD; i++)
            if (sl->back[i] != sl->img[i]) {
                before++;
                if (first == (size_t)-1) first = i;
            }
        for (size_t i = CF_GUARD + L.payload; i < L.size; i++)
            if (sl->back[i] != sl->img[i]) {
                after++;
                if (first == (size_t)-1) first = i;
            }
        if (L.payload) {
            if (!written) {
                if (memcmp(sl->back + CF_GUARD, sl->img + CF_GUARD, L.payload) != 0)
                    for (size_t i = CF_GUARD; i < CF_GUARD + L.payload; i++) inside += sl->back[i] != sl->img[i];
            } else if (t->pad) {
                size_t rb = (size_t)L.cols * L.esize, pb = (size_t)t->pad * L.esize;
                for (int64_t r = 0; r < L.rows; r++) {
                    const size_t o = CF_GUARD + (size_t)(r * L.ld) * L.esize + rb;
                    for (size_t i = 0; i < pb; i++) gaps += sl->back[o + i] != sl->img[o + i];
                }
            }
        }
        const char *name = cf_operand_name(c->kind, k);
        const char *what = is_out ? "output" : "input";
        size_t l = strlen(msg);
        if (before)
            snprintf(msg + l, cap - l, "%s%s '%s': %zu byte%s before the view overwritten", l ? "; " : "", what, name,
                     before, before == 1 ? "" : "s");
        l = strlen(msg);
        if (after)
            snprintf(msg + l, cap - l, "%s%s '%s': %zu byte%s past the end of the view overwritten", l ? "; " : "", what,
                     name, after, after == 1 ? "" : "s");
        l = strlen(msg);
        if (gaps)
            snprintf(msg + l, cap - l, "%soutput '%s': %zu byte%s in the padding between rows of the strided view "
                     "overwritten", l ? "; " : "", name, gaps, gaps == 1 ? "" : "s");
        l = strlen(msg);
        if (inside)
            snprintf(msg + l, cap - l, "%sinput '%s' was modified (%zu byte%s)", l ? "; " : "", name, inside,
                     inside == 1 ? "" : "s");
        if (t->scaled) {
            const cf_slot *ss = &R->s[k];
            size_t bad = 0;
            for (size_t i = 0; i < ss->size; i++) {
                bool guard = i < CF_GUARD || i >= ss->size - CF_GUARD;
                if ((guard || !is_out) && ss->back[i] != ss->img[i]) bad++;
            }
            l = strlen(msg);
            if (bad)
                snprintf(msg + l, cap - l, "%s%s '%s' scales: %zu byte(s) changed outside the scale grid", l ? "; " : "",
                         is_out ? "output" : "input", name, bad);
        }
    }
}

/* Copies output views out of the read-back images into logical operands. */
static bool cf_extract(const cf_case *c, cf_run *R)
{
    for (int o = 0; o < CF_NOUT; o++) {
        const cf_operand *t = &c->out[o];
        if (!t->present) continue;
        int k = t->alias >= 0 ? t->alias : CF_NIN + o;
        const cf_operand *owner = t->alias >= 0 ? &c->in[t->alias] : t;
        cf_operand *d = &R->outs[o];
        *d = *owner;
        d->alias = t->alias;
        cf_layout L = cf_layout_of(owner);
        size_t rb = (size_t)L.cols * L.esize;
        d->data = malloc((size_t)L.rows * rb + 1);
        d->sdata = NULL;
        if (!d->data) return false;
        for (int64_t r = 0; r < L.rows && L.payload; r++)
            memcpy(d->data + (size_t)r * rb, R->d[k].back + CF_GUARD + (size_t)(r * L.ld) * L.esize, rb);
        if (owner->scaled) {
            size_t sb = (size_t)cf_scale_numel(owner) * dsrt_dtype_size(owner->sdtype);
            d->sdata = malloc(sb + 1);
            if (!d->sdata) return false;
            memcpy(d->sdata, R->s[k].back + CF_GUARD, sb);
        }
    }
    return true;
}

/* Runs the case once on `dev`. On a skip or failure `why` says what happened. */
static cf_run_status cf_exec(const cf_case *c, dsrt_device *dev, dsrt_stream *s, cf_run *R, char *why, size_t why_len)
{
    memset(R, 0, sizeof *R);
    dsrt_op op = dsrt_op_init(c->kind);
    op.p = c->p;
    const dsrt_op_info *info = dsrt_op_get_info(c->kind);
    dsrt_status st = DSRT_OK;
    /* Buffers and tensors first: the backend's verdict needs the op value, not its data, so an
     * unsupported op is skipped before any image is built. */
    for (int k = 0; k < CF_NOPER && !st; k++) {
        bool is_out = k >= CF_NIN;
        const cf_operand *t = is_out ? &c->out[k - CF_NIN] : &c->in[k];
        if (!t->present || (is_out && t->alias >= 0)) continue;
        cf_layout L = cf_layout_of(t);
        cf_slot *sl = &R->d[k];
        sl->size = L.size;
        st = cf_alloc_slot(dev, sl);
        if (!st && t->scaled) {
            R->s[k].size = CF_GUARD + (size_t)cf_scale_numel(t) * dsrt_dtype_size(t->sdtype) + CF_GUARD;
            st = cf_alloc_slot(dev, &R->s[k]);
        }
        if (st) break;
        int64_t stride[DSRT_MAX_DIMS];
        cf_strides(t, stride);
        dsrt_tensor *tt = is_out ? &op.out[k - CF_NIN] : &op.in[k];
        st = dsrt_tensor_make_strided(sl->buf, CF_GUARD, t->dtype, t->ndim, t->shape, stride, tt);
        if (!st && t->scaled)
            st = dsrt_tensor_set_scale(tt, R->s[k].buf, CF_GUARD, t->sdtype, t->block[0], t->block[1]);
        tt->name = is_out ? info->out_names[k - CF_NIN] : info->in_names[k];
    }
    if (st) {
        dsrt_code code = dsrt_status_code(st);
        snprintf(why, why_len, "%s: %s", code == DSRT_CODE_RESOURCE_EXHAUSTED ? "out of device memory" : "setting up operands",
                 dsrt_status_message(st));
        dsrt_status_free(st);
        cf_run_free(R);
        return code == DSRT_CODE_RESOURCE_EXHAUSTED ? CF_RUN_SKIP : CF_RUN_FAIL;
    }
    for (int o = 0; o < CF_NOUT; o++)
        if (c->out[o].present && c->out[o].alias >= 0) op.out[o] = op.in[c->out[o].alias];
    /* Capability: the backend decides from kinds, dtypes, shapes and parameters. */
    st = dsrt_device_supports(dev, &op);
    if (st) {
        dsrt_code code = dsrt_status_code(st);
        snprintf(why, why_len, "%s", dsrt_status_message(st));
        dsrt_status_free(st);
        cf_run_free(R);
        if (code == DSRT_CODE_UNIMPLEMENTED) return CF_RUN_SKIP;
        /* The HAL refused the op value itself: a bug in this suite, never the backend's fault. */
        char tmp[512];
        snprintf(tmp, sizeof tmp, "the suite built an op the HAL rejects (%s)", why);
        snprintf(why, why_len, "%s", tmp);
        return CF_RUN_FAIL;
    }
    /* Host images: canaries around the data, and room for what comes back. */
    for (int k = 0; k < CF_NOPER; k++) {
        bool is_out = k >= CF_NIN;
        const cf_operand *t = is_out ? &c->out[k - CF_NIN] : &c->in[k];
        if (!R->d[k].buf) continue;
        cf_layout L = cf_layout_of(t);
        R->d[k].img = cf_image(t, &L);
        R->d[k].back = malloc(L.size);
        bool ok = R->d[k].img && R->d[k].back;
        if (ok && R->s[k].buf) {
            size_t ssize;
            R->s[k].img = cf_scale_image(t, &ssize);
            R->s[k].back = malloc(ssize);
            ok = R->s[k].img && R->s[k].back;
        }
        if (!ok) {
            snprintf(why, why_len, "host out of memory for the images of a %zu-byte operand", L.size);
            cf_run_free(R);
            return CF_RUN_SKIP;
        }
    }
    /* Upload everything, then time the op alone. */
    for (int k = 0; k < CF_NOPER && !st; k++) {
        if (R->d[k].buf) st = dsrt_stream_write(s, R->d[k].buf, 0, R->d[k].img, R->d[k].size);
        if (!st && R->s[k].buf) st = dsrt_stream_write(s, R->s[k].buf, 0, R->s[k].img, R->s[k].size);
    }
    if (!st) st = dsrt_stream_sync(s);
    if (st) {
        snprintf(why, why_len, "uploading inputs: %s", dsrt_status_message(st));
        dsrt_status_free(st);
        cf_run_free(R);
        return CF_RUN_FAIL;
    }
    double t0 = cf_now();
    st = dsrt_enqueue(s, &op);
    dsrt_status sst = dsrt_stream_sync(s);
    R->ms = 1e3 * (cf_now() - t0);
    if (st || sst) {
        snprintf(why, why_len, "%s%s", st && dsrt_status_code(st) == DSRT_CODE_UNIMPLEMENTED
                                           ? "supports_op accepted the op but enqueue refused it: " : "running the op: ",
                 dsrt_status_message(st ? st : sst));
        dsrt_status_free(st);
        dsrt_status_free(sst);
        cf_run_free(R);
        return CF_RUN_FAIL;
    }
    for (int k = 0; k < CF_NOPER && !st; k++) {
        if (R->d[k].buf) st = dsrt_stream_read(s, R->d[k].buf, 0, R->d[k].back, R->d[k].size);
        if (!st && R->s[k].buf) st = dsrt_stream_read(s, R->s[k].buf, 0, R->s[k].back, R->s[k].size);
    }
    if (!st) st = dsrt_stream_sync(s);
    if (st) {
        snprintf(why, why_len, "reading results back: %s", dsrt_status_message(st));
        dsrt_status_free(st);
        cf_run_free(R);
        return CF_RUN_FAIL;
    }
    cf_check_guards(c, R);
    bool ok = cf_extract(c, R);
    cf_run_free_slots(R); /* the device memory and images go; the extracted outputs stay */
    if (!ok) {
        snprintf(why, why_len, "host out of memory reading outputs");
        cf_run_free(R);
        return CF_RUN_SKIP;
    }
    return CF_RUN_OK;
}

/* Rows of output o that are defined (all unless the check names an output holding the count). */
static int64_t cf_defined_rows(const cf_case *c, int o, const cf_operand *ref_outs)
{
    const cf_operand *t = &ref_outs[o];
    int64_t rows = t->ndim >= 1 ? t->shape[0] : 0;
    int src = c->check[o].rows_from;
    if (src >= 0 && ref_outs[src].present && cf_numel(&ref_outs[src]) > 0) {
        int32_t n = cf_get_i32(&ref_outs[src], cf_numel(&ref_outs[src]) - 1);
        if (n >= 0 && n < rows) rows = n;
    }
    return rows;
}

/* Same bytes in every defined element and scale of every output. */
static bool cf_same_bytes(const cf_case *c, const cf_operand *a, const cf_operand *b, const cf_operand *ref_outs,
                          char *where, size_t len)
{
    for (int o = 0; o < CF_NOUT; o++) {
        if (!a[o].present) continue;
        int64_t rows = cf_defined_rows(c, o, ref_outs), all = a[o].shape[0];
        size_t bytes = (size_t)cf_numel(&a[o]) * dsrt_dtype_size(a[o].dtype);
        if (all > 0) bytes = bytes / (size_t)all * (size_t)rows;
        if (bytes && memcmp(a[o].data, b[o].data, bytes) != 0) {
            size_t i = 0;
            while (a[o].data[i] == b[o].data[i]) i++;
            snprintf(where, len, "output '%s' differs between two runs (first at element %zu)",
                     cf_operand_name(c->kind, CF_NIN + o), i / dsrt_dtype_size(a[o].dtype));
            return false;
        }
        if (a[o].scaled) {
            size_t sb = (size_t)cf_scale_numel(&a[o]) * dsrt_dtype_size(a[o].sdtype);
            if (sb && memcmp(a[o].sdata, b[o].sdata, sb) != 0) {
                snprintf(where, len, "output '%s' scales differ between two runs", cf_operand_name(c->kind, CF_NIN + o));
                return false;
            }
        }
    }
    return true;
}

static void cf_describe(const cf_case *c, cf_result *r)
{
    memset(r, 0, sizeof *r);
    snprintf(r->id, sizeof r->id, "%s", c->id);
    snprintf(r->op, sizeof r->op, "%s", dsrt_op_name(c->kind));
    r->kind = (int)c->kind;
    snprintf(r->variant, sizeof r->variant, "%s", c->variant);
    snprintf(r->tags, sizeof r->tags, "%s", c->tags);
    snprintf(r->note, sizeof r->note, "%s", c->note);
    r->p = c->p;
    r->deterministic = -1;
    r->canaries = -1;
    r->target_ms = r->ref_ms = -1;
    r->error = r->limit = NAN;
    for (int k = 0; k < CF_NOPER; k++) {
        bool is_out = k >= CF_NIN;
        const cf_operand *t = is_out ? &c->out[k - CF_NIN] : &c->in[k];
        if (!t->present) continue;
        cf_tensor_desc *d = &r->t[r->ntensors++];
        snprintf(d->name, sizeof d->name, "%s", cf_operand_name(c->kind, k));
        d->output = is_out;
        d->dtype = t->dtype;
        d->ndim = t->ndim;
        memcpy(d->shape, t->shape, sizeof d->shape);
        d->pad = t->pad;
        const cf_operand *owner = (is_out && t->alias >= 0) ? &c->in[t->alias] : t;
        d->scaled = owner->scaled;
        d->sdtype = owner->sdtype;
        d->block[0] = owner->block[0];
        d->block[1] = owner->block[1];
        d->alias = is_out ? t->alias : -1;
    }
}

static void cf_push(cf_suite *S, const cf_result *r)
{
    if (S->nresults == S->capresults) {
        int cap = S->capresults ? 2 * S->capresults : 256;
        cf_result *n = realloc(S->results, sizeof *n * (size_t)cap);
        if (!n) {
            S->oom = true;
            return;
        }
        S->results = n;
        S->capresults = cap;
    }
    S->results[S->nresults++] = *r;
}

static void cf_print(cf_suite *S, const cf_result *r)
{
    bool show = S->opt->verbose || r->status == CF_FAIL;
    if (!show) return;
    if (r->status == CF_PASS)
        fprintf(S->log, "  pass  %-58s %s %.2g <= %.2g  %.2f ms\n", r->id, r->method ? r->method : "", r->error, r->limit,
                r->target_ms);
    else
        fprintf(S->log, "  %s  %s\n        %s\n", cf_status_name(r->status), r->id, r->reason);
}

void cf_record(cf_suite *S, const cf_result *r)
{
    cf_push(S, r);
    cf_print(S, r);
}

static void cf_append(char *buf, size_t len, const char *fmt, ...) DSRT_PRINTF(3, 4);
static void cf_append(char *buf, size_t len, const char *fmt, ...)
{
    size_t l = strlen(buf);
    if (l + 1 >= len) return;
    if (l) {
        snprintf(buf + l, len - l, "; ");
        l = strlen(buf);
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + l, len - l, fmt, ap);
    va_end(ap);
}

static void cf_human_bytes(double b, char *out, size_t len)
{
    const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int i = 0;
    while (b >= 1024 && i < 4) {
        b /= 1024;
        i++;
    }
    snprintf(out, len, "%.*f %s", i ? 1 : 0, b, u[i]);
}

/* Capability and budget checks before anything is allocated. */
static bool cf_precheck(cf_suite *S, const cf_case *c, char *why, size_t len)
{
    const dsrt_device_caps *caps[2] = {&S->tinfo.caps, &S->rinfo.caps};
    const char *who[2] = {S->tinfo.label, S->rinfo.label};
    for (int k = 0; k < CF_NOPER; k++) {
        const cf_operand *t = k < CF_NIN ? &c->in[k] : &c->out[k - CF_NIN];
        if (!t->present || (k >= CF_NIN && t->alias >= 0)) continue;
        cf_layout L = cf_layout_of(t);
        for (int d = 0; d < 2; d++)
            if (caps[d]->max_alloc_bytes && L.size > caps[d]->max_alloc_bytes) {
                char a[32], b[32];
                cf_human_bytes((double)L.size, a, sizeof a);
                cf_human_bytes((double)caps[d]->max_alloc_bytes, b, sizeof b);
                snprintf(why, len, "operand '%s' needs one %s buffer; %s allows at most %s per allocation (capabilities)",
                         cf_operand_name(c->kind, k), a, who[d], b);
                return false;
            }
    }
    double bytes = (double)cf_case_bytes(c);
    double budget = S->opt->budget_mb * 1048576.0;
    if (budget > 0 && bytes > budget) {
        char a[32];
        cf_human_bytes(bytes, a, sizeof a);
        snprintf(why, len, "needs %s of operands, above the %.0f MiB budget (--budget-mb)", a, S->opt->budget_mb);
        return false;
    }
    for (int d = 0; d < 2; d++)
        if (caps[d]->memory_bytes && bytes > 0.8 * (double)caps[d]->memory_bytes) {
            char a[32];
            cf_human_bytes(bytes, a, sizeof a);
            snprintf(why, len, "needs %s, more than 80%% of %s memory (capabilities)", a, who[d]);
            return false;
        }
    return true;
}

static void cf_run_case(cf_suite *S, cf_case *c, cf_result *r)
{
    char why[512] = "";
    if (c->host_oom) {
        r->status = CF_SKIP;
        snprintf(r->reason, sizeof r->reason, "the host could not hold this case's data");
        return;
    }
    if (c->skip[0]) {
        r->status = CF_SKIP;
        snprintf(r->reason, sizeof r->reason, "%s", c->skip);
        return;
    }
    if (!cf_precheck(S, c, why, sizeof why)) {
        r->status = CF_SKIP;
        snprintf(r->reason, sizeof r->reason, "%s", why);
        return;
    }
    /* Target first: an op it does not support is skipped without paying for the reference. */
    cf_run t1, ref, t2;
    cf_run_status st = cf_exec(c, S->target, S->ts, &t1, why, sizeof why);
    if (st != CF_RUN_OK) {
        r->status = st == CF_RUN_SKIP ? CF_SKIP : CF_FAIL;
        snprintf(r->reason, sizeof r->reason, "%s", why);
        return;
    }
    r->target_ms = t1.ms;
    st = cf_exec(c, S->ref, S->rs, &ref, why, sizeof why);
    if (st != CF_RUN_OK) {
        r->status = st == CF_RUN_SKIP ? CF_SKIP : CF_FAIL;
        snprintf(r->reason, sizeof r->reason, "reference %s: %s", S->rinfo.label, why);
        cf_run_free(&t1);
        return;
    }
    r->ref_ms = ref.ms;
    st = cf_exec(c, S->target, S->ts, &t2, why, sizeof why);
    r->status = CF_PASS;
    if (st != CF_RUN_OK) {
        r->status = CF_FAIL;
        cf_append(r->reason, sizeof r->reason, "second run for the determinism check: %s", why);
    } else {
        char where[256];
        r->deterministic = cf_same_bytes(c, t1.outs, t2.outs, ref.outs, where, sizeof where) ? 1 : 0;
        if (!r->deterministic) {
            r->status = CF_FAIL;
            cf_append(r->reason, sizeof r->reason, "not deterministic: %s", where);
        }
    }
    r->canaries = !t1.guard[0] && (st != CF_RUN_OK || !t2.guard[0]);
    if (t1.guard[0]) cf_append(r->reason, sizeof r->reason, "memory safety: %s", t1.guard);
    else if (st == CF_RUN_OK && t2.guard[0]) cf_append(r->reason, sizeof r->reason, "memory safety (second run): %s", t2.guard);
    if (!r->canaries) r->status = CF_FAIL;
    if (ref.guard[0]) {
        r->status = CF_FAIL;
        cf_append(r->reason, sizeof r->reason, "memory safety of the reference %s: %s", S->rinfo.label, ref.guard);
    }
    /* Output comparisons; the deciding error is the one closest to (or furthest past) its limit. */
    double worst = -1;
    for (int o = 0; o < CF_NOUT; o++) {
        if (!c->out[o].present || c->check[o].mode == CF_CMP_NONE) continue;
        int first = r->nchecks;
        r->nchecks += cf_compare_output(c, o, ref.outs, t1.outs, &r->checks[first]);
        for (int j = first; j < r->nchecks; j++) {
            cf_check_result *cr = &r->checks[j];
            double ratio = cr->limit > 0 ? cr->error / cr->limit : (cr->error > 0 ? INFINITY : 0);
            if (!(cr->error == cr->error)) ratio = INFINITY;
            if (!cr->pass) ratio = ratio > 1 ? ratio : INFINITY;
            /* The headline error is the NMSE (or the op's own measure); the element bound shows only
             * when it decides the case. */
            bool headline = j == first || !cr->pass;
            if (headline && ratio > worst) {
                worst = ratio;
                r->error = cr->error;
                r->limit = cr->limit;
                r->method = cr->method;
            }
            if (!cr->pass) {
                r->status = CF_FAIL;
                cf_append(r->reason, sizeof r->reason, "'%s' %s %.3g > limit %.3g%s%s", cr->output, cr->method,
                          cr->error, cr->limit, cr->detail[0] ? ": " : "", cr->detail);
            }
        }
    }
    cf_run_free(&t1);
    cf_run_free(&ref);
    if (st == CF_RUN_OK) cf_run_free(&t2);
}

void cf_finish(cf_suite *S, cf_case *c)
{
    if (!c) return;
    /* Default checks by output dtype. */
    for (int o = 0; o < CF_NOUT; o++) {
        cf_check *k = &c->check[o];
        if (!c->out[o].present) continue;
        const cf_operand *t = c->out[o].alias >= 0 ? &c->in[c->out[o].alias] : &c->out[o];
        if (k->mode == CF_CMP_DEFAULT) k->mode = dsrt_dtype_is_float(t->dtype) ? CF_CMP_NMSE : CF_CMP_EXACT;
        /* Exact, top-k and sampling checks count disagreeing elements or rows: their limit is 0. */
        bool counted = k->mode == CF_CMP_EXACT || k->mode == CF_CMP_TOPK || k->mode == CF_CMP_SAMPLE;
        if (k->limit < 0) k->limit = counted ? 0 : cf_default_limit(c->kind);
    }
    cf_result *r = malloc(sizeof *r);
    if (!r) {
        S->oom = true;
        cf_case_free(c);
        return;
    }
    cf_describe(c, r);
    cf_run_case(S, c, r);
    cf_record(S, r);
    free(r);
    cf_case_free(c);
}

/* ---- summaries ---- */

void cf_counts(const cf_suite *S, int *passed, int *failed, int *skipped)
{
    *passed = *failed = *skipped = 0;
    for (int i = 0; i < S->nresults; i++) {
        cf_status s = S->results[i].status;
        if (s == CF_PASS) (*passed)++;
        else if (s == CF_FAIL) (*failed)++;
        else (*skipped)++;
    }
}

int cf_summarize_ops(const cf_suite *S, cf_op_summary *rows, int cap)
{
    int n = 0;
    for (int k = 0; k <= DSRT_OP_COUNT; k++) {
        int kind = k < DSRT_OP_COUNT ? k : -1; /* op kinds in order, then whole-model cases */
        cf_op_summary s;
        memset(&s, 0, sizeof s);
        snprintf(s.op, sizeof s.op, "%s", kind >= 0 ? dsrt_op_name((dsrt_op_kind)kind) : "model");
        for (int i = 0; i < S->nresults; i++) {
            const cf_result *r = &S->results[i];
            if (r->kind != kind) continue;
            s.cases++;
            if (r->status == CF_PASS) s.passed++;
            else if (r->status == CF_FAIL) s.failed++;
            else s.skipped++;
            if (r->status != CF_SKIP && r->limit == r->limit && r->error == r->error) {
                double ratio = r->limit > 0 ? r->error / r->limit : (r->error > 0 ? INFINITY : 0);
                if (ratio > s.worst_ratio) s.worst_ratio = ratio;
            }
        }
        if (s.cases && n < cap) rows[n++] = s;
    }
    return n;
}

int cf_ops_covered(const cf_suite *S)
{
    int n = 0;
    for (int k = 0; k < DSRT_OP_COUNT; k++)
        for (int i = 0; i < S->nresults; i++)
            if (S->results[i].kind == k && S->results[i].status == CF_PASS) {
                n++;
                break;
            }
    return n;
}
