/* The official activation quantization (see act_quant.h for the rule). */
#include "dsrt/act_quant.h"

#include <math.h>
#include <string.h>

#include "dsrt/fp8.h"

float dsrt_act_scale(float amax, bool pow2)
{
    if (!(amax >= DSRT_ACT_AMAX_FLOOR)) amax = DSRT_ACT_AMAX_FLOOR; /* also catches NaN */
    const float inv = 1.0f / DSRT_FP8_E4M3_MAX;                      /* fl(1/448) */
    float r = amax * inv;
    if (!pow2) return r;
    if (isinf(r)) return ldexpf(1.0f, 127);
    /* ceil(log2(r)) read off the f32 bits, as the official kernel does. */
    uint32_t bits;
    memcpy(&bits, &r, sizeof bits);
    int exp = (int)((bits >> 23) & 0xff) - 127 + ((bits & 0x7fffffu) != 0 ? 1 : 0);
    return ldexpf(1.0f, exp);
}

void dsrt_act_quant_row(const float *x, int64_t n, int block, bool pow2, uint8_t *q, float *scales)
{
    if (block < 1) block = 128;
    for (int64_t b0 = 0, bi = 0; b0 < n; b0 += block, bi++) {
        int64_t b1 = b0 + block < n ? b0 + block : n;
        float amax = 0;
        for (int64_t i = b0; i < b1; i++) {
            float a = fabsf(x[i]);
            if (a > amax) amax = a;
        }
        float s = dsrt_act_scale(amax, pow2);
        scales[bi] = s;
        for (int64_t i = b0; i < b1; i++) {
            float v = x[i] / s;
            v = v > DSRT_FP8_E4M3_MAX ? DSRT_FP8_E4M3_MAX : v < -DSRT_FP8_E4M3_MAX ? -DSRT_FP8_E4M3_MAX : v;
            q[i] = dsrt_f32_to_e4m3(v);
        }
    }
}
