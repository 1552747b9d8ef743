/* dsrt conform: operands of a case and the deterministic data that fills them. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "conform.h"
#include "dsrt/fp8.h"
#include "dsrt/half.h"
#include "dsrt/ue8m0.h"

/* splitmix64: small, good enough for test data, and the same on every platform. */
uint64_t cf_rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

double cf_rng_uniform(uint64_t *s) { return (double)(cf_rng_next(s) >> 11) * (1.0 / 9007199254740992.0); }

double cf_rng_normal(uint64_t *s)
{
    /* Irwin-Hall: the sum of four 16-bit uniforms from one draw, centred and scaled to unit variance. A
     * bell within +-3.5 sigma, no transcendental functions: model-sized inputs (10^8 values) fill in
     * a fraction of a second, and the values are the same on every platform. Tails and special
     * values come from the cases that want them. */
    uint64_t z = cf_rng_next(s);
    double sum = (double)(z & 0xffff) + (double)((z >> 16) & 0xffff) + (double)((z >> 32) & 0xffff) + (double)(z >> 48);
    return (sum / 65536.0 - 2.0) * 1.7320508075688772;
}

int64_t cf_rng_int(uint64_t *s, int64_t n) { return n > 0 ? (int64_t)(cf_rng_next(s) % (uint64_t)n) : 0; }

int64_t cf_numel(const cf_operand *t)
{
    int64_t n = 1;
    for (int d = 0; d < t->ndim; d++) n *= t->shape[d];
    return n;
}

static uint8_t *cf_alloc_bytes(cf_case *c, size_t n, int fill)
{
    uint8_t *p = malloc(n ? n : 1);
    if (!p) {
        c->host_oom = true;
        return NULL;
    }
    memset(p, fill, n ? n : 1);
    return p;
}

static cf_operand *cf_declare(cf_case *c, cf_operand *t, dsrt_dtype dt, int ndim, const int64_t *shape, int fill)
{
    free(t->data);
    free(t->sdata);
    memset(t, 0, sizeof *t);
    t->present = true;
    t->dtype = dt;
    t->ndim = ndim;
    t->alias = -1;
    for (int d = 0; d < ndim; d++) t->shape[d] = shape[d];
    t->data = cf_alloc_bytes(c, (size_t)cf_numel(t) * dsrt_dtype_size(dt), fill);
    if (!t->data) t->present = false;
    return t;
}

cf_operand *cf_in(cf_case *c, int i, dsrt_dtype dt, int ndim, const int64_t *shape)
{
    return cf_declare(c, &c->in[i], dt, ndim, shape, 0);
}

/* NaN in every float format (f32, bf16, f16, e4m3, e5m2 all read 0xFF.. as NaN); an unlikely value
 * in integer ones. Poisoned outputs make elements an op forgot to write fail the comparison. */
static int cf_poison(dsrt_dtype dt) { return dsrt_dtype_is_float(dt) ? 0xFF : 0xC3; }

cf_operand *cf_out(cf_case *c, int o, dsrt_dtype dt, int ndim, const int64_t *shape)
{
    return cf_declare(c, &c->out[o], dt, ndim, shape, cf_poison(dt));
}

void cf_alias(cf_case *c, int o, int i)
{
    cf_operand *t = &c->out[o];
    free(t->data);
    free(t->sdata);
    *t = c->in[i];
    t->data = NULL; /* the content lives in the input */
    t->sdata = NULL;
    t->scaled = false;
    t->alias = i;
}

void cf_set(cf_operand *t, int64_t i, float v)
{
    if (!t->data) return;
    switch (t->dtype) {
    case DSRT_F32: memcpy(t->data + 4 * i, &v, 4); break;
    case DSRT_BF16: {
        uint16_t h = dsrt_f32_to_bf16(v);
        memcpy(t->data + 2 * i, &h, 2);
        break;
    }
    case DSRT_F16: {
        uint16_t h = dsrt_f32_to_f16(v);
        memcpy(t->data + 2 * i, &h, 2);
        break;
    }
    case DSRT_E4M3: t->data[i] = dsrt_f32_to_e4m3(v); break;
    case DSRT_E5M2: t->data[i] = dsrt_f32_to_e5m2(v); break;
    case DSRT_I32: {
        int32_t x = (int32_t)v;
        memcpy(t->data + 4 * i, &x, 4);
        break;
    }
    case DSRT_I64: {
        int64_t x = (int64_t)v;
        memcpy(t->data + 8 * i, &x, 8);
        break;
    }
    case DSRT_U8:
    case DSRT_UE8M0: t->data[i] = (uint8_t)v; break;
    default: break;
    }
}

float cf_get(const cf_operand *t, int64_t i)
{
    if (!t->data) return NAN;
    switch (t->dtype) {
    case DSRT_F32: {
        float v;
        memcpy(&v, t->data + 4 * i, 4);
        return v;
    }
    case DSRT_BF16: {
        uint16_t h;
        memcpy(&h, t->data + 2 * i, 2);
        return dsrt_bf16_to_f32(h);
    }
    case DSRT_F16: {
        uint16_t h;
        memcpy(&h, t->data + 2 * i, 2);
        return dsrt_f16_to_f32(h);
    }
    case DSRT_E4M3: return dsrt_e4m3_values[t->data[i]];
    case DSRT_E5M2: return dsrt_e5m2_values[t->data[i]];
    case DSRT_UE8M0: return dsrt_ue8m0_to_f32(t->data[i]);
    case DSRT_I32: return (float)cf_get_i32(t, i);
    case DSRT_I64: {
        int64_t x;
        memcpy(&x, t->data + 8 * i, 8);
        return (float)x;
    }
    case DSRT_U8: return (float)t->data[i];
    default: return NAN;
    }
}

