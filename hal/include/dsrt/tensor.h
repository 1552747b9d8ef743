/* Tensors: typed, strided views of a buffer, with an optional block-scale companion.
 *
 * A tensor is a small value (copy it freely); it does not own its buffer. Shapes are row-major with up
 * to 4 dims; strides count elements. Scaled FP8 data carries its scales beside it: one scale per
 * block of `block[0]` rows x `block[1]` columns over the last two dims (128x128 for weights, 1x128
 * for activations), stored as UE8M0 bytes or f32 in a buffer of their own (or the same one). Blocks
 * at the edges may be partial. A stacked weight [E, N, K] has scales [E, ceil(N/br), ceil(K/bc)]. */
#ifndef DSRT_TENSOR_H
#define DSRT_TENSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dsrt/dtype.h"
#include "dsrt/handles.h"
#include "dsrt/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define DSRT_MAX_DIMS 4

typedef struct dsrt_block_scale {
    dsrt_buffer *buf;               /* NULL: the tensor has no scales */
    size_t offset;                  /* bytes */
    dsrt_dtype dtype;               /* DSRT_UE8M0 or DSRT_F32 */
    int32_t block[2];               /* rows, cols per block */
    int64_t stride[DSRT_MAX_DIMS];  /* elements, same rank as the data tensor */
} dsrt_block_scale;

typedef struct dsrt_tensor {
    dsrt_buffer *buf; /* NULL marks an absent optional operand */
    size_t offset;    /* bytes from the buffer start to element [0,0,...] */
    dsrt_dtype dtype;
    int ndim;
    int64_t shape[DSRT_MAX_DIMS];
    int64_t stride[DSRT_MAX_DIMS];
    dsrt_block_scale scale;
    const char *name; /* optional, for error messages (e.g. "layers.3.attn.q_b_proj") */
} dsrt_tensor;

/* A contiguous view of `buf` at byte `offset` with the given shape. Fails (OUT_OF_RANGE) when the
 * view does not fit in the buffer, (INVALID_ARGUMENT) for a bad dtype, rank or negative dim. */
dsrt_status dsrt_tensor_make(dsrt_buffer *buf, size_t offset, dsrt_dtype dtype, int ndim,
                             const int64_t *shape, dsrt_tensor *out);
/* The same with explicit strides (elements). */
dsrt_status dsrt_tensor_make_strided(dsrt_buffer *buf, size_t offset, dsrt_dtype dtype, int ndim,
                                     const int64_t *shape, const int64_t *stride, dsrt_tensor *out);
/* Attaches scales: `sbuf` at `soffset`, contiguous, shape derived from the tensor and the block. */
dsrt_status dsrt_tensor_set_scale(dsrt_tensor *t, dsrt_buffer *sbuf, size_t soffset, dsrt_dtype sdtype,
                                  int block_rows, int block_cols);

/* Sub-range [start, start+len) of dimension `dim` (scales follow only when the cut is block-aligned). */
dsrt_status dsrt_tensor_slice(const dsrt_tensor *t, int dim, int64_t start, int64_t len,
                              dsrt_tensor *out);
/* New shape with the same elements; the tensor must be contiguous. */
dsrt_status dsrt_tensor_reshape(const dsrt_tensor *t, int ndim, const int64_t *shape,
                                dsrt_tensor *out);

int64_t dsrt_tensor_numel(const dsrt_tensor *t);
size_t dsrt_tensor_nbytes(const dsrt_tensor *t); /* numel * element size (contiguous footprint) */
bool dsrt_tensor_is_contiguous(const dsrt_tensor *t);
bool dsrt_tensor_present(const dsrt_tensor *t);
/* Scale grid extent along the last two dims (rows, cols), 0 without scales. */
void dsrt_tensor_scale_grid(const dsrt_tensor *t, int64_t *rows, int64_t *cols);
/* Number of scale elements (product of the scale grid over all dims). */
int64_t dsrt_tensor_scale_numel(const dsrt_tensor *t);
/* "bf16[4,128]" into buf; returns buf. */
const char *dsrt_tensor_describe(const dsrt_tensor *t, char *buf, size_t len);

#ifdef __cplusplus
}
#endif
#endif
