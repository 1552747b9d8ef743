/* Tensor views: construction with bounds checks, slicing, reshaping, scale companions. */
#include <stdio.h>
#include <string.h>

#include "hal_internal.h"
#include "dsrt/tensor.h"

static dsrt_status dsrt_check_shape(dsrt_dtype dtype, int ndim, const int64_t *shape)
{
    if (!dsrt_dtype_valid(dtype)) return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "invalid dtype value %d", (int)dtype);
    if (ndim < 1 || ndim > DSRT_MAX_DIMS)
        return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "tensor rank %d is outside 1..%d", ndim, DSRT_MAX_DIMS);
    if (!shape) return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "shape is NULL");
    for (int i = 0; i < ndim; i++)
        if (shape[i] < 0)
            return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "dimension %d is negative (%lld)", i, (long long)shape[i]);
    return DSRT_OK;
}

/* Shapes and strides come from callers (and from checkpoint headers): every product and sum is checked,
 * because a wrapped-around extent would make a huge view look as if it fitted a small buffer. */
bool dsrt_view_end(size_t offset, size_t esize, int ndim, const int64_t *shape, const int64_t *stride, size_t *end)
{
    size_t last = 0;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] <= 0) {
            *end = offset;
            return true;
        }
    }
    for (int i = 0; i < ndim; i++) {
        size_t n = (size_t)(shape[i] - 1), st = (size_t)stride[i];
        if (stride[i] < 0 || (st && n > (SIZE_MAX - last) / st)) return false;
        last += n * st;
    }
    if (last == SIZE_MAX || (esize && last + 1 > SIZE_MAX / esize)) return false;
    size_t bytes = (last + 1) * esize;
    if (offset > SIZE_MAX - bytes) return false;
    *end = offset + bytes;
    return true;
}

static dsrt_status dsrt_check_fits(const dsrt_buffer *buf, size_t offset, dsrt_dtype dtype, int ndim,
                                   const int64_t *shape, const int64_t *stride, const char *what)
{
    if (!buf) return DSRT_OK;
    size_t end = SIZE_MAX;
    bool ok = dsrt_view_end(offset, dsrt_dtype_size(dtype), ndim, shape, stride, &end);
    if (!ok || offset > buf->size || end > buf->size) {
        char d[96];
        dsrt_tensor t = {.buf = (dsrt_buffer *)buf, .dtype = dtype, .ndim = ndim};
        memcpy(t.shape, shape, sizeof(int64_t) * (size_t)ndim);
        if (!ok)
            return dsrt_error(DSRT_CODE_OUT_OF_RANGE,
                              "%s %s at byte offset %zu spans more bytes than memory can address (the buffer on "
                              "%s has %zu)", what, dsrt_tensor_describe(&t, d, sizeof d), offset, buf->dev->label,
                              buf->size);
        return dsrt_error(DSRT_CODE_OUT_OF_RANGE,
                          "%s %s at byte offset %zu needs bytes up to %zu but the buffer on %s has %zu", what,
                          dsrt_tensor_describe(&t, d, sizeof d), offset, end, buf->dev->label, buf->size);
    }
    return DSRT_OK;
}

dsrt_status dsrt_tensor_make_strided(dsrt_buffer *buf, size_t offset, dsrt_dtype dtype, int ndim, const int64_t *shape,
                                     const int64_t *stride, dsrt_tensor *out)
{
    if (!out) return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "output tensor is NULL");
    DSRT_TRY(dsrt_check_shape(dtype, ndim, shape));
    if (!stride) return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "strides are NULL");
    for (int i = 0; i < ndim; i++)
        if (stride[i] < 0)
            return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "stride %d is negative (%lld)", i, (long long)stride[i]);
    DSRT_TRY(dsrt_check_fits(buf, offset, dtype, ndim, shape, stride, "view"));
    memset(out, 0, sizeof *out);
    out->buf = buf;
    out->offset = offset;
    out->dtype = dtype;
    out->ndim = ndim;
    for (int i = 0; i < ndim; i++) {
        out->shape[i] = shape[i];
        out->stride[i] = stride[i];
    }
    return DSRT_OK;
}

dsrt_status dsrt_tensor_make(dsrt_buffer *buf, size_t offset, dsrt_dtype dtype, int ndim, const int64_t *shape,
                             dsrt_tensor *out)
{
    DSRT_TRY(dsrt_check_shape(dtype, ndim, shape));
    int64_t stride[DSRT_MAX_DIMS];
    int64_t s = 1;
    for (int i = ndim - 1; i >= 0; i--) {
        stride[i] = s;
        int64_t n = shape[i] ? shape[i] : 1;
        if (s > INT64_MAX / n) {
            char d[96];
            dsrt_tensor t = {.buf = buf, .dtype = dtype, .ndim = ndim};
            memcpy(t.shape, shape, sizeof(int64_t) * (size_t)ndim);
            return dsrt_error(DSRT_CODE_OUT_OF_RANGE, "view %s has more elements than memory can address",
                              dsrt_tensor_describe(&t, d, sizeof d));
        }
        s *= n;
    }
    return dsrt_tensor_make_strided(buf, offset, dtype, ndim, shape, stride, out);
}

void dsrt_tensor_scale_grid(const dsrt_tensor *t, int64_t *rows, int64_t *cols)
{
    *rows = *cols = 0;
    if (!t->scale.buf || t->scale.block[0] <= 0 || t->scale.block[1] <= 0) return;
    int64_t r = t->ndim >= 2 ? t->shape[t->ndim - 2] : 1, c = t->shape[t->ndim - 1];
    *rows = (r + t->scale.block[0] - 1) / t->scale.block[0];
    *cols = (c + t->scale.block[1] - 1) / t->scale.block[1];
}

