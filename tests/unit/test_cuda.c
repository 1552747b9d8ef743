/* A GPU backend against the CPU reference: every op of ops.h runs on both devices with the same random
 * inputs, and the outputs are compared (normalized mean squared error: <= 1e-7 for element-wise ops,
 * <= 5e-4 for GEMMs and attention; index outputs and FP8 bytes exactly). Outputs are poisoned first on
 * both devices, so an element one of them forgets to write shows up as a difference. Also covered:
 * transfers through pinned staging, fills, events, graph capture and replay, and the FP8 GEMM engines
 * (cuBLASLt, our tensor-core kernel, the plain-core kernel) one by one.
 *
 * The backend is CUDA by default; `test_cuda --backend hip` runs the same checks on an AMD GPU (the HIP
 * build of the same kernels; engines it lacks, such as the vendor FP8 GEMM, are reported as skipped).
 * Without a device of that backend the test prints why and passes (a skip). Prints a table of the
 * largest error per op at the end (tests/gpu/run.sh shows it). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dsrt/act_quant.h"
#include "dsrt/fp8.h"
#include "dsrt/half.h"
#include "testutil.h"

#define EW 1e-7  /* element-wise limit */
#define MM 5e-4  /* GEMM / attention limit */

static dsrt_device *g_cpu, *g_gpu;
static const char *g_be = "cuda"; /* the backend under test (--backend) */
static char g_dev_name[40];       /* its first device, "cuda:0" */

/* The backend's environment switch DSRT_<BACKEND>_<suffix> (DSRT_CUDA_MLA_SIMT, DSRT_HIP_MLA_SIMT). */
static const char *gpu_env(const char *suffix, char *buf, size_t len)
{
    size_t n = (size_t)snprintf(buf, len, "DSRT_%s_%s", g_be, suffix);
    for (size_t i = 5; i < n && i < len && buf[i] != '_'; i++)
        if (buf[i] >= 'a' && buf[i] <= 'z') buf[i] = (char)(buf[i] - 'a' + 'A');
    return buf;
}
static dsrt_stream *g_cs, *g_gs;
static dsrt_rng g_rng = {0x5eed};

/* ---- per-op results ---- */
typedef struct {
    char op[32];
    double worst;
    double limit;
    int cases;
} result;
static result g_res[64];
static int g_nres;

static void record(const char *op, const char *what, double err, double limit)
{
    printf("  %-16s %-46s err %.3e (limit %.0e)%s\n", op, what, err, limit, err <= limit ? "" : "  FAIL");
    fflush(stdout);
    int i = 0;
    while (i < g_nres && strcmp(g_res[i].op, op)) i++;
    if (i == g_nres && g_nres < 64) {
        snprintf(g_res[i].op, sizeof g_res[i].op, "%s", op);
        g_res[i].limit = limit;
        g_nres++;
    }
    if (i < 64) {
        if (!(err <= g_res[i].worst)) g_res[i].worst = err;
        g_res[i].cases++;
        if (limit > g_res[i].limit) g_res[i].limit = limit;
    }
    ck_assert_msg(err <= limit, "%s %s: error %.3e above %.0e", op, what, err, limit);
}

/* ---- paired tensors: the same view on the CPU and on the GPU ---- */
typedef struct {
    dsrt_tensor c, g;
    size_t bytes, sbytes;
} pt;

static void pt_alloc(pt *t, dsrt_dtype dt, int nd, const int64_t *shape)
{
    memset(t, 0, sizeof *t);
    int64_t n = 1;
    for (int i = 0; i < nd; i++) n *= shape[i];
    t->bytes = (size_t)(n > 0 ? n : 1) * dsrt_dtype_size(dt);
    dsrt_buffer *bc, *bg;
    ck_ok(dsrt_buffer_alloc(g_cpu, t->bytes, &bc));
    ck_ok(dsrt_buffer_alloc(g_gpu, t->bytes, &bg));
    ck_ok(dsrt_tensor_make(bc, 0, dt, nd, shape, &t->c));
    ck_ok(dsrt_tensor_make(bg, 0, dt, nd, shape, &t->g));
}

static void pt_free(pt *t)
{
    if (t->c.buf) dsrt_buffer_release(t->c.buf);
    if (t->g.buf) dsrt_buffer_release(t->g.buf);
    if (t->c.scale.buf) dsrt_buffer_release(t->c.scale.buf);
    if (t->g.scale.buf) dsrt_buffer_release(t->g.scale.buf);
    memset(t, 0, sizeof *t);
}

static void pt_upload(pt *t, const void *host)
{
    ck_ok(dsrt_stream_write(g_cs, t->c.buf, 0, host, t->bytes));
    ck_ok(dsrt_stream_write(g_gs, t->g.buf, 0, host, t->bytes));
    ck_ok(dsrt_stream_sync(g_cs));
    ck_ok(dsrt_stream_sync(g_gs));
}

static void store(void *dst, dsrt_dtype dt, int64_t i, float v)
{
    switch (dt) {
    case DSRT_F32: ((float *)dst)[i] = v; break;
    case DSRT_BF16: ((uint16_t *)dst)[i] = dsrt_f32_to_bf16(v); break;
    case DSRT_F16: ((uint16_t *)dst)[i] = dsrt_f32_to_f16(v); break;
    case DSRT_E4M3: ((uint8_t *)dst)[i] = dsrt_f32_to_e4m3(v); break;
    case DSRT_I32: ((int32_t *)dst)[i] = (int32_t)v; break;
    case DSRT_U8: ((uint8_t *)dst)[i] = (uint8_t)v; break;
    default: break;
    }
}

static float load(const void *src, dsrt_dtype dt, int64_t i)
{
    switch (dt) {
    case DSRT_F32: return ((const float *)src)[i];
    case DSRT_BF16: return dsrt_bf16_to_f32(((const uint16_t *)src)[i]);
    case DSRT_F16: return dsrt_f16_to_f32(((const uint16_t *)src)[i]);
    case DSRT_E4M3: return dsrt_e4m3_values[((const uint8_t *)src)[i]];
    case DSRT_I32: return (float)((const int32_t *)src)[i];
    case DSRT_U8: return (float)((const uint8_t *)src)[i];
    default: return NAN;
    }
}

/* Random normal values times `scale`. */
static void pt_rand(pt *t, dsrt_dtype dt, int nd, const int64_t *shape, float scale)
{
    pt_alloc(t, dt, nd, shape);
    int64_t n = (int64_t)(t->bytes / dsrt_dtype_size(dt));
    void *h = malloc(t->bytes);
    for (int64_t i = 0; i < n; i++) store(h, dt, i, dsrt_rng_normal(&g_rng) * scale);
    pt_upload(t, h);
    free(h);
}

static void pt_from_i32(pt *t, int nd, const int64_t *shape, const int32_t *v)
{
    pt_alloc(t, DSRT_I32, nd, shape);
    pt_upload(t, v);
}

static void pt_from_f32(pt *t, int nd, const int64_t *shape, const float *v)
{
    pt_alloc(t, DSRT_F32, nd, shape);
    pt_upload(t, v);
}

/* Attaches block scales to a rank 2/3 tensor: random powers of two (UE8M0 or f32), or any positive
 * f32 when !pow2. */
static void pt_scales(pt *t, dsrt_dtype sdt, int br, int bc, bool pow2, int lo, int hi)
{
    const dsrt_tensor *x = &t->c;
    int64_t n = 1;
    for (int d = 0; d < x->ndim - 2; d++) n *= x->shape[d];
    int64_t r = x->ndim >= 2 ? (x->shape[x->ndim - 2] + br - 1) / br : 1, c = (x->shape[x->ndim - 1] + bc - 1) / bc;
    n *= r * c;
    t->sbytes = (size_t)n * dsrt_dtype_size(sdt);
    dsrt_buffer *sc, *sg;
    ck_ok(dsrt_buffer_alloc(g_cpu, t->sbytes, &sc));
    ck_ok(dsrt_buffer_alloc(g_gpu, t->sbytes, &sg));
    ck_ok(dsrt_tensor_set_scale(&t->c, sc, 0, sdt, br, bc));
    ck_ok(dsrt_tensor_set_scale(&t->g, sg, 0, sdt, br, bc));
    void *h = malloc(t->sbytes);
    for (int64_t i = 0; i < n; i++) {
        int e = lo + (int)(dsrt_rng_next(&g_rng) % (uint64_t)(hi - lo + 1));
        if (sdt == DSRT_UE8M0) ((uint8_t *)h)[i] = (uint8_t)(e + 127);
        else ((float *)h)[i] = pow2 ? ldexpf(1.0f, e) : ldexpf(1.0f + dsrt_rng_uniform(&g_rng), e);
    }
    ck_ok(dsrt_stream_write(g_cs, sc, 0, h, t->sbytes));
    ck_ok(dsrt_stream_write(g_gs, sg, 0, h, t->sbytes));
    ck_ok(dsrt_stream_sync(g_cs));
    ck_ok(dsrt_stream_sync(g_gs));
    free(h);
}

/* e4m3 weights with block scales: codes of normal values (no NaN code), random pow2 scales. */
static void pt_fp8_weight(pt *t, int nd, const int64_t *shape, dsrt_dtype sdt)
{
    pt_alloc(t, DSRT_E4M3, nd, shape);
    int64_t n = (int64_t)t->bytes;
    uint8_t *h = malloc(t->bytes);
    for (int64_t i = 0; i < n; i++) h[i] = dsrt_f32_to_e4m3(dsrt_rng_normal(&g_rng) * 24.0f);
    pt_upload(t, h);
    free(h);
    pt_scales(t, sdt, 128, 128, true, -12, -7);
}

/* Fills an output with a poison pattern on both devices. */
static void pt_poison(pt *t, uint8_t b)
{
    ck_ok(dsrt_stream_fill(g_cs, t->c.buf, 0, t->bytes, &b, 1));
    ck_ok(dsrt_stream_fill(g_gs, t->g.buf, 0, t->bytes, &b, 1));
    if (t->c.scale.buf) {
        ck_ok(dsrt_stream_fill(g_cs, t->c.scale.buf, 0, t->sbytes, &b, 1));
        ck_ok(dsrt_stream_fill(g_gs, t->g.scale.buf, 0, t->sbytes, &b, 1));
    }
}

static void pt_out(pt *t, dsrt_dtype dt, int nd, const int64_t *shape)
{
    pt_alloc(t, dt, nd, shape);
    pt_poison(t, dt == DSRT_I32 ? 0x7f : 0xff);
}

