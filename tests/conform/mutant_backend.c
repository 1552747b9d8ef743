/* Backends for testing `dsrt conform` itself, built on the CPU backend under another name (its vtable,
 * which libdsrt exports for the registry).
 *
 * DSRT_TEST_BACKEND=alt registers "alt": an independent, correct implementation of the GEMMs, norms,
 * SwiGLU, Hadamard and the MoE combine that accumulates in double (another summation order and
 * precision than the reference, as any accelerator has). The suite must pass it: the limits may not
 * be so tight that a correct device fails.
 *
 * Otherwise it registers "mutant", a deliberately broken backend: the suite must catch each planted
 * bug, name it, and still pass what is right. One mutation per op:
 *
 *   rms_norm  a value 1% off (or, with a strided output, a byte written into the row padding)
 *   add       one byte written just past the output view (guard damage)
 *   swiglu    a different result on every run (not deterministic)
 *   convert   the input modified
 *   hadamard  refused by supports_op with a reason (must be a skip with that reason)
 *   topk      equal scores returned in reverse position order (legal: ties may swap; must pass); in
 *             position order (by_position) the result is left as it is
 *
 * Everything else passes through and must pass. tests/CMakeLists.txt runs the suite on it and
 * checks the report (tests/conform/run_conform.cmake). */
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dsrt/act_quant.h"
#include "dsrt/dsrt.h"
#include "dsrt/fp8.h"
#include "dsrt/half.h"
#include "dsrt/ue8m0.h"

const dsrt_backend_vtable *dsrt_cpu_backend_vtable(void);

static dsrt_backend_vtable mutant_vt;
static const dsrt_backend_vtable *cpu;
static atomic_int mutant_runs;

static bool mutant_supports(void *dctx, const dsrt_op *op, char *why, size_t why_len)
{
    if (op->kind == DSRT_OP_HADAMARD) {
        snprintf(why, why_len, "mutant backend: hadamard is refused on purpose");
        return false;
    }
    return cpu->supports_op(dctx, op, why, why_len);
}

static char *host(const dsrt_tensor *t) { return (char *)dsrt_buffer_host_ptr(t->buf) + t->offset; }

static void reverse_ties(const dsrt_op *op)
{
    const dsrt_tensor *sc = &op->in[0], *ix = &op->out[0];
    int64_t T = ix->shape[0], k = ix->shape[1];
    for (int64_t t = 0; t < T; t++) {
        const float *s = (const float *)host(sc) + t * sc->stride[0];
        int32_t *o = (int32_t *)host(ix) + t * ix->stride[0];
        for (int64_t a = 0; a < k;) {
            int64_t b = a + 1;
            while (b < k && o[a] >= 0 && o[b] >= 0 && s[o[b]] == s[o[a]]) b++;
            for (int64_t i = a, j = b - 1; i < j; i++, j--) {
                int32_t x = o[i];
                o[i] = o[j];
                o[j] = x;
            }
            a = b;
        }
    }
}

static dsrt_status mutant_enqueue(void *sctx, const dsrt_op *op)
{
    DSRT_TRY(cpu->enqueue_op(sctx, op));
    DSRT_TRY(cpu->stream_sync(sctx)); /* mutations edit the finished result in host memory */
    const dsrt_tensor *y = &op->out[0];
    int64_t n = dsrt_tensor_numel(y);
    switch (op->kind) {
    case DSRT_OP_RMS_NORM:
        if (n == 0) break;
        if (y->stride[0] > y->shape[1]) {
            host(y)[dsrt_dtype_size(y->dtype) * (size_t)y->shape[1]] ^= 0x5a; /* first padding byte */
        } else if (y->dtype == DSRT_F32) {
            ((float *)host(y))[0] *= 1.01f;
        } else {
            host(y)[1] ^= 0x01; /* bf16/f16 high byte: an exponent step */
        }
        break;
    case DSRT_OP_ADD: host(y)[dsrt_tensor_nbytes(y)] ^= 0xff; break;
    case DSRT_OP_SWIGLU:
        if (n) host(y)[0] ^= (char)(1 + (atomic_fetch_add(&mutant_runs, 1) & 3));
        break;
    case DSRT_OP_CONVERT:
        if (dsrt_tensor_numel(&op->in[0])) host(&op->in[0])[0] ^= 0x10;
        break;
    case DSRT_OP_TOPK:
        if (!op->p.by_position) reverse_ties(op);
        break;
    default: break;
    }
    return DSRT_OK;
}

/* ---- "alt": double-precision kernels on host memory ---- */

