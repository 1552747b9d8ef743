/* Block dequantization: a table lookup per code times its block's scale (exact for UE8M0 scales
 * unless the product leaves the f32 normal range). */
#include "dsrt/block_dequant.h"

#include "dsrt/fp8.h"
#include "dsrt/ue8m0.h"

float dsrt_scale_value(const void *scales, dsrt_dtype scale_dtype, int64_t index)
{
    if (scale_dtype == DSRT_UE8M0) return dsrt_ue8m0_to_f32(((const uint8_t *)scales)[index]);
    return ((const float *)scales)[index];
}

dsrt_status dsrt_dequant_blocks(const uint8_t *data, dsrt_dtype dtype, int64_t rows, int64_t cols, const void *scales,
                                dsrt_dtype scale_dtype, int block_rows, int block_cols, float *out)
{
    if (dtype != DSRT_E4M3 && dtype != DSRT_E5M2)
        return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "block dequantization needs e4m3 or e5m2 data, not %s",
                          dsrt_dtype_name(dtype));
    if (scale_dtype != DSRT_F32 && scale_dtype != DSRT_UE8M0)
        return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "block scales must be f32 or ue8m0, not %s",
                          dsrt_dtype_name(scale_dtype));
    if (block_rows < 1 || block_cols < 1 || rows < 0 || cols < 0)
        return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "bad block %dx%d or shape %lldx%lld", block_rows, block_cols,
                          (long long)rows, (long long)cols);
    if (rows > 0 && cols > 0 && (!data || !scales || !out))
        return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "block dequantization of %lldx%lld values got a NULL %s",
                          (long long)rows, (long long)cols, !data ? "data" : !scales ? "scale grid" : "output");
    const float *table = dtype == DSRT_E4M3 ? dsrt_e4m3_values : dsrt_e5m2_values;
    int64_t scols = (cols + block_cols - 1) / block_cols;
    for (int64_t r = 0; r < rows; r++) {
        int64_t srow = (r / block_rows) * scols; /* the scale-grid row of this data row */
        for (int64_t c = 0; c < cols; c++)
            out[r * cols + c] = table[data[r * cols + c]] * dsrt_scale_value(scales, scale_dtype, srow + c / block_cols);
    }
    return DSRT_OK;
}