static void *download(const dsrt_tensor *t, dsrt_stream *s, size_t bytes)
{
    void *h = malloc(bytes);
    ck_ok(dsrt_stream_read(s, t->buf, 0, h, bytes));
    ck_ok(dsrt_stream_sync(s));
    return h;
}

/* nmse of the GPU output against the CPU output (NaN at the same place on both counts as equal). */
static double pt_nmse(const pt *t)
{
    void *hc = download(&t->c, g_cs, t->bytes), *hg = download(&t->g, g_gs, t->bytes);
    int64_t n = (int64_t)(t->bytes / dsrt_dtype_size(t->c.dtype));
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        double a = load(hg, t->c.dtype, i), b = load(hc, t->c.dtype, i);
        if (isnan(a) && isnan(b)) continue;
        if (isinf(a) && isinf(b) && (a > 0) == (b > 0)) continue;
        if (!isfinite(a) || !isfinite(b)) {
            num = INFINITY;
            continue;
        }
        num += (a - b) * (a - b);
        den += b * b;
    }
    free(hc);
    free(hg);
    return den > 0 ? num / den : num;
}

/* Exact comparison of bytes (indices, FP8 codes, caches): fraction of differing bytes. */
static double bytes_diff(const dsrt_buffer *bc, const dsrt_buffer *bg, size_t bytes)
{
    uint8_t *hc = malloc(bytes), *hg = malloc(bytes);
    ck_ok(dsrt_stream_read(g_cs, bc, 0, hc, bytes));
    ck_ok(dsrt_stream_read(g_gs, bg, 0, hg, bytes));
    ck_ok(dsrt_stream_sync(g_cs));
    ck_ok(dsrt_stream_sync(g_gs));
    size_t bad = 0;
    for (size_t i = 0; i < bytes; i++) bad += hc[i] != hg[i];
    free(hc);
    free(hg);
    return (double)bad / (double)(bytes ? bytes : 1);
}

static double pt_exact(const pt *t)
{
    double d = bytes_diff(t->c.buf, t->g.buf, t->bytes);
    if (t->c.scale.buf) d += bytes_diff(t->c.scale.buf, t->g.scale.buf, t->sbytes);
    return d;
}

/* Runs an op on both devices: `op` names pt operands through in[] / out[] pointers. */
typedef struct {
    dsrt_op op;
    pt *in[DSRT_OP_MAX_IN];
    pt *out[DSRT_OP_MAX_OUT];
} pop;

static pop pop_init(dsrt_op_kind k)
{
    pop p;
    memset(&p, 0, sizeof p);
    p.op = dsrt_op_init(k);
    return p;
}

static dsrt_status run_on(const pop *p, bool gpu, dsrt_device *dev, dsrt_stream *s)
{
    dsrt_op op = p->op;
    for (int i = 0; i < DSRT_OP_MAX_IN; i++) op.in[i] = p->in[i] ? (gpu ? p->in[i]->g : p->in[i]->c) : (dsrt_tensor){0};
    for (int i = 0; i < DSRT_OP_MAX_OUT; i++)
        op.out[i] = p->out[i] ? (gpu ? p->out[i]->g : p->out[i]->c) : (dsrt_tensor){0};
    (void)dev;
    DSRT_TRY(dsrt_enqueue(s, &op));
    return dsrt_stream_sync(s);
}

static void run2(const pop *p)
{
    ck_ok(run_on(p, false, g_cpu, g_cs));
    ck_ok(run_on(p, true, g_gpu, g_gs));
}

static void free_all(pt *list, int n)
{
    for (int i = 0; i < n; i++) pt_free(&list[i]);
}

#define SH(...) ((const int64_t[]){__VA_ARGS__})

/* ---- element-wise and norms ---- */

START_TEST(t_convert)
{
    pt x, y, w, wy, iy, ix;
    pt_rand(&x, DSRT_F32, 2, SH(37, 300), 3.0f);
    pt_out(&y, DSRT_BF16, 2, SH(37, 300));
    pop p = pop_init(DSRT_OP_CONVERT);
    p.in[0] = &x;
    p.out[0] = &y;
    run2(&p);
    record("convert", "f32[37,300] -> bf16", pt_nmse(&y), EW);
    pt_fp8_weight(&w, 2, SH(256, 384), DSRT_UE8M0);
    pt_out(&wy, DSRT_F32, 2, SH(256, 384));
    p.in[0] = &w;
    p.out[0] = &wy;
    run2(&p);
    record("convert", "e4m3[256,384] ue8m0 128x128 -> f32", pt_nmse(&wy), EW);
    int32_t iv[40];
    for (int i = 0; i < 40; i++) iv[i] = (int32_t)(dsrt_rng_next(&g_rng) & 0xffff) - 30000;
    pt_from_i32(&ix, 2, SH(4, 10), iv);
    pt_out(&iy, DSRT_I32, 2, SH(4, 10));
    p.in[0] = &ix;
    p.out[0] = &iy;
    run2(&p);
    record("convert", "i32 copy", pt_exact(&iy), 0);
    pt all[] = {x, y, w, wy, iy, ix};
    free_all(all, 6);
}
END_TEST

START_TEST(t_embed)
{
    pt tab, ids, y;
    pt_rand(&tab, DSRT_BF16, 2, SH(1000, 256), 1.0f);
    int32_t id[17];
    for (int i = 0; i < 17; i++) id[i] = (int32_t)(dsrt_rng_next(&g_rng) % 1000);
    id[3] = -1;
    id[9] = 1000;
    pt_from_i32(&ids, 1, SH(17), id);
    pt_out(&y, DSRT_BF16, 2, SH(17, 256));
    pop p = pop_init(DSRT_OP_EMBED);
    p.in[0] = &tab;
    p.in[1] = &ids;
    p.out[0] = &y;
    run2(&p);
    record("embed", "bf16[1000,256], 17 ids incl. invalid", pt_nmse(&y), EW);
    pt all[] = {tab, ids, y};
    free_all(all, 3);
}
END_TEST

START_TEST(t_norms)
{
    pt x, w, r, y, ro, b, y2;
    pt_rand(&x, DSRT_BF16, 2, SH(7, 7168), 2.0f);
    pt_rand(&w, DSRT_BF16, 1, SH(7168), 1.0f);
    pt_rand(&r, DSRT_BF16, 2, SH(7, 7168), 4.0f);
    pt_out(&y, DSRT_BF16, 2, SH(7, 7168));
    pt_out(&ro, DSRT_BF16, 2, SH(7, 7168));
    pop p = pop_init(DSRT_OP_RMS_NORM);
    p.in[0] = &x;
    p.in[1] = &w;
    p.in[2] = &r;
    p.out[0] = &y;
    p.out[1] = &ro;
    p.op.p.eps = 1e-6f;
    run2(&p);
    record("rms_norm", "bf16[7,7168] + residual: y", pt_nmse(&y), EW);
    record("rms_norm", "bf16[7,7168] + residual: residual_out", pt_nmse(&ro), EW);
    /* a decode row with f32 gains and no residual (the 8-wide form), then f32 rows of 1000 with a
     * residual (the generic form) */
    pt x1, w1, y1, x3, w3, r3, y3, ro3;
    pt_rand(&x1, DSRT_BF16, 2, SH(1, 1536), 2.0f);
    pt_rand(&w1, DSRT_F32, 1, SH(1536), 1.0f);
    pt_out(&y1, DSRT_BF16, 2, SH(1, 1536));
    pop p1 = pop_init(DSRT_OP_RMS_NORM);
    p1.in[0] = &x1;
    p1.in[1] = &w1;
    p1.out[0] = &y1;
    p1.op.p.eps = 1e-6f;
    run2(&p1);
    record("rms_norm", "bf16[1,1536], f32 gains", pt_nmse(&y1), EW);
    pt_rand(&x3, DSRT_F32, 2, SH(3, 1000), 2.0f);
    pt_rand(&w3, DSRT_BF16, 1, SH(1000), 1.0f);
    pt_rand(&r3, DSRT_F32, 2, SH(3, 1000), 1.0f);
    pt_out(&y3, DSRT_F32, 2, SH(3, 1000));
    pt_out(&ro3, DSRT_F32, 2, SH(3, 1000));
    pop p3 = pop_init(DSRT_OP_RMS_NORM);
    p3.in[0] = &x3;
    p3.in[1] = &w3;
    p3.in[2] = &r3;
    p3.out[0] = &y3;
    p3.out[1] = &ro3;
    p3.op.p.eps = 1e-6f;
    run2(&p3);
    record("rms_norm", "f32[3,1000] + residual: y", pt_nmse(&y3), EW);
    record("rms_norm", "f32[3,1000] + residual: residual_out", pt_nmse(&ro3), EW);
    pt all1[] = {x1, w1, y1, x3, w3, r3, y3, ro3};
    free_all(all1, 8);
    pt_rand(&b, DSRT_F32, 1, SH(128), 1.0f);
    pt_out(&y2, DSRT_BF16, 2, SH(7, 128));
    pt xs, ws;
    pt_rand(&xs, DSRT_BF16, 2, SH(7, 128), 3.0f);
    pt_rand(&ws, DSRT_F32, 1, SH(128), 1.0f);
    pop l = pop_init(DSRT_OP_LAYER_NORM);
    l.in[0] = &xs;
    l.in[1] = &ws;
    l.in[2] = &b;
    l.out[0] = &y2;
    l.op.p.eps = 1e-6f;
    run2(&l);
    record("layer_norm", "bf16[7,128] with bias", pt_nmse(&y2), EW);
    pt all[] = {x, w, r, y, ro, b, y2, xs, ws};
    free_all(all, 9);
}
END_TEST

START_TEST(t_rope)
{
    int P = 100;
    float *cs = malloc(sizeof(float) * (size_t)P * 32 * 2);
    for (int p = 0; p < P; p++)
        for (int i = 0; i < 32; i++) {
            float f = (float)p * powf(10000.0f, -(float)i / 32.0f);
            cs[(p * 32 + i) * 2] = cosf(f);
            cs[(p * 32 + i) * 2 + 1] = sinf(f);
        }
    pt tab, pos, x, y, x2, y2;
    pt_from_f32(&tab, 3, SH(P, 32, 2), cs);
    free(cs);
    int32_t pv[5] = {0, 7, 99, -1, 150};
    pt_from_i32(&pos, 1, SH(5), pv);
    pt_rand(&x, DSRT_BF16, 3, SH(5, 16, 64), 1.0f);
    pt_out(&y, DSRT_BF16, 3, SH(5, 16, 64));
    pop p = pop_init(DSRT_OP_ROPE);
    p.in[0] = &x;
    p.in[1] = &pos;
    p.in[2] = &tab;
    p.out[0] = &y;
    p.op.p.interleaved = true;
    run2(&p);
    record("rope", "interleaved bf16[5,16,64]", pt_nmse(&y), EW);
    pt_rand(&x2, DSRT_F32, 2, SH(5, 64), 1.0f);
    y2 = x2; /* in place */
    p.in[0] = &x2;
    p.out[0] = &y2;
    p.op.p.interleaved = false;
    run2(&p);
    record("rope", "half-split f32[5,64] in place", pt_nmse(&x2), EW);
    pt all[] = {tab, pos, x, y, x2};
    free_all(all, 5);
}
END_TEST