void cf_set_i32(cf_operand *t, int64_t i, int32_t v)
{
    if (t->data) memcpy(t->data + 4 * i, &v, 4);
}

int32_t cf_get_i32(const cf_operand *t, int64_t i)
{
    int32_t v = 0;
    if (t->data) memcpy(&v, t->data + 4 * i, 4);
    return v;
}

void cf_fill_normal(cf_case *c, cf_operand *t, double mean, double std)
{
    int64_t n = t->data ? cf_numel(t) : 0;
    for (int64_t i = 0; i < n; i++) cf_set(t, i, (float)(mean + std * cf_rng_normal(&c->rng)));
}

void cf_fill_uniform(cf_case *c, cf_operand *t, double lo, double hi)
{
    int64_t n = t->data ? cf_numel(t) : 0;
    for (int64_t i = 0; i < n; i++) cf_set(t, i, (float)(lo + (hi - lo) * cf_rng_uniform(&c->rng)));
}

void cf_fill_e4m3(cf_case *c, cf_operand *t)
{
    /* Codes straight from random bits, eight per draw: every exponent and mantissa of the format appears
     * (a quantized block uses the whole range); the two NaN codes become +-448. */
    int64_t n = t->data ? cf_numel(t) : 0;
    for (int64_t i = 0; i < n; i += 8) {
        uint64_t z = cf_rng_next(&c->rng);
        for (int64_t j = i; j < i + 8 && j < n; j++, z >>= 8) {
            uint8_t v = (uint8_t)z;
            t->data[j] = (v & 0x7f) == 0x7f ? (uint8_t)(v - 1) : v;
        }
    }
}

static void cf_scale_grid(const cf_operand *t, int64_t *lead, int64_t *gr, int64_t *gc)
{
    int nd = t->ndim;
    int64_t rows = nd >= 2 ? t->shape[nd - 2] : 1, cols = t->shape[nd - 1];
    *gr = (rows + t->block[0] - 1) / t->block[0];
    *gc = (cols + t->block[1] - 1) / t->block[1];
    *lead = 1;
    for (int d = 0; d < nd - 2; d++) *lead *= t->shape[d];
}

int64_t cf_scale_numel(const cf_operand *t)
{
    if (!t->scaled) return 0;
    int64_t lead, gr, gc;
    cf_scale_grid(t, &lead, &gr, &gc);
    return lead * gr * gc;
}

float cf_scale_at(const cf_operand *t, int64_t lead, int64_t r, int64_t col)
{
    int64_t l, gr, gc;
    cf_scale_grid(t, &l, &gr, &gc);
    int64_t idx = lead * gr * gc + (r / t->block[0]) * gc + col / t->block[1];
    if (t->sdtype == DSRT_UE8M0) return dsrt_ue8m0_to_f32(t->sdata[idx]);
    float v;
    memcpy(&v, t->sdata + 4 * idx, 4);
    return v;
}

static void cf_attach(cf_case *c, cf_operand *t, dsrt_dtype sdt, int br, int bc, int fill)
{
    free(t->sdata);
    t->scaled = true;
    t->sdtype = sdt;
    t->block[0] = br;
    t->block[1] = bc;
    t->sdata = cf_alloc_bytes(c, (size_t)cf_scale_numel(t) * dsrt_dtype_size(sdt), fill);
    if (!t->sdata) t->scaled = false;
}

void cf_add_scales(cf_case *c, cf_operand *t, dsrt_dtype sdt, int br, int bc, int emin, int emax)
{
    cf_attach(c, t, sdt, br, bc, 0);
    if (!t->sdata) return;
    int64_t n = cf_scale_numel(t);
    for (int64_t i = 0; i < n; i++) {
        int e = emin + (int)cf_rng_int(&c->rng, emax - emin + 1);
        if (sdt == DSRT_UE8M0) {
            t->sdata[i] = (uint8_t)(e + 127);
        } else {
            float v = ldexpf(1.0f, e);
            memcpy(t->sdata + 4 * i, &v, 4);
        }
    }
}

void cf_out_scales(cf_case *c, cf_operand *t, dsrt_dtype sdt, int br, int bc)
{
    /* 0xFF is NaN both as ue8m0 and as an f32 pattern. */
    cf_attach(c, t, sdt, br, bc, 0xFF);
}

void cf_shuffle_i32(cf_case *c, int32_t *v, int64_t n)
{
    for (int64_t i = 0; i < n; i++) v[i] = (int32_t)i;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = cf_rng_int(&c->rng, i + 1);
        int32_t t = v[i];
        v[i] = v[j];
        v[j] = t;
    }
}

size_t cf_case_bytes(const cf_case *c)
{
    size_t n = 0;
    for (int i = 0; i < CF_NIN; i++)
        if (c->in[i].present) n += (size_t)cf_numel(&c->in[i]) * dsrt_dtype_size(c->in[i].dtype);
    for (int o = 0; o < CF_NOUT; o++)
        if (c->out[o].present && c->out[o].alias < 0)
            n += (size_t)cf_numel(&c->out[o]) * dsrt_dtype_size(c->out[o].dtype);
    return n;
}

void cf_case_free(cf_case *c)
{
    if (!c) return;
    for (int i = 0; i < CF_NIN; i++) {
        free(c->in[i].data);
        free(c->in[i].sdata);
    }
    for (int o = 0; o < CF_NOUT; o++) {
        free(c->out[o].data);
        free(c->out[o].sdata);
    }
    free(c);
}
