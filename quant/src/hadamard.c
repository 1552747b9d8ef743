#include "dsrt/hadamard.h"

#include <math.h>

dsrt_status dsrt_hadamard_f32(float *x, int64_t n)
{
    if (n < 1 || (n & (n - 1)))
        return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "Hadamard size %lld is not a power of two", (long long)n);
    /* Butterflies in Sylvester order: stage h pairs (i, i+h) inside blocks of 2h. */
    for (int64_t h = 1; h < n; h *= 2)
        for (int64_t i = 0; i < n; i += 2 * h)
            for (int64_t j = i; j < i + h; j++) {
                float a = x[j], b = x[j + h];
                x[j] = a + b;
                x[j + h] = a - b;
            }
    float s = 1.0f / sqrtf((float)n);
    for (int64_t i = 0; i < n; i++) x[i] *= s;
    return DSRT_OK;
}