START_TEST(t_swiglu_add)
{
    pt g, u, y, a, b, s;
    pt_rand(&g, DSRT_BF16, 2, SH(9, 2048), 2.0f);
    pt_rand(&u, DSRT_BF16, 2, SH(9, 2048), 1.0f);
    pt_out(&y, DSRT_BF16, 2, SH(9, 2048));
    pop p = pop_init(DSRT_OP_SWIGLU);
    p.in[0] = &g;
    p.in[1] = &u;
    p.out[0] = &y;
    run2(&p);
    record("swiglu", "bf16[9,2048]", pt_nmse(&y), EW);
    pt_rand(&a, DSRT_BF16, 3, SH(3, 5, 100), 1.0f);
    pt_rand(&b, DSRT_F32, 3, SH(3, 5, 100), 1.0f);
    pt_out(&s, DSRT_BF16, 3, SH(3, 5, 100));
    pop q = pop_init(DSRT_OP_ADD);
    q.in[0] = &a;
    q.in[1] = &b;
    q.out[0] = &s;
    run2(&q);
    record("add", "bf16 + f32 [3,5,100] -> bf16", pt_nmse(&s), EW);
    pt all[] = {g, u, y, a, b, s};
    free_all(all, 6);
}
END_TEST

START_TEST(t_act_quant_hadamard)
{
    pt x, q, x2, q2, h, hy, h2, hy2;
    pt_rand(&x, DSRT_BF16, 2, SH(13, 640), 3.0f);
    pt_alloc(&q, DSRT_E4M3, 2, SH(13, 640));
    pt_scales(&q, DSRT_UE8M0, 1, 128, true, 0, 0);
    pt_poison(&q, 0x55);
    pop p = pop_init(DSRT_OP_ACT_QUANT);
    p.in[0] = &x;
    p.out[0] = &q;
    p.op.p.scale_pow2 = true;
    run2(&p);
    record("act_quant", "bf16[13,640] -> e4m3, ue8m0 1x128 (bytes)", pt_exact(&q), 0);
    pt_rand(&x2, DSRT_F32, 2, SH(6, 200), 0.01f);
    pt_alloc(&q2, DSRT_E4M3, 2, SH(6, 200));
    pt_scales(&q2, DSRT_F32, 1, 64, false, 0, 0);
    pt_poison(&q2, 0x55);
    p.in[0] = &x2;
    p.out[0] = &q2;
    p.op.p.scale_pow2 = false;
    run2(&p);
    record("act_quant", "f32[6,200] -> e4m3, f32 1x64 (bytes)", pt_exact(&q2), 0);
    pt_rand(&h, DSRT_BF16, 2, SH(11, 128), 1.0f);
    pt_out(&hy, DSRT_BF16, 2, SH(11, 128));
    pop hd = pop_init(DSRT_OP_HADAMARD);
    hd.in[0] = &h;
    hd.out[0] = &hy;
    run2(&hd);
    record("hadamard", "bf16[11,128]", pt_nmse(&hy), EW);
    pt_rand(&h2, DSRT_F32, 2, SH(3, 1024), 1.0f);
    pt_out(&hy2, DSRT_F32, 2, SH(3, 1024));
    hd.in[0] = &h2;
    hd.out[0] = &hy2;
    run2(&hd);
    record("hadamard", "f32[3,1024] (bits)", pt_exact(&hy2), 0);
    pt all[] = {x, q, x2, q2, h, hy, h2, hy2};
    free_all(all, 8);
}
END_TEST

/* ---- linear ---- */

static void linear_case(const char *what, dsrt_dtype xdt, int64_t M, int64_t K, int64_t N, dsrt_dtype wdt,
                        dsrt_dtype sdt, bool act_quant, bool pow2, float alpha, dsrt_dtype ydt, double limit)
{
    pt x, w, y;
    pt_rand(&x, xdt, 2, SH(M, K), 1.0f);
    if (wdt == DSRT_E4M3) pt_fp8_weight(&w, 2, SH(N, K), sdt);
    else pt_rand(&w, wdt, 2, SH(N, K), 0.05f);
    pt_out(&y, ydt, 2, SH(M, N));
    pop p = pop_init(DSRT_OP_LINEAR);
    p.in[0] = &x;
    p.in[1] = &w;
    p.out[0] = &y;
    p.op.p.act_quant = act_quant;
    p.op.p.scale_pow2 = pow2;
    p.op.p.alpha = alpha;
    run2(&p);
    record("linear", what, pt_nmse(&y), limit);
    pt all[] = {x, w, y};
    free_all(all, 3);
}

START_TEST(t_linear)
{
    linear_case("bf16[33,512] x bf16[384,512] -> bf16", DSRT_BF16, 33, 512, 384, DSRT_BF16, 0, false, true, 1.0f,
                DSRT_BF16, MM);
    linear_case("f32[20,256] x f32[130,256] alpha .5", DSRT_F32, 20, 256, 130, DSRT_F32, 0, false, true, 0.5f,
                DSRT_F32, MM);
    linear_case("f32 x bf16 (mixed, plain cores)", DSRT_F32, 9, 192, 70, DSRT_BF16, 0, false, true, 1.0f, DSRT_F32, MM);
    linear_case("bf16 x e4m3 dequantized -> f32", DSRT_BF16, 17, 384, 300, DSRT_E4M3, DSRT_UE8M0, false, true, 1.0f,
                DSRT_F32, MM);
    linear_case("FP8 act_quant [64,1536]x[2112,1536] -> bf16", DSRT_BF16, 64, 1536, 2112, DSRT_E4M3, DSRT_UE8M0, true,
                true, 1.0f, DSRT_BF16, MM);
    linear_case("FP8 act_quant [256,1024]x[512,1024] -> f32", DSRT_BF16, 256, 1024, 512, DSRT_E4M3, DSRT_F32, true,
                true, 1.0f, DSRT_F32, MM);
    linear_case("FP8 act_quant f32 scales [5,256]x[200,256]", DSRT_F32, 5, 256, 200, DSRT_E4M3, DSRT_F32, true, false,
                0.25f, DSRT_F32, MM);
}
END_TEST

/* The FP8 GEMM engines one by one: each opens its own device instance with DSRT_<BACKEND>_FP8_GEMM set. */
START_TEST(t_linear_fp8_engines)
{
    /* own: the few-rows kernel up to 64 rows, 128-row tiles above; own-tiles: 128-row tiles always;
     * dequant: bf16 GEMM of exactly dequantized operands at every size; exact (the default): own below
     * 256 rows, dequant from there (the 520-row shape). One shape takes f32 activations. */
    const char *modes[] = {"own", "simt", "library", "own-tiles", "dequant", "exact"};
    const int nmodes = (int)(sizeof modes / sizeof modes[0]);
    dsrt_device *saved = g_gpu;
    dsrt_stream *saved_s = g_gs;
    char env[48], skinny[48];
    gpu_env("FP8_GEMM", env, sizeof env);
    gpu_env("FP8_SKINNY", skinny, sizeof skinny);
    for (int i = 0; i < nmodes; i++) {
        setenv(env, i == 3 ? "own" : modes[i], 1);
        if (i == 3) setenv(skinny, "0", 1);
        else unsetenv(skinny);
        dsrt_device *d;
        ck_ok(dsrt_device_open_by_name(g_dev_name, &d));
        dsrt_stream *s;
        ck_ok(dsrt_stream_create(d, &s));
        g_gpu = d;
        g_gs = s;
        /* an aligned prefill shape, and ragged ones: prefill and chunk sizes that are not multiples of the
         * tile, weight row counts that leave a partial scale block, K with a block count not a multiple of 4,
         * and the tiny golden models' shapes (K of one or two blocks); a decode row, 16 rows (two token
         * groups of the few-rows kernel) and 64 (four of its 16-token tiles) at the model's K, and 40 rows
         * (two full 16-token tiles and a partial one) */
        const int64_t shapes[][3] = {{128, 768, 2048}, {20, 392, 640}, {12, 1536, 7168}, {20, 160, 128},
                                     {20, 384, 128},  {28, 128, 256}, {520, 200, 384},  {1, 2112, 7168},
                                     {16, 4096, 7168}, {64, 2112, 7168}, {40, 384, 2048}};
        for (int k = 0; k < (int)(sizeof shapes / sizeof shapes[0]); k++) {
            int64_t M = shapes[k][0], N = shapes[k][1], K = shapes[k][2];
            char what[96];
            pt x, w, y;
            pt_rand(&x, k == 4 ? DSRT_F32 : DSRT_BF16, 2, SH(M, K), 1.0f);
            pt_fp8_weight(&w, 2, SH(N, K), DSRT_UE8M0);
            pt_out(&y, DSRT_BF16, 2, SH(M, N));
            pop p = pop_init(DSRT_OP_LINEAR);
            p.in[0] = &x;
            p.in[1] = &w;
            p.out[0] = &y;
            p.op.p.act_quant = true;
            p.op.p.scale_pow2 = true;
            ck_ok(run_on(&p, false, g_cpu, g_cs));
            dsrt_status st = run_on(&p, true, g_gpu, g_gs);
            snprintf(what, sizeof what, "FP8 engine '%s' [%lld,%lld]x[%lld,%lld]", modes[i], (long long)M, (long long)K,
                     (long long)N, (long long)K);
            if (st && i == 2) { /* the library may legitimately refuse (not Hopper, or failed self-check) */
                printf("  %-16s %-46s skipped: %s\n", "linear", what, dsrt_status_message(st));
                dsrt_status_free(st);
            } else {
                ck_ok(st);
                record("linear", what, pt_nmse(&y), MM);
            }
            pt all[] = {x, w, y};
            free_all(all, 3);
        }
        dsrt_stream_release(s);
        dsrt_device_release(d);
    }
    /* a misspelt engine or threshold is refused when the device opens, naming the variable */
    const char *bad[][2] = {{"dequnt", NULL}, {"exact", "0"}, {"exact", "12x"}};
    char dm[48];
    gpu_env("FP8_DEQUANT_M", dm, sizeof dm);
    for (int i = 0; i < 3; i++) {
        setenv(env, bad[i][0], 1);
        if (bad[i][1]) setenv(dm, bad[i][1], 1);
        dsrt_device *d = NULL;
        dsrt_status st = dsrt_device_open_by_name(g_dev_name, &d);
        ck_assert_msg(st != NULL, "%s=%s %s=%s was accepted", env, bad[i][0], dm, bad[i][1] ? bad[i][1] : "");
        ck_assert_int_eq(dsrt_status_code(st), DSRT_CODE_INVALID_ARGUMENT);
        ck_assert_msg(strstr(dsrt_status_message(st), bad[i][1] ? dm : env) != NULL, "message: %s",
                      dsrt_status_message(st));
        dsrt_status_free(st);
        unsetenv(dm);
    }
    unsetenv(env);
    unsetenv(skinny);
    g_gpu = saved;
    g_gs = saved_s;
}
END_TEST

