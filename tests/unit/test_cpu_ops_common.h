/* Shared by the test_cpu_ops*.c suites: a CPU device and stream per test, tensors filled from host
 * arrays, and reference number formats written from the text of ops.h and SPEC.md (not from quant/ or
 * the kernels: an independent reading is the point of these tests). */
#ifndef DSRT_TEST_CPU_OPS_COMMON_H
#define DSRT_TEST_CPU_OPS_COMMON_H

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

/* ---- reference number formats ---- */

/* Rounds x to nearest even in a binary format with `mbits` stored mantissa bits and smallest normal
 * exponent `emin` (subnormals below). Past `maxv`: `sat` clamps to maxv, otherwise infinity. Exact
 * in double for every f32 input. */
static inline double ref_round_fmt(double x, int mbits, int emin, double maxv, bool sat)
{
    if (isnan(x) || x == 0) return x;
    if (isinf(x)) return sat ? copysign(maxv, x) : x;
    double a = fabs(x);
    int e;
    frexp(a, &e); /* a = f * 2^e, f in [0.5, 1): floor(log2 a) = e - 1 */
    int ex = e - 1 < emin ? emin : e - 1;
    double quantum = ldexp(1.0, ex - mbits);
    double r = nearbyint(a / quantum) * quantum; /* default rounding mode: to nearest even */
    if (r > maxv) r = sat ? maxv : INFINITY;
    return copysign(r, x);
}

#define REF_BF16_MAX 3.3895313892515355e38 /* (2 - 2^-7) * 2^127 */
static inline float ref_bf16(float x) { return (float)ref_round_fmt(x, 7, -126, REF_BF16_MAX, false); }
static inline float ref_f16(float x) { return (float)ref_round_fmt(x, 10, -14, 65504.0, false); }
/* e4m3 (float8_e4m3fn): 3 mantissa bits, bias 7, max 448, no infinities; quantization saturates. */
static inline float ref_e4m3(float x) { return (float)ref_round_fmt(x, 3, -6, 448.0, true); }

static inline float ref_e4m3_decode(uint8_t c)
{
    int s = c >> 7, e = (c >> 3) & 15, m = c & 7;
    if (e == 15 && m == 7) return NAN;
    double v = e == 0 ? ldexp(m, -9) : ldexp(8 + m, e - 10);
    return (float)(s ? -v : v);
}

static inline uint8_t ref_e4m3_code(float x)
{
    uint8_t sign = signbit(x) ? 0x80 : 0;
    if (isnan(x)) return sign | 0x7f;
    float v = fabsf(ref_e4m3(x));
    for (int c = 0; c < 0x7f; c++)
        if (ref_e4m3_decode((uint8_t)c) == v) return (uint8_t)(sign | c);
    return 0xff; /* unreachable: every rounded value has a code */
}