int64_t dsrt_tensor_scale_numel(const dsrt_tensor *t)
{
    int64_t r, c;
    dsrt_tensor_scale_grid(t, &r, &c);
    int64_t n = r * c;
    for (int i = 0; i < t->ndim - 2; i++) n *= t->shape[i];
    return n;
}

dsrt_status dsrt_tensor_set_scale(dsrt_tensor *t, dsrt_buffer *sbuf, size_t soffset, dsrt_dtype sdtype, int block_rows,
                                  int block_cols)
{
    if (!t) return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "tensor is NULL");
    if (sdtype != DSRT_UE8M0 && sdtype != DSRT_F32)
        return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "block scales must be ue8m0 or f32, not %s", dsrt_dtype_name(sdtype));
    if (block_rows < 1 || block_cols < 1)
        return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "scale block %dx%d must be positive", block_rows, block_cols);
    if (!sbuf) return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "scale buffer is NULL");
    dsrt_block_scale sc = {.buf = sbuf, .offset = soffset, .dtype = sdtype, .block = {block_rows, block_cols}};
    dsrt_tensor tmp = *t;
    tmp.scale = sc;
    int64_t r, c;
    dsrt_tensor_scale_grid(&tmp, &r, &c);
    int64_t shape[DSRT_MAX_DIMS];
    int nd = t->ndim;
    for (int i = 0; i < nd; i++) shape[i] = t->shape[i];
    if (nd >= 2) shape[nd - 2] = r;
    shape[nd - 1] = c;
    int64_t s = 1;
    for (int i = nd - 1; i >= 0; i--) {
        sc.stride[i] = s;
        int64_t n = shape[i] ? shape[i] : 1;
        if (s > INT64_MAX / n)
            return dsrt_error(DSRT_CODE_OUT_OF_RANGE, "scale grid of a tensor with more elements than memory can address");
        s *= n;
    }
    DSRT_TRY(dsrt_check_fits(sbuf, soffset, sdtype, nd, shape, sc.stride, "scale grid"));
    t->scale = sc;
    return DSRT_OK;
}

dsrt_status dsrt_tensor_slice(const dsrt_tensor *t, int dim, int64_t start, int64_t len, dsrt_tensor *out)
{
    if (!t || !out) return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "tensor or output is NULL");
    if (dim < 0 || dim >= t->ndim)
        return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "slice dimension %d of a rank-%d tensor", dim, t->ndim);
    if (start < 0 || len < 0 || start + len > t->shape[dim])
        return dsrt_error(DSRT_CODE_OUT_OF_RANGE, "slice [%lld, %lld) of dimension %d (size %lld)%s%s", (long long)start,
                          (long long)(start + len), dim, (long long)t->shape[dim], t->name ? " of " : "",
                          t->name ? t->name : "");
    dsrt_tensor r = *t;
    r.offset += (size_t)start * (size_t)t->stride[dim] * dsrt_dtype_size(t->dtype);
    r.shape[dim] = len;
    if (t->scale.buf) {
        int rowdim = t->ndim - 2, coldim = t->ndim - 1;
        int64_t blk = dim == coldim ? t->scale.block[1] : dim == rowdim ? t->scale.block[0] : 1;
        if (start % blk != 0) {
            r.scale.buf = NULL; /* the cut splits a block: the view cannot carry the scales */
        } else {
            r.scale.offset += (size_t)(start / blk) * (size_t)t->scale.stride[dim] * dsrt_dtype_size(t->scale.dtype);
        }
    }
    *out = r;
    return DSRT_OK;
}

bool dsrt_tensor_is_contiguous(const dsrt_tensor *t)
{
    int64_t s = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        if (t->shape[i] != 1 && t->stride[i] != s) return false;
        s *= t->shape[i];
    }
    return true;
}

dsrt_status dsrt_tensor_reshape(const dsrt_tensor *t, int ndim, const int64_t *shape, dsrt_tensor *out)
{
    if (!t || !out) return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "tensor or output is NULL");
    DSRT_TRY(dsrt_check_shape(t->dtype, ndim, shape));
    if (!dsrt_tensor_is_contiguous(t))
        return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "reshape of a non-contiguous tensor%s%s", t->name ? " " : "",
                          t->name ? t->name : "");
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    if (n != dsrt_tensor_numel(t)) {
        char d[96];
        return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "reshape of %s to %lld elements", dsrt_tensor_describe(t, d, sizeof d),
                          (long long)n);
    }
    dsrt_tensor r;
    DSRT_TRY(dsrt_tensor_make(t->buf, t->offset, t->dtype, ndim, shape, &r));
    r.name = t->name;
    *out = r; /* scale companions do not survive a reshape */
    return DSRT_OK;
}

int64_t dsrt_tensor_numel(const dsrt_tensor *t)
{
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

size_t dsrt_tensor_nbytes(const dsrt_tensor *t) { return (size_t)dsrt_tensor_numel(t) * dsrt_dtype_size(t->dtype); }

bool dsrt_tensor_present(const dsrt_tensor *t) { return t && t->buf != NULL; }

const char *dsrt_tensor_describe(const dsrt_tensor *t, char *buf, size_t len)
{
    int n = snprintf(buf, len, "%s%s%s[", t->name ? t->name : "", t->name ? " " : "", dsrt_dtype_name(t->dtype));
    for (int i = 0; i < t->ndim && n > 0 && (size_t)n < len; i++)
        n += snprintf(buf + n, len - (size_t)n, "%s%lld", i ? "," : "", (long long)t->shape[i]);
    if (n > 0 && (size_t)n < len) snprintf(buf + n, len - (size_t)n, "]");
    return buf;
}
