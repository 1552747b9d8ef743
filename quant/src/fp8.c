/* FP8 e4m3 / e5m2 codecs. Decoding is exact; encoding rounds to nearest even on the f32 bits. */
#include "dsrt/fp8.h"

#include <math.h>
#include <string.h>

static uint32_t f32_bits(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}

float dsrt_e4m3_to_f32(uint8_t v)
{
    int sign = v >> 7, exp = (v >> 3) & 0xf, man = v & 7;
    float mag;
    if (exp == 0xf && man == 7) return sign ? -NAN : NAN;
    if (exp == 0) mag = ldexpf((float)man, -9); /* subnormal: man/8 * 2^-6 */
    else mag = ldexpf((float)(8 + man), exp - 10); /* (1 + man/8) * 2^(exp-7) */
    return sign ? -mag : mag;
}

float dsrt_e5m2_to_f32(uint8_t v)
{
    int sign = v >> 7, exp = (v >> 2) & 0x1f, man = v & 3;
    float mag;
    if (exp == 0x1f) mag = man ? NAN : INFINITY;
    else if (exp == 0) mag = ldexpf((float)man, -16); /* man/4 * 2^-14 */
    else mag = ldexpf((float)(4 + man), exp - 17); /* (1 + man/4) * 2^(exp-15) */
    return sign ? -mag : mag;
}

/* Rounds |x| (finite, non-negative bits `a`) to a format with `mbits` mantissa bits, exponent bias
 * `bias`, returning the code magnitude (exponent << mbits | mantissa) before overflow handling. */
static uint32_t dsrt_round_to_minifloat(uint32_t a, int mbits, int bias)
{
    if ((a >> 23) == 0) return 0;             /* f32 zeros and subnormals are far below half the
                                                 smallest fp8 subnormal */
    int e = (int)(a >> 23) - 127;             /* unbiased exponent of x (x normal in f32) */
    uint32_t m = (a & 0x7fffffu) | 0x800000u; /* 24-bit significand */
    int emin = 1 - bias;                  /* smallest normal exponent of the target */
    int shift;                            /* bits of the 24-bit significand to drop */
    if (e < emin) shift = 23 - mbits + (emin - e); /* target subnormal: fixed quantum 2^(emin-mbits) */
    else shift = 23 - mbits;
    if (shift > 25) return 0; /* below a quarter of the quantum: rounds to zero */
    uint32_t kept = m >> shift;
    uint32_t rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (kept & 1))) kept++;
    /* kept is the significand in units of the quantum; rebuild the code. */
    if (e < emin) {
        /* subnormal code = kept (may have rounded up into the first normal: the encoding carries) */
        return kept;
    }
    int be = e + bias;
    if (kept >> (mbits + 1)) { /* rounding carried into the next binade */
        kept >>= 1;
        be++;
    }
    return ((uint32_t)be << mbits) | (kept & ((1u << mbits) - 1));
}

uint8_t dsrt_f32_to_e4m3(float x)
{
    uint32_t u = f32_bits(x), sign = (u >> 24) & 0x80, a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return (uint8_t)(sign | 0x7f);  /* NaN */
    /* >= 448 (and inf) saturate; below 448 rounding can reach 448 (0x7e) but never the NaN code. */
    if (a >= 0x43e00000u) return (uint8_t)(sign | 0x7e);
    return (uint8_t)(sign | dsrt_round_to_minifloat(a, 3, 7));
}

static uint8_t dsrt_e5m2_encode(float x, int saturate)
{
    uint32_t u = f32_bits(x), sign = (u >> 24) & 0x80, a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return (uint8_t)(sign | 0x7e); /* NaN */
    if (a == 0x7f800000u) return (uint8_t)(sign | (saturate ? 0x7b : 0x7c));
    uint32_t c = dsrt_round_to_minifloat(a, 2, 15);
    if (c >= 0x7c) c = saturate ? 0x7b : 0x7c; /* past 57344: infinity, or the largest finite */
    return (uint8_t)(sign | c);
}

uint8_t dsrt_f32_to_e5m2(float x) { return dsrt_e5m2_encode(x, 0); }
uint8_t dsrt_f32_to_e5m2_sat(float x) { return dsrt_e5m2_encode(x, 1); }
