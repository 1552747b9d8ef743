#include "dsrt/ue8m0.h"

#include <math.h>
#include <string.h>

float dsrt_ue8m0_to_f32(uint8_t e)
{
    if (e == 0xff) return NAN;
    return ldexpf(1.0f, (int)e - 127);
}

dsrt_status dsrt_f32_to_ue8m0(float s, uint8_t *e)
{
    int ex;
    float m = frexpf(s, &ex); /* s = m * 2^ex, m in [0.5, 1) */
    if (!(s > 0) || !isfinite(s) || m != 0.5f)
        return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "scale %.9g is not a positive power of two", (double)s);
    int v = ex - 1 + 127;
    if (v < 0 || v > 254)
        return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "scale %.9g is outside the UE8M0 range 2^-127..2^127", (double)s);
    *e = (uint8_t)v;
    return DSRT_OK;
}

dsrt_status dsrt_scales_to_ue8m0(const float *s, size_t n, uint8_t *out, const char *what, size_t *bad)
{
    for (size_t i = 0; i < n; i++) {
        uint8_t e;
        dsrt_status st = dsrt_f32_to_ue8m0(s[i], &e);
        if (st) {
            if (bad) *bad = i;
            dsrt_status_free(st);
            return dsrt_error(DSRT_CODE_INVALID_ARGUMENT,
                              "%s: scale %zu is %.9g, not a power of two (UE8M0 scales must be 2^k)",
                              what ? what : "scales", i, (double)s[i]);
        }
        out[i] = e;
    }
    return DSRT_OK;
}

uint8_t dsrt_ue8m0_ceil(float x)
{
    if (!(x > 0) || isnan(x)) return 0;
    if (isinf(x)) return 254;
    int ex;
    float m = frexpf(x, &ex); /* x = m * 2^ex; 2^(ex-1) <= x < 2^ex */
    int k = (m == 0.5f) ? ex - 1 : ex;
    int v = k + 127;
    return (uint8_t)(v < 0 ? 0 : v > 254 ? 254 : v);
}
