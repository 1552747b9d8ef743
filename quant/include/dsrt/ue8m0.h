/* UE8M0: one unsigned byte e holding the value 2^(e-127), an exponent with no mantissa (e = 255 is
 * NaN). DeepSeek's FP8 scales and OCP microscaling (MX) blocks use it: multiplying by it is an
 * exponent add. */
#ifndef DSRT_UE8M0_H
#define DSRT_UE8M0_H

#include <stddef.h>
#include <stdint.h>

#include "dsrt/status.h"

#ifdef __cplusplus
extern "C" {
#endif

float dsrt_ue8m0_to_f32(uint8_t e); /* 2^(e-127); e = 0 gives 2^-127 (an f32 subnormal); 255 NaN */

/* Encodes s exactly. Fails (INVALID_ARGUMENT, naming the value) unless s is a positive power of two
 * in [2^-127, 2^127]. */
dsrt_status dsrt_f32_to_ue8m0(float s, uint8_t *e);

/* Converts n f32 scales. On the first scale that has no UE8M0 code (not a positive power of two in
 * range), fails with a message naming `what` (e.g. a tensor name), the index, the value and the
 * reason; *bad (if non-NULL) receives the index. out[] before that index is filled. */
dsrt_status dsrt_scales_to_ue8m0(const float *s, size_t n, uint8_t *out, const char *what, size_t *bad);

/* Smallest e with 2^(e-127) >= x, for positive finite x (clamped to [0, 254]). */
uint8_t dsrt_ue8m0_ceil(float x);

#ifdef __cplusplus
}
#endif
#endif
