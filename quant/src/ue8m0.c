#include "dsrt/ue8m0.h"

#include <math.h>

float dsrt_ue8m0_to_f32(uint8_t e)
{
    if (e == 0xff) return NAN;
    return ldexpf(1.0f, (int)e - 127);
}

/* Why s has no UE8M0 code (NULL when it has one); *e receives the code when it does. */
static const char *ue8m0_encode(float s, uint8_t *e)
{
    if (!(s > 0) || !isfinite(s)) return "not a positive finite number";
    int ex;
    if (frexpf(s, &ex) != 0.5f) return "not a power of two"; /* s = m * 2^ex, m in [0.5, 1) */
    int v = ex - 1 + 127;
    if (v < 0) return "below the UE8M0 range 2^-127..2^127"; /* f32 subnormals 2^-149..2^-128 */
    *e = (uint8_t)v; /* v <= 254: 2^127 is the largest finite power of two in f32 */
    return NULL;
}

dsrt_status dsrt_f32_to_ue8m0(float s, uint8_t *e)
{
    const char *why = ue8m0_encode(s, e);
    if (why) return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "UE8M0 scale %.9g (%a) is %s", (double)s, (double)s, why);
    return DSRT_OK;
}

dsrt_status dsrt_scales_to_ue8m0(const float *s, size_t n, uint8_t *out, const char *what, size_t *bad)
{
    for (size_t i = 0; i < n; i++) {
        const char *why = ue8m0_encode(s[i], &out[i]);
        if (why) {
            if (bad) *bad = i;
            return dsrt_error(DSRT_CODE_INVALID_ARGUMENT,
                              "%s: scale %zu of %zu is %.9g (%a): %s (UE8M0 scales must be 2^k)",
                              what ? what : "scales", i, n, (double)s[i], (double)s[i], why);
        }
    }
    return DSRT_OK;
}

uint8_t dsrt_ue8m0_ceil(float x)
{
    if (!(x > 0)) return 0; /* also NaN */
    if (isinf(x)) return 254;
    int ex;
    float m = frexpf(x, &ex); /* x = m * 2^ex; 2^(ex-1) <= x < 2^ex */
    int k = (m == 0.5f) ? ex - 1 : ex;
    int v = k + 127;
    return (uint8_t)(v < 0 ? 0 : v > 254 ? 254 : v);
}