START_TEST(t_linear_grouped)
{
    int64_t R = 100, K = 256, N = 200, G = 6; /* N: 3 blocks of four 16-row groups and a partial one (few-rows kernel) */
    int32_t off[7] = {0, 10, 10, 45, 60, 90, 97};
    /* v = 0: FP8 (128-row tiles at this size); 1: bf16; 2: FP8 through the few-rows kernel, forced with
     * DSRT_<BACKEND>_FP8_SKINNY=1 (groups of 0 to 35 rows: several 16-row tiles, partial ones, an empty group) */
    char skinny[48];
    gpu_env("FP8_SKINNY", skinny, sizeof skinny);
    for (int v = 0; v < 3; v++) {
        pt x, w, o, y;
        pt_rand(&x, DSRT_BF16, 2, SH(R, K), 1.0f);
        if (v != 1) pt_fp8_weight(&w, 3, SH(G, N, K), DSRT_UE8M0);
        else pt_rand(&w, DSRT_BF16, 3, SH(G, N, K), 0.05f);
        pt_from_i32(&o, 1, SH(G + 1), off);
        pt_out(&y, v != 1 ? DSRT_BF16 : DSRT_F32, 2, SH(R, N));
        pop p = pop_init(DSRT_OP_LINEAR_GROUPED);
        p.in[0] = &x;
        p.in[1] = &w;
        p.in[2] = &o;
        p.out[0] = &y;
        p.op.p.act_quant = v != 1;
        p.op.p.scale_pow2 = true;
        if (v == 2) setenv(skinny, "1", 1);
        run2(&p);
        unsetenv(skinny);
        record("linear_grouped",
               v == 0   ? "FP8 act_quant, 6 groups (one empty), 97/100 rows"
               : v == 1 ? "bf16 weights -> f32"
                        : "FP8, few-rows kernel forced, same groups",
               pt_nmse(&y), MM);
        pt all[] = {x, w, o, y};
        free_all(all, 4);
    }
    /* bad offsets: the GPU must report them at sync like the CPU fails the op */
    pt x, w, o, y;
    int32_t bad[3] = {0, 9, 5};
    pt_rand(&x, DSRT_BF16, 2, SH(10, 128), 1.0f);
    pt_fp8_weight(&w, 3, SH(2, 64, 128), DSRT_UE8M0);
    pt_from_i32(&o, 1, SH(3), bad);
    pt_out(&y, DSRT_BF16, 2, SH(10, 64));
    pop p = pop_init(DSRT_OP_LINEAR_GROUPED);
    p.in[0] = &x;
    p.in[1] = &w;
    p.in[2] = &o;
    p.out[0] = &y;
    p.op.p.act_quant = true;
    p.op.p.scale_pow2 = true;
    dsrt_status sc = run_on(&p, false, g_cpu, g_cs), sg = run_on(&p, true, g_gpu, g_gs);
    ck_assert_msg(sc && sg, "bad group offsets must fail on both devices");
    printf("  %-16s bad offsets: cpu \"%s\" / %s \"%s\"\n", "linear_grouped", dsrt_status_message(sc), g_be,
           dsrt_status_message(sg));
    dsrt_status_free(sc);
    dsrt_status_free(sg);
    pt all[] = {x, w, o, y};
    free_all(all, 4);
}
END_TEST

START_TEST(t_head_linear)
{
    for (int v = 0; v < 3; v++) {
        pt x, w, y;
        bool tw = v == 1;
        dsrt_dtype xdt = v == 2 ? DSRT_F32 : DSRT_BF16;
        pt_rand(&x, xdt, 3, SH(6, 16, 128), 1.0f);
        if (tw) pt_rand(&w, DSRT_BF16, 3, SH(16, 128, 64), 0.1f);
        else pt_rand(&w, DSRT_BF16, 3, SH(16, 512, 128), 0.1f);
        int64_t N = tw ? 64 : 512;
        pt_out(&y, DSRT_BF16, 3, SH(6, 16, N));
        pop p = pop_init(DSRT_OP_HEAD_LINEAR);
        p.in[0] = &x;
        p.in[1] = &w;
        p.out[0] = &y;
        p.op.p.transpose_w = tw;
        run2(&p);
        record("head_linear", v == 0 ? "bf16 [6,16,128] x [16,512,128]" : v == 1 ? "transpose_w [16,128,64]" : "f32 x bf16 (plain cores)",
               pt_nmse(&y), MM);
        pt all[] = {x, w, y};
        free_all(all, 3);
    }
}
END_TEST

/* ---- caches and attention ---- */

/* A paged FP8 latent cache (656-byte rows) written by cache_write on both devices, with a random page
 * permutation per sequence. */
typedef struct {
    pt cache, bt;
    int page, pages_per_seq, nseq;
} paged;

