/* Element types a dsrt tensor can hold. */
#ifndef DSRT_DTYPE_H
#define DSRT_DTYPE_H

#include <stdbool.h>
#include <stddef.h>

#include "dsrt/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum dsrt_dtype {
    DSRT_F32 = 0,
    DSRT_BF16,
    DSRT_F16,
    DSRT_E4M3,  /* float8_e4m3fn: bias 7, max 448, no infinities */
    DSRT_E5M2,  /* float8_e5m2: bias 15, IEEE-like with infinities */
    DSRT_UE8M0, /* unsigned exponent byte e: value 2^(e-127); 0xFF is NaN */
    DSRT_I32,
    DSRT_I64,
    DSRT_U8,
    DSRT_DTYPE_COUNT
} dsrt_dtype;

size_t dsrt_dtype_size(dsrt_dtype t);          /* bytes per element; 0 for an invalid value */
const char *dsrt_dtype_name(dsrt_dtype t);     /* "f32", "bf16", ..., "invalid" */
bool dsrt_dtype_valid(dsrt_dtype t);
bool dsrt_dtype_is_float(dsrt_dtype t);        /* f32, bf16, f16, e4m3, e5m2 */
bool dsrt_dtype_is_fp8(dsrt_dtype t);          /* e4m3, e5m2 */
/* Parses "f32", "bf16", "f16", "e4m3", "e5m2", "ue8m0", "i32", "i64", "u8" and the safetensors
 * names ("F32", "BF16", "F16", "F8_E4M3", "F8_E5M2", "F8_E8M0", "I32", "I64", "U8"). */
dsrt_status dsrt_dtype_parse(const char *name, dsrt_dtype *out);

#ifdef __cplusplus
}
#endif
#endif
