#include "dsrt/dtype.h"

#include <string.h>

static const struct {
    const char *name;
    const char *st_name; /* safetensors */
    size_t size;
} dsrt_dtypes[DSRT_DTYPE_COUNT] = {
    [DSRT_F32] = {"f32", "F32", 4},     [DSRT_BF16] = {"bf16", "BF16", 2},
    [DSRT_F16] = {"f16", "F16", 2},     [DSRT_E4M3] = {"e4m3", "F8_E4M3", 1},
    [DSRT_E5M2] = {"e5m2", "F8_E5M2", 1}, [DSRT_UE8M0] = {"ue8m0", "F8_E8M0", 1},
    [DSRT_I32] = {"i32", "I32", 4},     [DSRT_I64] = {"i64", "I64", 8},
    [DSRT_U8] = {"u8", "U8", 1},
};

bool dsrt_dtype_valid(dsrt_dtype t) { return (unsigned)t < DSRT_DTYPE_COUNT; }

size_t dsrt_dtype_size(dsrt_dtype t) { return dsrt_dtype_valid(t) ? dsrt_dtypes[t].size : 0; }

const char *dsrt_dtype_name(dsrt_dtype t) { return dsrt_dtype_valid(t) ? dsrt_dtypes[t].name : "invalid"; }

bool dsrt_dtype_is_fp8(dsrt_dtype t) { return t == DSRT_E4M3 || t == DSRT_E5M2; }

bool dsrt_dtype_is_float(dsrt_dtype t)
{
    return t == DSRT_F32 || t == DSRT_BF16 || t == DSRT_F16 || dsrt_dtype_is_fp8(t);
}

dsrt_status dsrt_dtype_parse(const char *name, dsrt_dtype *out)
{
    if (!name || !out) return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "dtype name is NULL");
    for (int i = 0; i < DSRT_DTYPE_COUNT; i++) {
        if (strcmp(name, dsrt_dtypes[i].name) == 0 || strcmp(name, dsrt_dtypes[i].st_name) == 0) {
            *out = (dsrt_dtype)i;
            return DSRT_OK;
        }
    }
    return dsrt_error(DSRT_CODE_INVALID_ARGUMENT,
                      "unknown dtype '%s' (expected one of f32, bf16, f16, e4m3, e5m2, ue8m0, i32, i64, u8 "
                      "or a safetensors name such as F8_E4M3)", name);
}