static inline float ref_bf16_decode(uint16_t b)
{
    uint32_t u = (uint32_t)b << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline uint16_t ref_bf16_bits(float x)
{
    if (isnan(x)) return signbit(x) ? 0xffc0 : 0x7fc0;
    float v = ref_bf16(x);
    uint32_t u;
    memcpy(&u, &v, 4);
    return (uint16_t)(u >> 16); /* v has at most 8 significant bits: the low half is zero */
}

static inline float ref_f16_decode(uint16_t h)
{
    int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
    double v;
    if (e == 31) v = m ? NAN : INFINITY;
    else if (e == 0) v = ldexp(m, -24);
    else v = ldexp(1024 + m, e - 25);
    return (float)(s ? -v : v);
}

static inline uint16_t ref_f16_bits(float x)
{
    uint16_t sign = signbit(x) ? 0x8000 : 0;
    if (isnan(x)) return sign | 0x7e00;
    double v = fabs(ref_round_fmt(x, 10, -14, 65504.0, false));
    if (isinf(v)) return sign | 0x7c00;
    if (v < ldexp(1.0, -14)) return (uint16_t)(sign | (uint16_t)(v / ldexp(1.0, -24)));
    int e;
    frexp(v, &e);
    return (uint16_t)(sign | (uint16_t)((e - 1 + 15) << 10) | (uint16_t)(v / ldexp(1.0, e - 11) - 1024));
}

static inline float ref_ue8m0(uint8_t e) { return (float)ldexp(1.0, (int)e - 127); }

static inline float ref_round(dsrt_dtype dt, float x)
{
    switch (dt) {
    case DSRT_BF16: return ref_bf16(x);
    case DSRT_F16: return ref_f16(x);
    case DSRT_E4M3: return ref_e4m3(x);
    default: return x;
    }
}

/* The activation-quantization scale (ops.h ACT_QUANT): amax floored at 1e-4, times fl(1/448), and
 * for power-of-two scales 2^ceil(log2 of that). */
static inline float ref_act_scale(float amax, bool pow2)
{
    if (!(amax >= 1e-4f)) amax = 1e-4f;
    float r = amax * (1.0f / 448.0f);
    if (!pow2) return r;
    int e;
    float f = frexpf(r, &e); /* r = f * 2^e: log2 r = e - 1 exactly when f == 0.5, else in (e-1, e) */
    return ldexpf(1.0f, f == 0.5f ? e - 1 : e);
}

/* Quantizes n values as one block: q[i] receives the e4m3 value (as float), *scale the scale. */
static inline void ref_act_quant_block(const float *x, int64_t n, bool pow2, float *q, float *scale)
{
    float amax = 0;
    for (int64_t i = 0; i < n; i++) amax = fmaxf(amax, fabsf(x[i]));
    float s = ref_act_scale(amax, pow2);
    for (int64_t i = 0; i < n; i++) {
        float v = x[i] / s;
        v = v > 448.0f ? 448.0f : v < -448.0f ? -448.0f : v;
        q[i] = ref_e4m3(v);
    }
    *scale = s;
}

/* Value spacing of dtype dt around v (for "within half a unit of the output format"). */
static inline double ref_ulp(dsrt_dtype dt, double v)
{
    int mbits = dt == DSRT_BF16 ? 7 : dt == DSRT_F16 ? 10 : 23, emin = dt == DSRT_F16 ? -14 : -126;
    int e;
    frexp(fabs(v), &e);
    int ex = e - 1 < emin ? emin : e - 1;
    return ldexp(1.0, ex - mbits);
}

/* ---- per-test device, stream and buffers ---- */

#define ENV_MAX_BUFS 1024
typedef struct {
    dsrt_device *dev;
    dsrt_stream *s;
    dsrt_buffer *bufs[ENV_MAX_BUFS];
    int nbufs;
} ops_env;

static ops_env E;

static inline void env_setup(void)
{
    memset(&E, 0, sizeof E);
    ck_ok(dsrt_device_open_by_name("cpu", &E.dev));
    ck_ok(dsrt_stream_create(E.dev, &E.s));
}

static inline void env_teardown(void)
{
    if (E.s) dsrt_stream_release(E.s);
    for (int i = 0; i < E.nbufs; i++) dsrt_buffer_release(E.bufs[i]);
    if (E.dev) dsrt_device_release(E.dev);
    memset(&E, 0, sizeof E);
}

static inline void env_sync(void) { ck_ok(dsrt_stream_sync(E.s)); }

/* A new buffer filled with 0xCD bytes, so outputs an op must not touch can be checked. */
static inline dsrt_buffer *env_buffer(size_t bytes)
{
    ck_assert_int_lt(E.nbufs, ENV_MAX_BUFS);
    dsrt_buffer *b = NULL;
    ck_ok(dsrt_buffer_alloc(E.dev, bytes ? bytes : 1, &b));
    memset(dsrt_buffer_host_ptr(b), 0xcd, bytes ? bytes : 1);
    E.bufs[E.nbufs++] = b;
    return b;
}

/* A contiguous tensor in a buffer of its own. */
static inline dsrt_tensor tnew(dsrt_dtype dt, int nd, const int64_t *shape)
{
    int64_t n = 1;
    for (int i = 0; i < nd; i++) n *= shape[i];
    dsrt_tensor t;
    ck_ok(dsrt_tensor_make(env_buffer((size_t)n * dsrt_dtype_size(dt)), 0, dt, nd, shape, &t));
    return t;
}
#define T1(dt, a) tnew((dt), 1, (const int64_t[]){(a)})
#define T2(dt, a, b) tnew((dt), 2, (const int64_t[]){(a), (b)})
#define T3(dt, a, b, c) tnew((dt), 3, (const int64_t[]){(a), (b), (c)})

/* A [.., n] tensor that is a slice of the last dimension of a wider one [.., pre + n + post]: rows are
 * strided, so kernels that assume contiguous tensors read the wrong elements. */
static inline dsrt_tensor tnew_cols(dsrt_dtype dt, int nd, const int64_t *shape, int64_t pre, int64_t post)
{
    int64_t wide[DSRT_MAX_DIMS], n = 1;
    for (int i = 0; i < nd; i++) n *= shape[i];
    if (n == 0) return tnew(dt, nd, shape); /* an empty view must start inside its buffer */
    for (int i = 0; i < nd; i++) wide[i] = shape[i];
    wide[nd - 1] = pre + shape[nd - 1] + post;
    dsrt_tensor w = tnew(dt, nd, wide), t;
    ck_ok(dsrt_tensor_slice(&w, nd - 1, pre, shape[nd - 1], &t));
    return t;
}

/* Attaches a fresh scale companion with blocks br x bc. */
static inline void tscale(dsrt_tensor *t, dsrt_dtype sdt, int br, int bc)
{
    dsrt_tensor tmp = *t;
    tmp.scale.buf = (dsrt_buffer *)1; /* only to size the grid */
    tmp.scale.block[0] = br;
    tmp.scale.block[1] = bc;
    int64_t n = dsrt_tensor_scale_numel(&tmp);
    ck_ok(dsrt_tensor_set_scale(t, env_buffer((size_t)n * dsrt_dtype_size(sdt)), 0, sdt, br, bc));
}

static inline int64_t tnumel(const dsrt_tensor *t) { return dsrt_tensor_numel(t); }

/* Element offset (in elements) of the i-th element in row-major logical order. */
static inline int64_t telem(const dsrt_tensor *t, int64_t i)
{
    int64_t off = 0;
    for (int d = t->ndim - 1; d >= 0; d--) {
        off += (i % t->shape[d]) * t->stride[d];
        i /= t->shape[d];
    }
    return off;
}

static inline void *tbase(const dsrt_tensor *t) { return (char *)dsrt_buffer_host_ptr(t->buf) + t->offset; }

/* Writes v (logical order) with the tensor's dtype, rounding with the reference formats. */
static inline void tput(const dsrt_tensor *t, const float *v)
{
    char *b = tbase(t);
    for (int64_t i = 0, n = tnumel(t); i < n; i++) {
        int64_t o = telem(t, i);
        switch (t->dtype) {
        case DSRT_F32: ((float *)b)[o] = v[i]; break;
        case DSRT_BF16: ((uint16_t *)b)[o] = ref_bf16_bits(v[i]); break;
        case DSRT_F16: ((uint16_t *)b)[o] = ref_f16_bits(v[i]); break;
        case DSRT_E4M3: ((uint8_t *)b)[o] = ref_e4m3_code(v[i]); break;
        default: ck_abort_msg("tput: dtype %s", dsrt_dtype_name(t->dtype));
        }
    }
}

static inline float tget1(const dsrt_tensor *t, int64_t i)
{
    const char *b = tbase(t);
    int64_t o = telem(t, i);
    switch (t->dtype) {
    case DSRT_F32: return ((const float *)b)[o];
    case DSRT_BF16: return ref_bf16_decode(((const uint16_t *)b)[o]);
    case DSRT_F16: return ref_f16_decode(((const uint16_t *)b)[o]);
    case DSRT_E4M3: return ref_e4m3_decode(((const uint8_t *)b)[o]);
    case DSRT_I32: return (float)((const int32_t *)b)[o];
    default: ck_abort_msg("tget: dtype %s", dsrt_dtype_name(t->dtype));
    }
    return NAN;
}

static inline void tget(const dsrt_tensor *t, float *v)
{
    for (int64_t i = 0, n = tnumel(t); i < n; i++) v[i] = tget1(t, i);
}

/* Raw element bits (for exact comparisons and untouched-memory checks). */
static inline uint32_t tbits(const dsrt_tensor *t, int64_t i)
{
    const char *b = tbase(t);
    int64_t o = telem(t, i);
    switch (dsrt_dtype_size(t->dtype)) {
    case 4: return ((const uint32_t *)b)[o];
    case 2: return ((const uint16_t *)b)[o];
    default: return ((const uint8_t *)b)[o];
    }
}

/* The bits the reference format gives v in dtype dt. */
static inline uint32_t ref_bits(dsrt_dtype dt, float v)
{
    uint32_t u;
    switch (dt) {
    case DSRT_F32: memcpy(&u, &v, 4); return u;
    case DSRT_BF16: return ref_bf16_bits(v);
    case DSRT_F16: return ref_f16_bits(v);
    case DSRT_E4M3: return ref_e4m3_code(v);
    default: ck_abort_msg("ref_bits: dtype %s", dsrt_dtype_name(dt));
    }
    return 0;
}

static inline void tput_i32(const dsrt_tensor *t, const int32_t *v)
{
    ck_assert_int_eq(t->dtype, DSRT_I32);
    for (int64_t i = 0, n = tnumel(t); i < n; i++) ((int32_t *)tbase(t))[telem(t, i)] = v[i];
}

static inline int32_t tget_i32(const dsrt_tensor *t, int64_t i) { return ((const int32_t *)tbase(t))[telem(t, i)]; }

/* Scale companion element [lead][r][c] of the grid (f32 or ue8m0, as a value). */
static inline float tscale_get(const dsrt_tensor *t, int64_t lead, int64_t r, int64_t c)
{
    const char *b = (const char *)dsrt_buffer_host_ptr(t->scale.buf) + t->scale.offset;
    int nd = t->ndim;
    int64_t idx = c * t->scale.stride[nd - 1] + (nd >= 2 ? r * t->scale.stride[nd - 2] : 0) +
                  (nd == 3 ? lead * t->scale.stride[0] : 0);
    return t->scale.dtype == DSRT_UE8M0 ? ref_ue8m0(((const uint8_t *)b)[idx]) : ((const float *)b)[idx];
}

static inline void tscale_set(const dsrt_tensor *t, int64_t lead, int64_t r, int64_t c, float v, uint8_t code)
{
    char *b = (char *)dsrt_buffer_host_ptr(t->scale.buf) + t->scale.offset;
    int nd = t->ndim;
    int64_t idx = c * t->scale.stride[nd - 1] + (nd >= 2 ? r * t->scale.stride[nd - 2] : 0) +
                  (nd == 3 ? lead * t->scale.stride[0] : 0);
    if (t->scale.dtype == DSRT_UE8M0) ((uint8_t *)b)[idx] = code;
    else ((float *)b)[idx] = v;
}

/* ---- random data ---- */

static inline float *falloc(int64_t n)
{
    float *p = calloc((size_t)(n > 0 ? n : 1), sizeof(float));
    ck_assert_ptr_nonnull(p);
    return p;
}

static inline double *dalloc(int64_t n)
{
    double *p = calloc((size_t)(n > 0 ? n : 1), sizeof(double));
    ck_assert_ptr_nonnull(p);
    return p;
}

static inline void frand(dsrt_rng *r, float *v, int64_t n, float scale)
{
    for (int64_t i = 0; i < n; i++) v[i] = scale * dsrt_rng_normal(r);
}

static inline int rand_int(dsrt_rng *r, int lo, int hi) /* [lo, hi] */
{
    return lo + (int)(dsrt_rng_next(r) % (uint64_t)(hi - lo + 1));
}

static inline void shuffle_i32(dsrt_rng *r, int32_t *v, int64_t n)
{
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)(dsrt_rng_next(r) % (uint64_t)(i + 1));
        int32_t tmp = v[i];
        v[i] = v[j];
        v[j] = tmp;
    }
}