static double ld(const dsrt_tensor *t, int64_t i)
{
    const char *b = host(t);
    switch (t->dtype) {
    case DSRT_F32: return ((const float *)b)[i];
    case DSRT_BF16: return dsrt_bf16_to_f32(((const uint16_t *)b)[i]);
    case DSRT_F16: return dsrt_f16_to_f32(((const uint16_t *)b)[i]);
    case DSRT_E4M3: return dsrt_e4m3_values[((const uint8_t *)b)[i]];
    default: return NAN;
    }
}

static void st(const dsrt_tensor *t, int64_t i, double v)
{
    char *b = host(t);
    switch (t->dtype) {
    case DSRT_F32: ((float *)b)[i] = (float)v; break;
    case DSRT_BF16: ((uint16_t *)b)[i] = dsrt_f32_to_bf16((float)v); break;
    case DSRT_F16: ((uint16_t *)b)[i] = dsrt_f32_to_f16((float)v); break;
    default: break;
    }
}

/* Block scale of weight element (g, r, c): rank 2 [N,K] or rank 3 [G,N,K]. */
static double wscale(const dsrt_tensor *w, int64_t g, int64_t r, int64_t c)
{
    if (!w->scale.buf) return 1;
    const dsrt_block_scale *s = &w->scale;
    int nd = w->ndim;
    int64_t i = (r / s->block[0]) * s->stride[nd - 2] + (c / s->block[1]) * s->stride[nd - 1] + (nd == 3 ? g * s->stride[0] : 0);
    const char *b = (const char *)dsrt_buffer_host_ptr(s->buf) + s->offset;
    return s->dtype == DSRT_UE8M0 ? dsrt_ue8m0_to_f32(((const uint8_t *)b)[i]) : ((const float *)b)[i];
}

/* Rows [r0, r1) of y = alpha x W[g]^T, accumulated in double (per 128 block with activation quantization). */
static void alt_gemm(const dsrt_op *op, int64_t g, int64_t r0, int64_t r1)
{
    const dsrt_tensor *x = &op->in[0], *w = &op->in[1], *y = &op->out[0];
    int64_t K = x->shape[1], N = w->shape[w->ndim - 2], wn = w->stride[w->ndim - 2], wg = w->ndim == 3 ? w->stride[0] : 0;
    float *row = malloc(sizeof(float) * (size_t)K);
    uint8_t *q = malloc((size_t)K);
    float *sc = malloc(sizeof(float) * (size_t)(K / 128 + 1));
    for (int64_t m = r0; row && q && sc && m < r1; m++) {
        for (int64_t k = 0; k < K; k++) row[k] = (float)ld(x, m * x->stride[0] + k);
        if (op->p.act_quant) dsrt_act_quant_row(row, K, 128, op->p.scale_pow2, q, sc);
        for (int64_t n = 0; n < N; n++) {
            double acc = 0;
            for (int64_t k0 = 0; k0 < K; k0 += 128) {
                double part = 0;
                for (int64_t k = k0; k < K && k < k0 + 128; k++) {
                    double wv = ld(w, g * wg + n * wn + k);
                    if (op->p.act_quant) part += (double)dsrt_e4m3_values[q[k]] * wv;
                    else part += (double)row[k] * wv * wscale(w, g, n, k);
                }
                acc += op->p.act_quant ? part * sc[k0 / 128] * wscale(w, g, n, k0) : part;
            }
            st(y, m * y->stride[0] + n, op->p.alpha * acc);
        }
    }
    free(row);
    free(q);
    free(sc);
}

