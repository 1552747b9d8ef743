/* 16-bit float codecs, bit-exact: bfloat16 and IEEE binary16. Conversions from f32 round to nearest
 * even, keep infinities, and turn NaN into a quiet NaN of the same sign. */
#ifndef DSRT_HALF_H
#define DSRT_HALF_H

#include <stdint.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

static inline float dsrt_bf16_to_f32(uint16_t v)
{
    uint32_t u = (uint32_t)v << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline uint16_t dsrt_f32_to_bf16(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x0040u); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

/* f32 -> bf16 -> f32: the value an op's bf16 output holds. */
static inline float dsrt_round_bf16(float x) { return dsrt_bf16_to_f32(dsrt_f32_to_bf16(x)); }

float dsrt_f16_to_f32(uint16_t v);
uint16_t dsrt_f32_to_f16(float x);

#ifdef __cplusplus
}
#endif
#endif