static void make_paged(paged *pc, int nseq, int ctx, int page, int w1, int w2, dsrt_cache_format fmt)
{
    pc->page = page;
    pc->nseq = nseq;
    pc->pages_per_seq = (ctx + page - 1) / page;
    int npages = nseq * pc->pages_per_seq + 3;
    int64_t S = (int64_t)npages * page;
    int64_t row = fmt == DSRT_CACHE_FP8 ? w1 + 4 * ((w1 + 127) / 128) + 2 * w2 : w1 + w2;
    pt_alloc(&pc->cache, fmt == DSRT_CACHE_FP8 ? DSRT_U8 : DSRT_BF16, 2, SH(S, row));
    pt_poison(&pc->cache, 0);
    int32_t *perm = malloc(sizeof(int32_t) * (size_t)npages);
    for (int i = 0; i < npages; i++) perm[i] = i;
    for (int i = npages - 1; i > 0; i--) {
        int j = (int)(dsrt_rng_next(&g_rng) % (uint64_t)(i + 1));
        int32_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    pt_from_i32(&pc->bt, 2, SH(nseq, pc->pages_per_seq), perm);
    free(perm);
    /* write every slot from random rows */
    int64_t T = S;
    pt src, src2, slots;
    pt_rand(&src, DSRT_BF16, 2, SH(T, w1), 1.0f);
    if (w2) pt_rand(&src2, DSRT_BF16, 2, SH(T, w2), 1.0f);
    int32_t *sl = malloc(sizeof(int32_t) * (size_t)T);
    for (int64_t i = 0; i < T; i++) sl[i] = (int32_t)i;
    pt_from_i32(&slots, 1, SH(T), sl);
    free(sl);
    pop p = pop_init(DSRT_OP_CACHE_WRITE);
    p.in[0] = &src;
    p.in[1] = &slots;
    if (w2) p.in[2] = &src2;
    p.out[0] = &pc->cache;
    p.op.p.format = fmt;
    p.op.p.scale_pow2 = true;
    run2(&p);
    pt_free(&src);
    if (w2) pt_free(&src2);
    pt_free(&slots);
}

START_TEST(t_cache_write)
{
    for (int f = 0; f < 2; f++) {
        dsrt_cache_format fmt = f ? DSRT_CACHE_PLAIN : DSRT_CACHE_FP8;
        pt src, src2, slots, cache;
        pt_rand(&src, DSRT_BF16, 2, SH(10, 512), 2.0f);
        pt_rand(&src2, DSRT_BF16, 2, SH(10, 64), 1.0f);
        int32_t sl[10] = {3, 31, -1, 0, 17, 40, 8, 9, 22, 5};
        pt_from_i32(&slots, 1, SH(10), sl);
        pt_alloc(&cache, f ? DSRT_BF16 : DSRT_U8, 2, SH(32, f ? 576 : 656));
        pt_poison(&cache, 0x33);
        pop p = pop_init(DSRT_OP_CACHE_WRITE);
        p.in[0] = &src;
        p.in[1] = &slots;
        p.in[2] = &src2;
        p.out[0] = &cache;
        p.op.p.format = fmt;
        p.op.p.scale_pow2 = true;
        run2(&p);
        record("cache_write", f ? "PLAIN bf16 [32,576] (bytes)" : "FP8 656-byte rows, slot -1 and 40 (bytes)",
               pt_exact(&cache), 0);
        pt all[] = {src, src2, slots, cache};
        free_all(all, 4);
    }
}
END_TEST

/* past: row 0's kv_len reaches that many positions beyond what its block table covers (those are
 * skipped; with indices, the GPU's position bitmap cannot hold them and the row takes the sort) */
static void decode_case(const char *what, int T, int Hh, int ctx, int ksel, dsrt_dtype qdt, dsrt_cache_format fmt,
                        const char *env, int past)
{
    int Dc = 512, Dr = 64, page = 64;
    paged pc;
    make_paged(&pc, T, ctx, page, Dc, Dr, fmt);
    pt ql, qp, rs, kl, idx, o;
    pt_rand(&ql, qdt, 3, SH(T, Hh, Dc), 0.3f);
    pt_rand(&qp, qdt, 3, SH(T, Hh, Dr), 0.3f);
    int32_t *rsv = malloc(sizeof(int32_t) * (size_t)T), *klv = malloc(sizeof(int32_t) * (size_t)T);
    for (int t = 0; t < T; t++) {
        rsv[t] = t;
        klv[t] = t == 0 ? ctx : 1 + (int32_t)(dsrt_rng_next(&g_rng) % (uint64_t)ctx);
    }
    if (past) klv[0] = (ctx + page - 1) / page * page + past;
    if (T > 1) klv[1] = 1;
    pt_from_i32(&rs, 1, SH(T), rsv);
    pt_from_i32(&kl, 1, SH(T), klv);
    memset(&idx, 0, sizeof idx);
    if (ksel) {
        int32_t *iv = malloc(sizeof(int32_t) * (size_t)(T * ksel));
        for (int i = 0; i < T * ksel; i++)
            iv[i] = (int32_t)(dsrt_rng_next(&g_rng) % (uint64_t)(ctx + 20 + 2 * past)) - 10;
        iv[0] = iv[1]; /* a repeated position */
        pt_from_i32(&idx, 2, SH(T, ksel), iv);
        free(iv);
    }
    pt_out(&o, DSRT_BF16, 3, SH(T, Hh, Dc));
    pop p = pop_init(DSRT_OP_MLA_DECODE);
    p.in[0] = &ql;
    p.in[1] = &qp;
    p.in[2] = &pc.cache;
    p.in[3] = &pc.bt;
    p.in[4] = &rs;
    p.in[5] = &kl;
    if (ksel) p.in[6] = &idx;
    p.out[0] = &o;
    p.op.p.format = fmt;
    p.op.p.page_size = page;
    p.op.p.scale = 0.1352337788608801f * 0.1352337788608801f / sqrtf(192.0f);
    char name[48];
    if (env) setenv(gpu_env(env, name, sizeof name), "1", 1);
    run2(&p);
    if (env) unsetenv(name);
    record("mla_decode", what, pt_nmse(&o), MM);
    free(rsv);
    free(klv);
    pt all[] = {ql, qp, rs, kl, o, pc.cache, pc.bt};
    free_all(all, 7);
    if (ksel) pt_free(&idx);
}

START_TEST(t_mla_decode)
{
    decode_case("bf16 q, FP8 cache, 128 heads, T=4 ctx<=1000", 4, 128, 1000, 0, DSRT_BF16, DSRT_CACHE_FP8, NULL, 0);
    decode_case("same, top-256 selected positions (DSA)", 4, 128, 1000, 256, DSRT_BF16, DSRT_CACHE_FP8, NULL, 0);
    decode_case("DSA, kv_len past the block table", 2, 128, 1000, 256, DSRT_BF16, DSRT_CACHE_FP8, NULL, 100);
    decode_case("T=1 (split positions, combine), 16 heads", 1, 16, 3000, 0, DSRT_BF16, DSRT_CACHE_FP8, NULL, 0);
    decode_case("bf16 cache (PLAIN)", 3, 64, 700, 0, DSRT_BF16, DSRT_CACHE_PLAIN, NULL, 0);
    decode_case("f32 q (plain cores, fp32 throughout)", 3, 8, 300, 0, DSRT_F32, DSRT_CACHE_FP8, NULL, 0);
    decode_case("bf16 q, plain cores (exact rounding points)", 2, 16, 500, 64, DSRT_BF16, DSRT_CACHE_FP8,
                "MLA_SIMT", 0);
    /* On Hopper, FP8 splits of 4 tiles or more run the warp-specialized kernel, head groups paired
     * in clusters (k_mla_decode_ws<2>) when their count is even; the short splits above take the
     * wgmma kernel. These cover the first with its own split sizes, a partial pair (forced), one
     * block per head group (<1>, two rows a producer thread), and the wgmma kernel on a long split */
    decode_case("warp-specialized, clusters: T=34 (16-tile splits), 128 heads", 34, 128, 1000, 0, DSRT_BF16,
                DSRT_CACHE_FP8, NULL, 0);
    decode_case("warp-specialized forced: 100 heads (a partial pair), DSA top-256", 2, 100, 1000, 256, DSRT_BF16,
                DSRT_CACHE_FP8, "MLA_WS", 0);
    decode_case("warp-specialized, no clusters: 128 heads, T=34", 34, 128, 1000, 0, DSRT_BF16, DSRT_CACHE_FP8,
                "MLA_NO_CLUSTER", 0);
    decode_case("wgmma kernel without a producer: DSA top-256, T=1 split", 1, 128, 3000, 256, DSRT_BF16,
                DSRT_CACHE_FP8, "MLA_WG", 0);
    /* On Hopper the cases above run the wgmma kernels; these keep the mma.sync one (sm_80's) checked */
    decode_case("mma.sync kernel: T=4 ctx<=1000, 128 heads", 4, 128, 1000, 0, DSRT_BF16, DSRT_CACHE_FP8,
                "MLA_MMA_SYNC", 0);
    decode_case("mma.sync kernel: DSA top-256, T=1 split", 1, 128, 3000, 256, DSRT_BF16, DSRT_CACHE_FP8,
                "MLA_MMA_SYNC", 0);
    decode_case("mma.sync kernel: bf16 cache", 3, 64, 700, 0, DSRT_BF16, DSRT_CACHE_PLAIN, "MLA_MMA_SYNC", 0);
}
END_TEST

START_TEST(t_mla_prefill)
{
    for (int v = 0; v < 3; v++) {
        int T = 40, Hh = 8, L = 64, Dn = 128, Dr = 64, Dv = 128;
        dsrt_dtype dt = v == 2 ? DSRT_F32 : DSRT_BF16;
        pt q, kn, kp, vv, ks, kl, idx, o;
        pt_rand(&q, dt, 3, SH(T, Hh, Dn + Dr), 0.3f);
        pt_rand(&kn, dt, 3, SH(L, Hh, Dn), 1.0f);
        pt_rand(&kp, dt, 2, SH(L, Dr), 1.0f);
        pt_rand(&vv, dt, 3, SH(L, Hh, Dv), 1.0f);
        int32_t st[40], ln[40], iv[40 * 16];
        for (int t = 0; t < T; t++) {
            st[t] = t % 3 == 0 ? 5 : 0;
            ln[t] = t + 1 + (t % 3 == 0 ? 30 : 0);
        }
        for (int i = 0; i < T * 16; i++) iv[i] = (int32_t)(dsrt_rng_next(&g_rng) % 50) - 3;
        pt_from_i32(&ks, 1, SH(T), st);
        pt_from_i32(&kl, 1, SH(T), ln);
        pt_from_i32(&idx, 2, SH(T, 16), iv);
        pt_out(&o, dt, 3, SH(T, Hh, Dv));
        pop p = pop_init(DSRT_OP_MLA_PREFILL);
        p.in[0] = &q;
        p.in[1] = &kn;
        p.in[2] = &kp;
        p.in[3] = &vv;
        p.in[4] = &ks;
        p.in[5] = &kl;
        if (v == 1) p.in[6] = &idx;
        p.out[0] = &o;
        p.op.p.scale = 1.0f / sqrtf(192.0f);
        run2(&p);
        record("mla_prefill", v == 0 ? "bf16 causal, keys past L skipped" : v == 1 ? "bf16 with indices" : "f32", pt_nmse(&o),
               MM);
        pt all[] = {q, kn, kp, vv, ks, kl, idx, o};
        free_all(all, 8);
    }
}
END_TEST

static void indexer_case(const char *what, int T, int ctx, dsrt_cache_format fmt, const char *env)
{
    int Hi = 64, D = 128, page = 64;
    paged pc;
    make_paged(&pc, T, ctx, page, D, 0, fmt);
    pt q, w, rs, kl, sc;
    if (fmt == DSRT_CACHE_FP8) {
        pt qf;
        pt_rand(&qf, DSRT_BF16, 2, SH(T * Hi, D), 1.0f);
        pt_alloc(&q, DSRT_E4M3, 2, SH(T * Hi, D));
        pt_scales(&q, DSRT_F32, 1, 128, true, 0, 0);
        pop a = pop_init(DSRT_OP_ACT_QUANT);
        a.in[0] = &qf;
        a.out[0] = &q;
        a.op.p.scale_pow2 = true;
        run2(&a);
        pt_free(&qf);
        /* view as [T, Hi, D] with [T, Hi, 1] scales */
        int64_t sh3[3] = {T, Hi, D};
        dsrt_tensor c3, g3;
        ck_ok(dsrt_tensor_reshape(&q.c, 3, sh3, &c3));
        ck_ok(dsrt_tensor_reshape(&q.g, 3, sh3, &g3));
        c3.scale = q.c.scale;
        g3.scale = q.g.scale;
        c3.scale.stride[0] = Hi;
        c3.scale.stride[1] = 1;
        c3.scale.stride[2] = 1;
        g3.scale.stride[0] = Hi;
        g3.scale.stride[1] = 1;
        g3.scale.stride[2] = 1;
        q.c = c3;
        q.g = g3;
    } else {
        pt_rand(&q, DSRT_BF16, 3, SH(T, Hi, D), 1.0f);
    }
    pt_rand(&w, DSRT_F32, 2, SH(T, Hi), 1.0f);
    int32_t *rsv = malloc(sizeof(int32_t) * (size_t)T), *klv = malloc(sizeof(int32_t) * (size_t)T);
    for (int t = 0; t < T; t++) {
        rsv[t] = t;
        klv[t] = t == 0 ? ctx : 1 + (int32_t)(dsrt_rng_next(&g_rng) % (uint64_t)ctx);
    }
    pt_from_i32(&rs, 1, SH(T), rsv);
    pt_from_i32(&kl, 1, SH(T), klv);
    int64_t L = ctx + 77;
    pt_out(&sc, DSRT_F32, 2, SH(T, L));
    pop p = pop_init(DSRT_OP_INDEXER_SCORES);
    p.in[0] = &q;
    p.in[1] = &w;
    p.in[2] = &pc.cache;
    p.in[3] = &pc.bt;
    p.in[4] = &rs;
    p.in[5] = &kl;
    p.out[0] = &sc;
    p.op.p.format = fmt;
    p.op.p.page_size = page;
    p.op.p.scale = 1.0f / sqrtf(128.0f);
    char name[48];
    if (env) setenv(gpu_env(env, name, sizeof name), "1", 1);
    run2(&p);
    if (env) unsetenv(name);
    record("indexer_scores", what, pt_nmse(&sc), MM);
    free(rsv);
    free(klv);
    pt all[] = {q, w, rs, kl, sc, pc.cache, pc.bt};
    free_all(all, 7);
}

START_TEST(t_indexer)
{
    indexer_case("FP8 132-byte keys, T=3, ctx 4000 (tensor cores)", 3, 4000, DSRT_CACHE_FP8, NULL);
    indexer_case("FP8, plain cores", 2, 1500, DSRT_CACHE_FP8, "INDEXER_SIMT");
    indexer_case("PLAIN bf16 keys", 2, 900, DSRT_CACHE_PLAIN, NULL);
}
END_TEST

/* Rows of L scores with ties, clusters, -inf, NaN and lengths: a long row (the sparse attention's
 * context) and a decode-length one. */
static void topk_rows(int64_t L)
{
    int T = 5;
    float *s = malloc(sizeof(float) * (size_t)(T * L));
    for (int64_t i = 0; i < T * L; i++) {
        int64_t t = i / L;
        float v = dsrt_rng_normal(&g_rng);
        if (t == 1) v = (float)(int)(v * 4); /* heavy ties */
        if (t == 2) v = 1.0f + fabsf(v) * 1e-3f; /* clustered: same top bits */
        if (i % 997 == 0) v = -INFINITY;
        if (i % 1009 == 0) v = NAN;
        if (t == 3 && (i % L) > 1500) v = -INFINITY; /* fewer valid than k */
        s[i] = v;
    }
    pt sc, ln, ix;
    pt_from_f32(&sc, 2, SH(T, L), s);
    free(s);
    int32_t lv[5] = {(int32_t)L, (int32_t)(L * 3 / 4), (int32_t)L, (int32_t)L, 3000};
    pt_from_i32(&ln, 1, SH(T), lv);
    pt_out(&ix, DSRT_I32, 2, SH(T, 2048));
    pop p = pop_init(DSRT_OP_TOPK);
    p.in[0] = &sc;
    p.in[1] = &ln;
    p.out[0] = &ix;
    p.op.p.k = 2048;
    run2(&p);
    char name[96];
    snprintf(name, sizeof name, "k=2048 of %lld (ties, -inf, NaN, lengths)", (long long)L);
    record("topk", name, pt_exact(&ix), 0);
    pt ix2;
    pt_out(&ix2, DSRT_I32, 2, SH(T, 7));
    p.in[1] = NULL;
    p.out[0] = &ix2;
    p.op.p.k = 7;
    run2(&p);
    snprintf(name, sizeof name, "k=7 of %lld, no lengths", (long long)L);
    record("topk", name, pt_exact(&ix2), 0);
    pt ix3; /* 128 sorted slots: one shared-memory stride, the rest inside waves */
    pt_out(&ix3, DSRT_I32, 2, SH(T, 100));
    p.in[1] = &ln;
    p.out[0] = &ix3;
    p.op.p.k = 100;
    run2(&p);
    snprintf(name, sizeof name, "k=100 of %lld with lengths", (long long)L);
    record("topk", name, pt_exact(&ix3), 0);
    pt ix4; /* by position, as DSA asks: the gather writes the output, no sort */
    pt_out(&ix4, DSRT_I32, 2, SH(T, 2048));
    p.out[0] = &ix4;
    p.op.p.k = 2048;
    p.op.p.by_position = true;
    run2(&p);
    snprintf(name, sizeof name, "k=2048 of %lld by position", (long long)L);
    record("topk", name, pt_exact(&ix4), 0);
    pt all[] = {sc, ln, ix, ix2, ix3, ix4};
    free_all(all, 6);
}

START_TEST(t_topk)
{
    topk_rows(131072);
    topk_rows(4100);
    topk_rows(4096);
    topk_rows(2100);
}
END_TEST

/* ---- MoE ---- */

/* One moe_gate case on both backends: ids bit-exact, weights within rounding. */
static void gate_case(const char *name, pt *lg, pt *bias, int k, int G, int tg, dsrt_score_func sf, bool norm,
                      float scale, pt *ids, pt *wts)
{
    pop g = pop_init(DSRT_OP_MOE_GATE);
    g.in[0] = lg;
    g.in[1] = bias;
    g.out[0] = ids;
    g.out[1] = wts;
    g.op.p.k = k;
    g.op.p.n_group = G;
    g.op.p.topk_group = tg;
    g.op.p.score_func = sf;
    g.op.p.norm_topk = norm;
    g.op.p.route_scale = scale;
    run2(&g);
    char n[96];
    snprintf(n, sizeof n, "%s: ids", name);
    record("moe_gate", n, pt_exact(ids), 0);
    snprintf(n, sizeof n, "%s: weights", name);
    record("moe_gate", n, pt_nmse(wts), EW);
}

START_TEST(t_moe)
{
    int T = 40, E = 256, K = 8, H = 256;
    pt lg, bias, ids, wts;
    pt_rand(&lg, DSRT_F32, 2, SH(T, E), 2.0f);
    pt_rand(&bias, DSRT_F32, 1, SH(E), 0.1f);
    pt_out(&ids, DSRT_I32, 2, SH(T, K));
    pt_out(&wts, DSRT_F32, 2, SH(T, K));
    gate_case("sigmoid, 8 groups keep 4, k=8", &lg, &bias, K, 8, 4, DSRT_SCORE_SIGMOID, true, 2.5f, &ids, &wts);
    pt ids2, wts2;
    pt_out(&ids2, DSRT_I32, 2, SH(T, 6));
    pt_out(&wts2, DSRT_F32, 2, SH(T, 6));
    gate_case("softmax, no groups, k=6", &lg, NULL, 6, 1, 1, DSRT_SCORE_SOFTMAX, false, 1.0f, &ids2, &wts2);
    /* heavy ties among experts and groups (four logit values, a bias of two): the lower index wins */
    float *tl = malloc(sizeof(float) * (size_t)(T * E)), tb[256];
    for (int i = 0; i < T * E; i++) tl[i] = (float)((i * 7 + i / E) % 4) * 0.5f;
    for (int e = 0; e < E; e++) tb[e] = (e % 3 == 0) ? 0.25f : 0.0f;
    pt tlg, tbias, ids3, wts3;
    pt_from_f32(&tlg, 2, SH(T, E), tl);
    pt_from_f32(&tbias, 1, SH(E), tb);
    free(tl);
    pt_out(&ids3, DSRT_I32, 2, SH(T, K));
    pt_out(&wts3, DSRT_F32, 2, SH(T, K));
    gate_case("ties", &tlg, &tbias, K, 8, 4, DSRT_SCORE_SIGMOID, true, 2.5f, &ids3, &wts3);
    pt tall[] = {tlg, tbias, ids3, wts3};
    free_all(tall, 4);

    /* dispatch the first gate's choice to local experts 64..191, combine back */
    pt x, xp, off, rt, sr;
    int G = 128, R = T * K;
    pt_rand(&x, DSRT_BF16, 2, SH(T, H), 1.0f);
    pt_out(&xp, DSRT_BF16, 2, SH(R, H));
    pt_out(&off, DSRT_I32, 1, SH(G + 1));
    pt_out(&rt, DSRT_I32, 1, SH(R));
    pt_out(&sr, DSRT_I32, 2, SH(T, K));
    pop d = pop_init(DSRT_OP_MOE_DISPATCH);
    d.in[0] = &x;
    d.in[1] = &ids;
    d.out[0] = &xp;
    d.out[1] = &off;
    d.out[2] = &rt;
    d.out[3] = &sr;
    d.op.p.expert_begin = 64;
    d.op.p.expert_count = G;
    run2(&d);
    record("moe_dispatch", "offsets", pt_exact(&off), 0);
    record("moe_dispatch", "row_token", pt_exact(&rt), 0);
    record("moe_dispatch", "slot_row", pt_exact(&sr), 0);
    record("moe_dispatch", "x_perm (used rows; unused stay poisoned)", pt_exact(&xp), 0);
    pt yp, sh, y;
    pt_rand(&yp, DSRT_BF16, 2, SH(R, H), 1.0f);
    pt_rand(&sh, DSRT_BF16, 2, SH(T, H), 1.0f);
    pt_out(&y, DSRT_BF16, 2, SH(T, H));
    pop c = pop_init(DSRT_OP_MOE_COMBINE);
    c.in[0] = &yp;
    c.in[1] = &sr;
    c.in[2] = &ids;
    c.in[3] = &wts;
    c.in[4] = &sh;
    c.out[0] = &y;
    run2(&c);
    record("moe_combine", "k=8 with local/remote slots + shared", pt_nmse(&y), EW);
    pt all[] = {lg, bias, ids, wts, ids2, wts2, x, xp, off, rt, sr, yp, sh, y};
    free_all(all, 14);
}
END_TEST

START_TEST(t_sample)
{
    int B = 4;
    int64_t V = 129280;
    pt lg, u, ids;
    float *l = malloc(sizeof(float) * (size_t)(B * V));
    for (int64_t i = 0; i < B * V; i++) l[i] = dsrt_rng_normal(&g_rng) * 3.0f;
    l[5] = l[7]; /* a tie */
    l[V + 11] = NAN;
    pt_from_f32(&lg, 2, SH(B, V), l);
    free(l);
    float uv[4] = {0.1f, 0.5f, 0.93f, 0.999f};
    pt_from_f32(&u, 1, SH(B), uv);
    pt_out(&ids, DSRT_I32, 1, SH(B));
    struct {
        const char *what;
        float t, tp, mp;
        int tk;
    } cfg[] = {{"greedy", 0.0f, 1.0f, 0.0f, 0},
               {"temperature 1, top_p .95", 1.0f, 0.95f, 0.0f, 0},
               {"temperature .7, top_k 50", 0.7f, 1.0f, 0.0f, 50},
               {"temperature 1, min_p .05", 1.0f, 1.0f, 0.05f, 0},
               {"temperature 1.3, full distribution", 1.3f, 1.0f, 0.0f, 0}};
    for (size_t i = 0; i < sizeof cfg / sizeof cfg[0]; i++) {
        pop p = pop_init(DSRT_OP_SAMPLE);
        p.in[0] = &lg;
        p.in[1] = &u;
        p.out[0] = &ids;
        p.op.p.temperature = cfg[i].t;
        p.op.p.top_p = cfg[i].tp;
        p.op.p.min_p = cfg[i].mp;
        p.op.p.top_k = cfg[i].tk;
        pt_poison(&ids, 0x7f);
        run2(&p);
        record("sample", cfg[i].what, pt_exact(&ids), 0);
    }
    pt all[] = {lg, u, ids};
    free_all(all, 3);
}
END_TEST

/* ---- runtime: transfers, fills, events, graphs ---- */

/* Collectives on CUDA devices go through NCCL when it loads (one rank here: all_reduce and broadcast
 * must return the input; all_gather the input once). Without NCCL the in-process implementation runs. */
START_TEST(t_collectives)
{
    dsrt_comm *c = NULL;
    ck_ok(dsrt_comm_init_all(NULL, &g_gpu, 1, &c));
    printf("collectives on %s: %s\n", dsrt_device_label(g_gpu), dsrt_comm_impl(c));
    int64_t n = 4099;
    float *h = malloc(sizeof(float) * (size_t)n), *back = malloc(sizeof(float) * (size_t)n);
    for (int64_t i = 0; i < n; i++) h[i] = (float)(i % 97) - 48.5f;
    dsrt_buffer *a, *b;
    ck_ok(dsrt_buffer_alloc(g_gpu, sizeof(float) * (size_t)n, &a));
    ck_ok(dsrt_buffer_alloc(g_gpu, sizeof(float) * (size_t)n, &b));
    dsrt_tensor ta, tb;
    ck_ok(dsrt_tensor_make(a, 0, DSRT_F32, 1, (int64_t[]){n}, &ta));
    ck_ok(dsrt_tensor_make(b, 0, DSRT_F32, 1, (int64_t[]){n}, &tb));
    ck_ok(dsrt_stream_write(g_gs, a, 0, h, sizeof(float) * (size_t)n));
    ck_ok(dsrt_all_reduce(c, &ta, &tb, DSRT_REDUCE_SUM, g_gs));
    ck_ok(dsrt_stream_read(g_gs, b, 0, back, sizeof(float) * (size_t)n));
    ck_ok(dsrt_stream_sync(g_gs));
    ck_assert_msg(memcmp(h, back, sizeof(float) * (size_t)n) == 0, "1-rank all_reduce changed the data");
    ck_ok(dsrt_all_gather(c, &ta, &tb, g_gs));
    ck_ok(dsrt_stream_read(g_gs, b, 0, back, sizeof(float) * (size_t)n));
    ck_ok(dsrt_stream_sync(g_gs));
    ck_assert_msg(memcmp(h, back, sizeof(float) * (size_t)n) == 0, "1-rank all_gather changed the data");
    record("collectives", dsrt_comm_impl(c), 0, 0);
    dsrt_comm_release(c);
    dsrt_buffer_release(a);
    dsrt_buffer_release(b);
    free(h);
    free(back);
}
END_TEST

START_TEST(t_runtime)
{
    size_t n = 20u << 20; /* larger than the staging buffers: several chunks */
    uint8_t *h = malloc(n), *back = malloc(n);
    for (size_t i = 0; i < n; i++) h[i] = (uint8_t)(i * 2654435761u >> 13);
    dsrt_buffer *b;
    ck_ok(dsrt_buffer_alloc(g_gpu, n, &b));
    ck_ok(dsrt_stream_write(g_gs, b, 0, h, n));
    ck_ok(dsrt_stream_read(g_gs, b, 0, back, n));
    ck_ok(dsrt_stream_sync(g_gs));
    ck_assert_msg(memcmp(h, back, n) == 0, "20 MiB write/read round trip differs");
    uint32_t pat = 0xdeadbeef;
    uint16_t pat2 = 0xbeef;
    ck_ok(dsrt_stream_fill(g_gs, b, 64, 4000, &pat, 4));
    ck_ok(dsrt_stream_fill(g_gs, b, 8192, 998, &pat2, 2));
    ck_ok(dsrt_stream_read(g_gs, b, 0, back, 16384));
    ck_ok(dsrt_stream_sync(g_gs));
    for (int i = 0; i < 1000; i++) ck_assert(memcmp(back + 64 + 4 * i, &pat, 4) == 0);
    for (int i = 0; i < 499; i++) ck_assert(memcmp(back + 8192 + 2 * i, &pat2, 2) == 0);
    ck_assert(back[63] == h[63] && back[4064] == h[4064]);
    /* events order two streams */
    dsrt_stream *s2;
    dsrt_event *e;
    ck_ok(dsrt_stream_create(g_gpu, &s2));
    ck_ok(dsrt_event_create(g_gpu, &e));
    ck_ok(dsrt_stream_fill(g_gs, b, 0, n, &pat, 4));
    ck_ok(dsrt_event_record(e, g_gs));
    ck_ok(dsrt_stream_wait_event(s2, e));
    ck_ok(dsrt_stream_read(s2, b, n - 16, back, 16));
    ck_ok(dsrt_stream_sync(s2));
    for (int i = 0; i < 4; i++) ck_assert(memcmp(back + 4 * i, &pat, 4) == 0);
    bool done = false;
    ck_ok(dsrt_event_sync(e));
    ck_ok(dsrt_event_query(e, &done));
    ck_assert(done);
    dsrt_event_release(e);
    dsrt_stream_release(s2);
    dsrt_buffer_release(b);
    free(h);
    free(back);
    record("runtime", "20 MiB staged transfers, fills, events", 0, 0);

    /* graph: rms_norm + FP8 linear + topk captured once, replayed on new data */
    pt x, w, y, lw, ly, sc, ix;
    pt_rand(&x, DSRT_BF16, 2, SH(8, 1024), 1.0f);
    pt_rand(&w, DSRT_BF16, 1, SH(1024), 1.0f);
    pt_out(&y, DSRT_BF16, 2, SH(8, 1024));
    pt_fp8_weight(&lw, 2, SH(512, 1024), DSRT_UE8M0);
    pt_out(&ly, DSRT_F32, 2, SH(8, 512));
    pt_out(&ix, DSRT_I32, 2, SH(8, 16));
    (void)sc;
    pop p1 = pop_init(DSRT_OP_RMS_NORM), p2 = pop_init(DSRT_OP_LINEAR), p3 = pop_init(DSRT_OP_TOPK);
    p1.in[0] = &x;
    p1.in[1] = &w;
    p1.out[0] = &y;
    p2.in[0] = &y;
    p2.in[1] = &lw;
    p2.out[0] = &ly;
    p2.op.p.act_quant = true;
    p2.op.p.scale_pow2 = true;
    p3.in[0] = &ly;
    p3.out[0] = &ix;
    p3.op.p.k = 16;
    pop *seq[3] = {&p1, &p2, &p3};
    /* warm the FP8 engine choice outside the capture */
    for (int i = 0; i < 3; i++) ck_ok(run_on(seq[i], true, g_gpu, g_gs));
    ck_ok(dsrt_stream_begin_capture(g_gs));
    for (int i = 0; i < 3; i++) {
        dsrt_op op = seq[i]->op;
        for (int j = 0; j < DSRT_OP_MAX_IN; j++) op.in[j] = seq[i]->in[j] ? seq[i]->in[j]->g : (dsrt_tensor){0};
        for (int j = 0; j < DSRT_OP_MAX_OUT; j++) op.out[j] = seq[i]->out[j] ? seq[i]->out[j]->g : (dsrt_tensor){0};
        ck_ok(dsrt_enqueue(g_gs, &op));
    }
    dsrt_graph *gr;
    ck_ok(dsrt_stream_end_capture(g_gs, &gr));
    for (int rep = 0; rep < 2; rep++) {
        pt nx;
        pt_rand(&nx, DSRT_BF16, 2, SH(8, 1024), 1.0f);
        ck_ok(dsrt_stream_copy(g_cs, nx.c.buf, 0, x.c.buf, 0, x.bytes));
        ck_ok(dsrt_stream_copy(g_gs, nx.g.buf, 0, x.g.buf, 0, x.bytes));
        ck_ok(dsrt_stream_sync(g_cs)); /* the CPU stream copies later: keep nx alive until it has */
        ck_ok(dsrt_stream_sync(g_gs));
        pt_free(&nx);
        pt_poison(&ix, 0x7f);
        pt_poison(&ly, 0xff);
        ck_ok(dsrt_graph_launch(gr, g_gs));
        ck_ok(dsrt_stream_sync(g_gs));
        for (int i = 0; i < 3; i++) ck_ok(run_on(seq[i], false, g_cpu, g_cs));
        record("graph", "captured rms_norm+FP8 linear+topk: linear", pt_nmse(&ly), MM);
        /* top-k must be exact on equal scores: the CPU re-selects from the GPU's linear output (the two
         * GEMMs differ in the last bits, which can reorder near-ties) */
        void *gly = download(&ly.g, g_gs, ly.bytes);
        ck_ok(dsrt_stream_write(g_cs, ly.c.buf, 0, gly, ly.bytes));
        ck_ok(dsrt_stream_sync(g_cs));
        free(gly);
        ck_ok(run_on(&p3, false, g_cpu, g_cs));
        record("graph", "captured rms_norm+FP8 linear+topk: topk", pt_exact(&ix), 0.0);
    }
    dsrt_graph_release(gr);
    pt all[] = {x, w, y, lw, ly, ix};
    free_all(all, 6);
}
END_TEST

/* A graph captured over two streams, as the model's forward records the indexer and the shared expert
 * beside the main chain: the side stream joins the capture by waiting on an event recorded in it, runs
 * an FP8 GEMV there (its split-K scratch must belong to the graph), and the main stream waits for it
 * before the top-k. Replayed on new data against the CPU. The joined stream cannot end the capture. */
static void enqueue_gpu(dsrt_stream *s, const pop *p)
{
    dsrt_op op = p->op;
    for (int j = 0; j < DSRT_OP_MAX_IN; j++) op.in[j] = p->in[j] ? p->in[j]->g : (dsrt_tensor){0};
    for (int j = 0; j < DSRT_OP_MAX_OUT; j++) op.out[j] = p->out[j] ? p->out[j]->g : (dsrt_tensor){0};
    ck_ok(dsrt_enqueue(s, &op));
}

/* RMSNorm of a decode row, then an FP8 GEMV of 16 row blocks (split K: partial sums in scratch). */
typedef struct norm_gemv {
    pt x, w, y, lw, ly;
    pop norm, l1;
} norm_gemv;

static void norm_gemv_init(norm_gemv *g)
{
    pt_rand(&g->x, DSRT_BF16, 2, SH(1, 2048), 1.0f);
    pt_rand(&g->w, DSRT_BF16, 1, SH(2048), 1.0f);
    pt_out(&g->y, DSRT_BF16, 2, SH(1, 2048));
    pt_fp8_weight(&g->lw, 2, SH(256, 2048), DSRT_UE8M0);
    pt_out(&g->ly, DSRT_F32, 2, SH(1, 256));
    g->norm = pop_init(DSRT_OP_RMS_NORM);
    g->norm.in[0] = &g->x;
    g->norm.in[1] = &g->w;
    g->norm.out[0] = &g->y;
    g->l1 = pop_init(DSRT_OP_LINEAR);
    g->l1.in[0] = &g->y;
    g->l1.in[1] = &g->lw;
    g->l1.out[0] = &g->ly;
    g->l1.op.p.act_quant = true;
    g->l1.op.p.scale_pow2 = true;
}

static void norm_gemv_free(norm_gemv *g)
{
    pt all[] = {g->x, g->w, g->y, g->lw, g->ly};
    free_all(all, 5);
}

START_TEST(t_graph_fork)
{
    dsrt_stream *side;
    dsrt_event *fork, *join;
    ck_ok(dsrt_stream_create(g_gpu, &side));
    ck_ok(dsrt_event_create(g_gpu, &fork));
    ck_ok(dsrt_event_create(g_gpu, &join));
    norm_gemv g;
    norm_gemv_init(&g);
    pt lw2, ly2, ix;
    pt_fp8_weight(&lw2, 2, SH(384, 2048), DSRT_UE8M0);
    pt_out(&ly2, DSRT_BF16, 2, SH(1, 384));
    pt_out(&ix, DSRT_I32, 2, SH(1, 16));
    pop l2 = pop_init(DSRT_OP_LINEAR), tk = pop_init(DSRT_OP_TOPK);
    l2.in[0] = &g.y;
    l2.in[1] = &lw2;
    l2.out[0] = &ly2;
    l2.op.p.act_quant = true;
    l2.op.p.scale_pow2 = true;
    tk.in[0] = &g.ly;
    tk.out[0] = &ix;
    tk.op.p.k = 16;
    ck_ok(dsrt_stream_begin_capture(g_gs));
    enqueue_gpu(g_gs, &g.norm);
    ck_ok(dsrt_event_record(fork, g_gs));
    ck_ok(dsrt_stream_wait_event(side, fork));
    enqueue_gpu(side, &g.l1);
    enqueue_gpu(g_gs, &l2);
    ck_ok(dsrt_event_record(join, side));
    /* the joined stream does not end its origin's capture */
    dsrt_graph *bad = NULL;
    dsrt_status st = dsrt_stream_end_capture(side, &bad);
    ck_assert_msg(st != NULL && bad == NULL, "a joined stream ended the capture");
    printf("  %-16s joined stream ends the capture: \"%s\"\n", "graph", dsrt_status_message(st));
    dsrt_status_free(st);
    ck_ok(dsrt_stream_wait_event(g_gs, join));
    enqueue_gpu(g_gs, &tk);
    dsrt_graph *gr;
    ck_ok(dsrt_stream_end_capture(g_gs, &gr));
    for (int rep = 0; rep < 2; rep++) {
        pt nx;
        pt_rand(&nx, DSRT_BF16, 2, SH(1, 2048), 1.0f);
        ck_ok(dsrt_stream_copy(g_cs, nx.c.buf, 0, g.x.c.buf, 0, g.x.bytes));
        ck_ok(dsrt_stream_copy(g_gs, nx.g.buf, 0, g.x.g.buf, 0, g.x.bytes));
        ck_ok(dsrt_stream_sync(g_cs));
        ck_ok(dsrt_stream_sync(g_gs));
        pt_free(&nx);
        pt_poison(&g.ly, 0xff);
        pt_poison(&ly2, 0xff);
        pt_poison(&ix, 0x7f);
        ck_ok(dsrt_graph_launch(gr, g_gs));
        ck_ok(dsrt_stream_sync(g_gs));
        ck_ok(run_on(&g.norm, false, g_cpu, g_cs));
        ck_ok(run_on(&g.l1, false, g_cpu, g_cs));
        ck_ok(run_on(&l2, false, g_cpu, g_cs));
        record("graph", "two-stream capture: side stream's FP8 GEMV", pt_nmse(&g.ly), MM);
        record("graph", "two-stream capture: main stream's FP8 GEMV", pt_nmse(&ly2), MM);
        void *gly = download(&g.ly.g, g_gs, g.ly.bytes);
        ck_ok(dsrt_stream_write(g_cs, g.ly.c.buf, 0, gly, g.ly.bytes));
        ck_ok(dsrt_stream_sync(g_cs));
        free(gly);
        ck_ok(run_on(&tk, false, g_cpu, g_cs));
        record("graph", "two-stream capture: top-k after the join", pt_exact(&ix), 0.0);
    }
    dsrt_graph_release(gr);
    dsrt_event_release(fork);
    dsrt_event_release(join);
    dsrt_stream_release(side);
    norm_gemv_free(&g);
    pt all[] = {lw2, ly2, ix};
    free_all(all, 3);
}
END_TEST

/* A capture whose side stream never rejoins: ending it fails with the runtime's reason, and both streams
 * work afterwards. (The runtime's error is an API error to compute-sanitizer: tests/gpu/run.sh leaves
 * this test out of its memcheck run.) */
START_TEST(t_graph_unjoined)
{
    dsrt_stream *side;
    dsrt_event *fork;
    ck_ok(dsrt_stream_create(g_gpu, &side));
    ck_ok(dsrt_event_create(g_gpu, &fork));
    norm_gemv g;
    norm_gemv_init(&g);
    ck_ok(dsrt_stream_begin_capture(g_gs));
    enqueue_gpu(g_gs, &g.norm);
    ck_ok(dsrt_event_record(fork, g_gs));
    ck_ok(dsrt_stream_wait_event(side, fork));
    enqueue_gpu(side, &g.l1);
    dsrt_graph *bad = NULL;
    dsrt_status st = dsrt_stream_end_capture(g_gs, &bad);
    ck_assert_msg(st != NULL && bad == NULL, "a capture with an unjoined stream ended");
    printf("  %-16s unjoined side stream: \"%s\"\n", "graph", dsrt_status_message(st));
    dsrt_status_free(st);
    dsrt_status s1 = dsrt_stream_sync(side), s2 = dsrt_stream_sync(g_gs);
    dsrt_status_free(s1); /* the runtime may report the invalidated capture here once */
    dsrt_status_free(s2);
    ck_ok(run_on(&g.l1, true, g_gpu, side));
    ck_ok(run_on(&g.norm, true, g_gpu, g_gs));
    ck_ok(run_on(&g.l1, true, g_gpu, g_gs));
    ck_ok(run_on(&g.norm, false, g_cpu, g_cs));
    ck_ok(run_on(&g.l1, false, g_cpu, g_cs));
    record("graph", "after a failed two-stream capture: GEMV", pt_nmse(&g.ly), MM);
    dsrt_event_release(fork);
    dsrt_stream_release(side);
    norm_gemv_free(&g);
}
END_TEST

/* Whether `name` contains one of the comma-separated words of `list`. */
static bool name_in_list(const char *name, const char *list)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s", list);
    for (char *w = strtok(buf, ","); w; w = strtok(NULL, ","))
        if (*w && strstr(name, w)) return true;
    return false;
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--backend") == 0 && i + 1 < argc) {
            g_be = argv[++i];
        } else {
            printf("usage: %s [--backend cuda|hip]\n", argv[0]);
            return 2;
        }
    }
    snprintf(g_dev_name, sizeof g_dev_name, "%.30s:0", g_be);
    dsrt_backend *cb;
    dsrt_status st = dsrt_backend_find(g_be, &cb);
    if (st) {
        printf("test_cuda: skipped: this build has no %s backend (%s)\n", g_be, dsrt_status_message(st));
        dsrt_status_free(st);
        return 0;
    }
    int n = 0;
    st = dsrt_backend_device_count(cb, &n);
    if (st || n == 0) {
        printf("test_cuda: skipped: %s\n", st ? dsrt_status_message(st) : dsrt_backend_unavailable_reason(cb));
        dsrt_status_free(st);
        return 0;
    }
    ck_ok(dsrt_device_open_by_name("cpu", &g_cpu));
    ck_ok(dsrt_device_open_by_name(g_dev_name, &g_gpu));
    ck_ok(dsrt_stream_create(g_cpu, &g_cs));
    ck_ok(dsrt_stream_create(g_gpu, &g_gs));
    printf("test_cuda: %s (%s) against %s\n", dsrt_device_get_caps(g_gpu)->name, dsrt_device_get_caps(g_gpu)->driver,
           dsrt_device_get_caps(g_cpu)->name);
    Suite *s = suite_create(g_be);
    TCase *tc = tcase_create("ops");
    tcase_set_timeout(tc, 3000);
    /* DSRT_TEST_CUDA_ONLY=a,b,...: only the tests whose names contain one of the words (the sanitizer
     * runs use it to keep racecheck short); DSRT_TEST_CUDA_SKIP=a,b,...: all but those (memcheck skips
     * the collectives: NCCL's own start-up probes report errors inside libnccl) */
    const struct {
        const char *name;
        const TTest *test;
    } tests[] = {{"convert", t_convert},
                 {"embed", t_embed},
                 {"norms", t_norms},
                 {"rope", t_rope},
                 {"swiglu_add", t_swiglu_add},
                 {"act_quant_hadamard", t_act_quant_hadamard},
                 {"linear", t_linear},
                 {"linear_fp8_engines", t_linear_fp8_engines},
                 {"graph_fork", t_graph_fork},
                 {"graph_unjoined", t_graph_unjoined},
                 {"linear_grouped", t_linear_grouped},
                 {"head_linear", t_head_linear},
                 {"cache_write", t_cache_write},
                 {"mla_decode", t_mla_decode},
                 {"mla_prefill", t_mla_prefill},
                 {"indexer", t_indexer},
                 {"topk", t_topk},
                 {"moe", t_moe},
                 {"sample", t_sample},
                 {"runtime", t_runtime},
                 {"collectives", t_collectives}};
    const char *only = getenv("DSRT_TEST_CUDA_ONLY"), *skip = getenv("DSRT_TEST_CUDA_SKIP");
    for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++) {
        bool take = (!only || !*only || name_in_list(tests[i].name, only)) && !(skip && *skip && name_in_list(tests[i].name, skip));
        if (take) tcase_add_test(tc, tests[i].test);
    }
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    /* no fork: GPU runtimes do not survive fork() once initialized, and the summary needs the results */
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    printf("\ntest_cuda summary (largest error per op over its cases):\n");
    printf("  %-16s %6s %12s %10s\n", "op", "cases", "worst", "limit");
    for (int i = 0; i < g_nres; i++)
        printf("  %-16s %6d %12.3e %10.0e %s\n", g_res[i].op, g_res[i].cases, g_res[i].worst, g_res[i].limit,
               g_res[i].worst <= g_res[i].limit ? "ok" : "FAIL");
    dsrt_stream_release(g_cs);
    dsrt_stream_release(g_gs);
    dsrt_device_release(g_cpu);
    dsrt_device_release(g_gpu);
    return failed ? 1 : 0;
}