static bool alt_run(const dsrt_op *op)
{
    const dsrt_tensor *x = &op->in[0], *y = &op->out[0];
    switch (op->kind) {
    case DSRT_OP_LINEAR: alt_gemm(op, 0, 0, x->shape[0]); return true;
    case DSRT_OP_LINEAR_GROUPED: {
        const int32_t *off = (const int32_t *)host(&op->in[2]);
        for (int64_t g = 0; g < op->in[1].shape[0]; g++) alt_gemm(op, g, off[g], off[g + 1]);
        return true;
    }
    case DSRT_OP_HEAD_LINEAR: {
        const dsrt_tensor *w = &op->in[1];
        int64_t T = x->shape[0], H = x->shape[1], K = x->shape[2], N = y->shape[2];
        for (int64_t t = 0; t < T; t++)
            for (int64_t h = 0; h < H; h++)
                for (int64_t n = 0; n < N; n++) {
                    double acc = 0;
                    for (int64_t k = 0; k < K; k++) {
                        int64_t wi = h * w->stride[0] + (op->p.transpose_w ? k * w->stride[1] + n : n * w->stride[1] + k);
                        acc += ld(x, t * x->stride[0] + h * x->stride[1] + k) * ld(w, wi);
                    }
                    st(y, t * y->stride[0] + h * y->stride[1] + n, acc);
                }
        return true;
    }
    case DSRT_OP_RMS_NORM:
    case DSRT_OP_LAYER_NORM: {
        bool rms = op->kind == DSRT_OP_RMS_NORM;
        const dsrt_tensor *w = &op->in[1], *b = &op->in[2], *ro = &op->out[1];
        int64_t M = x->shape[0], D = x->shape[1];
        double *s = malloc(sizeof(double) * (size_t)(D + 1));
        for (int64_t m = 0; s && m < M; m++) {
            double sum = 0, ss = 0;
            for (int64_t i = 0; i < D; i++) {
                float v = (float)ld(x, m * x->stride[0] + i); /* the residual sum is fp32 (ops.h) */
                if (rms && b->buf) v += (float)ld(b, m * b->stride[0] + i);
                s[i] = v;
                sum += v;
            }
            if (rms && b->buf)
                for (int64_t i = 0; i < D; i++) st(ro, m * ro->stride[0] + i, s[i]);
            double mean = rms ? 0 : sum / (double)D;
            for (int64_t i = 0; i < D; i++) ss += (s[i] - mean) * (s[i] - mean);
            double r = 1 / sqrt(ss / (double)D + op->p.eps);
            for (int64_t i = 0; i < D; i++)
                st(y, m * y->stride[0] + i, rms ? ld(w, i) * s[i] * r : (s[i] - mean) * r * ld(w, i) + ld(b, i));
        }
        free(s);
        return true;
    }
    case DSRT_OP_SWIGLU: {
        const dsrt_tensor *u = &op->in[1];
        for (int64_t m = 0; m < x->shape[0]; m++)
            for (int64_t i = 0; i < x->shape[1]; i++) {
                double g = ld(x, m * x->stride[0] + i);
                st(y, m * y->stride[0] + i, g / (1 + exp(-g)) * ld(u, m * u->stride[0] + i));
            }
        return true;
    }
    case DSRT_OP_HADAMARD: {
        int64_t n = x->shape[1];
        for (int64_t m = 0; m < x->shape[0]; m++)
            for (int64_t i = 0; i < n; i++) {
                double acc = 0;
                for (int64_t j = 0; j < n; j++)
                    acc += (__builtin_popcountll((unsigned long long)(i & j)) & 1 ? -1 : 1) * ld(x, m * x->stride[0] + j);
                st(y, m * y->stride[0] + i, acc / sqrt((double)n));
            }
        return true;
    }
    case DSRT_OP_MOE_COMBINE: {
        const dsrt_tensor *yp = &op->in[0], *sr = &op->in[1], *ids = &op->in[2], *wt = &op->in[3], *sh = &op->in[4];
        int64_t T = sr->shape[0], k = sr->shape[1], H = yp->shape[1], R = yp->shape[0];
        const int32_t *srp = (const int32_t *)host(sr), *idp = (const int32_t *)host(ids);
        for (int64_t t = 0; t < T; t++)
            for (int64_t h = 0; h < H; h++) {
                double acc = 0;
                for (int64_t j = 0; j < k; j++) { /* any order: double makes it exact enough */
                    int32_t r = srp[t * sr->stride[0] + j];
                    (void)idp;
                    if (r >= 0 && r < R) acc += ld(yp, r * yp->stride[0] + h) * ld(wt, t * wt->stride[0] + j);
                }
                if (sh->buf) acc += ld(sh, t * sh->stride[0] + h);
                st(y, t * y->stride[0] + h, acc);
            }
        return true;
    }
    default: return false;
    }
}

static dsrt_status alt_enqueue(void *sctx, const dsrt_op *op)
{
    DSRT_TRY(cpu->stream_sync(sctx)); /* earlier work (uploads) done before the host touches memory */
    if (alt_run(op)) return DSRT_OK;
    return cpu->enqueue_op(sctx, op);
}

__attribute__((visibility("default"))) const dsrt_backend_vtable *dsrt_backend_plugin_entry(uint32_t host_abi_version)
{
    if (host_abi_version != DSRT_BACKEND_ABI_VERSION) return NULL;
    cpu = dsrt_cpu_backend_vtable();
    mutant_vt = *cpu;
    const char *mode = getenv("DSRT_TEST_BACKEND");
    if (mode && strcmp(mode, "alt") == 0) {
        mutant_vt.name = "alt";
        mutant_vt.enqueue_op = alt_enqueue;
        return &mutant_vt;
    }
    mutant_vt.name = "mutant";
    mutant_vt.supports_op = mutant_supports;
    mutant_vt.enqueue_op = mutant_enqueue;
    return &mutant_vt;
}
