/* Dequantization of FP8 data with block scales: the checkpoint's 128x128 weight blocks
 * (W[r][c] = fp8[r][c] * scale[r/128][c/128], edge blocks partial) and 1x128 activation blocks. */
#ifndef DSRT_BLOCK_DEQUANT_H
#define DSRT_BLOCK_DEQUANT_H

#include <stdint.h>

#include "dsrt/dtype.h"
#include "dsrt/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* out[rows*cols] = fp8 (e4m3 or e5m2) x scale. `scales` is [ceil(rows/br)][ceil(cols/bc)] of
 * scale_dtype (DSRT_F32 or DSRT_UE8M0). Fails on a bad dtype or block size. */
dsrt_status dsrt_dequant_blocks(const uint8_t *data, dsrt_dtype dtype, int64_t rows, int64_t cols,
                                const void *scales, dsrt_dtype scale_dtype, int block_rows,
                                int block_cols, float *out);

/* One scale value of a scale grid of either dtype. */
float dsrt_scale_value(const void *scales, dsrt_dtype scale_dtype, int64_t index);

#ifdef __cplusplus
}
#endif
#endif