/* ---- comparisons ---- */

/* Every element's bits equal those the reference format gives want[i]; NaN only needs to be NaN. */
static inline void expect_exact(const char *what, const dsrt_tensor *t, const float *want)
{
    for (int64_t i = 0, n = tnumel(t); i < n; i++) {
        if (isnan(want[i])) {
            ck_assert_msg(isnan(tget1(t, i)), "%s[%lld]: %g, expected NaN", what, (long long)i, (double)tget1(t, i));
            continue;
        }
        uint32_t g = tbits(t, i), w = ref_bits(t->dtype, want[i]);
        ck_assert_msg(g == w, "%s[%lld]: %.9g (bits %x), expected %.9g (bits %x) in %s", what, (long long)i,
                      (double)tget1(t, i), g, (double)ref_round(t->dtype, want[i]), w, dsrt_dtype_name(t->dtype));
    }
}

/* |got - ref| <= rel * max(|ref|, mag) plus half a unit of the output format when it is narrower than
 * f32 (the kernel may round a value that differs from ref in its last f32 bits to the other side).
 * `mag` (may be NULL) is the magnitude of the terms summed into ref, for sums that cancel. */
static inline void expect_close(const char *what, const dsrt_tensor *t, const double *ref, const double *mag, double rel)
{
    for (int64_t i = 0, n = tnumel(t); i < n; i++) {
        double g = tget1(t, i), r = ref[i];
        if (isnan(r) || isinf(r)) {
            ck_assert_msg((isnan(r) && isnan(g)) || g == r, "%s[%lld]: %g, expected %g", what, (long long)i, g, r);
            continue;
        }
        double scale = fabs(r);
        if (mag && mag[i] > scale) scale = mag[i];
        double tol = rel * scale + (t->dtype == DSRT_F32 ? 0 : 0.5 * ref_ulp(t->dtype, r)) + 1e-30;
        ck_assert_msg(fabs(g - r) <= tol, "%s[%lld]: %.9g, expected %.9g (diff %.3g > tol %.3g, %s)", what, (long long)i,
                      g, r, fabs(g - r), tol, dsrt_dtype_name(t->dtype));
    }
}

/* Elements of a buffer outside the views an op may write still hold the 0xCD fill. */
static inline void expect_untouched(const char *what, const dsrt_buffer *b, size_t from, size_t to)
{
    const uint8_t *p = dsrt_buffer_host_ptr(b);
    for (size_t i = from; i < to; i++) ck_assert_msg(p[i] == 0xcd, "%s: byte %zu was written (%02x)", what, i, p[i]);
}

static inline Suite *ops_suite(const char *name) { return suite_create(name); }

static inline TCase *ops_tcase(Suite *s, const char *name)
{
    TCase *tc = tcase_create(name);
    tcase_add_checked_fixture(tc, env_setup, env_teardown);
    suite_add_tcase(s, tc);
    return tc;
}

#endif
