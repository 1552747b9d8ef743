/* IEEE binary16 codec (bfloat16 is inline in half.h). */
#include "dsrt/half.h"

#include <math.h>

float dsrt_f16_to_f32(uint16_t v)
{
    int sign = v >> 15, exp = (v >> 10) & 0x1f, man = v & 0x3ff;
    float mag;
    if (exp == 0x1f && man) {
        /* NaN: keep sign and payload bits (as bf16 decoding does), so f16 -> f32 -> f16 only sets
         * the quiet bit instead of collapsing every NaN to one. */
        uint32_t u = ((uint32_t)sign << 31) | 0x7f800000u | ((uint32_t)man << 13);
        memcpy(&mag, &u, sizeof mag);
        return mag;
    }
    if (exp == 0x1f) mag = INFINITY;
    else if (exp == 0) mag = ldexpf((float)man, -24);
    else mag = ldexpf((float)(1024 + man), exp - 25);
    return sign ? -mag : mag;
}

uint16_t dsrt_f32_to_f16(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    uint32_t sign = (u >> 16) & 0x8000u, a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00u | ((a >> 13) & 0x3ffu)); /* quiet NaN */
    if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* rounds past 65504: infinity */
    int e = (int)(a >> 23) - 127;
    uint32_t m = (a & 0x7fffffu) | 0x800000u;
    if ((a >> 23) == 0) return (uint16_t)sign;
    int shift = e < -14 ? 13 + (-14 - e) : 13;
    if (shift > 25) return (uint16_t)sign;
    uint32_t kept = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (kept & 1))) kept++;
    if (e < -14) return (uint16_t)(sign | kept); /* subnormal, may carry into the first normal */
    uint32_t be = (uint32_t)(e + 15);
    if (kept >> 11) {
        kept >>= 1;
        be++;
    }
    return (uint16_t)(sign | (be << 10) | (kept & 0x3ffu));
}
