/* Element access for CPU kernels: tensors live in host memory; values load as f32 and store with the
 * destination dtype's rounding. Rows are the innermost dimension (contiguous by validation). */
#ifndef DSRT_CPU_TENSOR_H
#define DSRT_CPU_TENSOR_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "dsrt/buffer.h"
#include "dsrt/fp8.h"
#include "dsrt/half.h"
#include "dsrt/tensor.h"
#include "dsrt/ue8m0.h"

static inline void *dsrt_cpu_base(const dsrt_tensor *t)
{
    return (char *)dsrt_buffer_host_ptr(t->buf) + t->offset;
}

static inline float dsrt_cpu_ld(const void *base, dsrt_dtype dt, int64_t i)
{
    switch (dt) {
    case DSRT_F32: return ((const float *)base)[i];
    case DSRT_BF16: return dsrt_bf16_to_f32(((const uint16_t *)base)[i]);
    case DSRT_F16: return dsrt_f16_to_f32(((const uint16_t *)base)[i]);
    case DSRT_E4M3: return dsrt_e4m3_values[((const uint8_t *)base)[i]];
    case DSRT_E5M2: return dsrt_e5m2_values[((const uint8_t *)base)[i]];
    case DSRT_UE8M0: return dsrt_ue8m0_to_f32(((const uint8_t *)base)[i]);
    case DSRT_I32: return (float)((const int32_t *)base)[i];
    case DSRT_I64: return (float)((const int64_t *)base)[i];
    case DSRT_U8: return (float)((const uint8_t *)base)[i];
    default: return NAN;
    }
}

static inline void dsrt_cpu_st(void *base, dsrt_dtype dt, int64_t i, float v)
{
    switch (dt) {
    case DSRT_F32: ((float *)base)[i] = v; break;
    case DSRT_BF16: ((uint16_t *)base)[i] = dsrt_f32_to_bf16(v); break;
    case DSRT_F16: ((uint16_t *)base)[i] = dsrt_f32_to_f16(v); break;
    case DSRT_E4M3: ((uint8_t *)base)[i] = dsrt_f32_to_e4m3(v); break;
    case DSRT_E5M2: ((uint8_t *)base)[i] = dsrt_f32_to_e5m2(v); break;
    default: break;
    }
}

/* The value an output of dtype dt holds for v (for rounding intermediate results). */
static inline float dsrt_cpu_round(dsrt_dtype dt, float v)
{
    switch (dt) {
    case DSRT_BF16: return dsrt_round_bf16(v);
    case DSRT_F16: return dsrt_f16_to_f32(dsrt_f32_to_f16(v));
    default: return v;
    }
}

/* Element offset of row r of t (rows: every index of the leading dims, in row-major order). */
static inline int64_t dsrt_cpu_row_offset(const dsrt_tensor *t, int64_t r)
{
    int64_t off = 0;
    for (int d = t->ndim - 2; d >= 0; d--) {
        off += (r % t->shape[d]) * t->stride[d];
        r /= t->shape[d];
    }
    return off;
}

static inline int64_t dsrt_cpu_rows(const dsrt_tensor *t)
{
    int64_t n = 1;
    for (int d = 0; d < t->ndim - 1; d++) n *= t->shape[d];
    return n;
}

/* Vectorizable row conversions (kernels/cpu/ops_basic.c). e4m3 decodes by moving its bits into an f32
 * and rescaling, exact for every finite code (the NaN code 0x7f/0xff decodes as +-480: weights never
 * hold it, and table-driven paths keep the exact NaN). */
void dsrt_cpu_bf16_to_f32(const uint16_t *in, int64_t n, float *out);
void dsrt_cpu_e4m3_to_f32(const uint8_t *in, int64_t n, float *out);
/* sum x[i] * e4m3(w[i]), and sum x[i] * bf16(w[i]) */
float dsrt_cpu_dot_e4m3(const float *x, const uint8_t *w, int64_t n);
float dsrt_cpu_dot_bf16(const float *x, const uint16_t *w, int64_t n);

static inline void dsrt_cpu_load_row(const dsrt_tensor *t, int64_t elem_off, int64_t n, float *out)
{
    const char *b = (const char *)dsrt_cpu_base(t);
    switch (t->dtype) {
    case DSRT_F32: memcpy(out, (const float *)b + elem_off, (size_t)n * sizeof(float)); return;
    case DSRT_BF16: dsrt_cpu_bf16_to_f32((const uint16_t *)b + elem_off, n, out); return;
    default:
        for (int64_t i = 0; i < n; i++) out[i] = dsrt_cpu_ld(b, t->dtype, elem_off + i);
    }
}

static inline void dsrt_cpu_store_row(const dsrt_tensor *t, int64_t elem_off, int64_t n, const float *in)
{
    char *b = (char *)dsrt_cpu_base(t);
    switch (t->dtype) {
    case DSRT_F32: memcpy((float *)b + elem_off, in, (size_t)n * sizeof(float)); return;
    case DSRT_BF16:
        for (int64_t i = 0; i < n; i++) ((uint16_t *)b)[elem_off + i] = dsrt_f32_to_bf16(in[i]);
        return;
    default:
        for (int64_t i = 0; i < n; i++) dsrt_cpu_st(b, t->dtype, elem_off + i, in[i]);
    }
}

static inline int32_t dsrt_cpu_i32(const dsrt_tensor *t, int64_t i)
{
    return ((const int32_t *)dsrt_cpu_base(t))[i];
}

/* Element offset of [i][j] in a rank-2 view, [i][j][k] in rank 3. */
static inline int64_t dsrt_cpu_at2(const dsrt_tensor *t, int64_t i, int64_t j) { return i * t->stride[0] + j * t->stride[1]; }
static inline int64_t dsrt_cpu_at3(const dsrt_tensor *t, int64_t i, int64_t j, int64_t k)
{
    return i * t->stride[0] + j * t->stride[1] + k * t->stride[2];
}

/* Scale of element (.., r, c) of a block-scaled tensor; `lead` is the index over dims before the last
 * two (0 for rank 2). */
static inline float dsrt_cpu_block_scale(const dsrt_tensor *t, int64_t lead, int64_t r, int64_t c)
{
    const dsrt_block_scale *s = &t->scale;
    const char *b = (const char *)dsrt_buffer_host_ptr(s->buf) + s->offset;
    int nd = t->ndim;
    int64_t idx = (r / s->block[0]) * (nd >= 2 ? s->stride[nd - 2] : 0) + (c / s->block[1]) * s->stride[nd - 1];
    if (nd == 3) idx += lead * s->stride[0];
    return s->dtype == DSRT_UE8M0 ? dsrt_ue8m0_to_f32(((const uint8_t *)b)[idx]) : ((const float *)b)[idx];
}

/* fp32 dot product with independent lanes, so the compiler can vectorize without reassociating. */
float dsrt_cpu_dot(const float *a, const float *b, int64_t n);
/* y[i] += a * x[i] */
void dsrt_cpu_axpy(float *y, float a, const float *x, int64_t n);

#endif
