/* Buffers: device memory with a reference count; each buffer keeps its device open. */
#include <stdlib.h>

#include "hal_internal.h"

static dsrt_status dsrt_buffer_new(dsrt_device *dev, size_t bytes, dsrt_buffer **out)
{
    if (!dev || !out) return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "device or output is NULL");
    *out = NULL;
    if (bytes == 0)
        return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "buffer of 0 bytes requested on %s", dev->label);
    dsrt_buffer *b = calloc(1, sizeof *b);
    if (!b) return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "out of host memory for a buffer on %s", dev->label);
    b->dev = dev;
    b->size = bytes;
    atomic_init(&b->refs, 1);
    *out = b;
    return DSRT_OK;
}

dsrt_status dsrt_buffer_alloc(dsrt_device *dev, size_t bytes, dsrt_buffer **out)
{
    DSRT_TRY(dsrt_buffer_new(dev, bytes, out));
    dsrt_buffer *b = *out;
    uint64_t limit = dev->caps.max_alloc_bytes;
    dsrt_status st = DSRT_OK;
    if (limit && bytes > limit)
        st = dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED,
                        "allocation of %zu bytes on %s exceeds the device's largest allocation (%llu bytes)",
                        bytes, dev->label, (unsigned long long)limit);
    if (!st) st = dev->backend->vt->buffer_alloc(dev->dctx, bytes, &b->handle, &b->host_ptr);
    if (st) {
        free(b);
        *out = NULL;
        return st;
    }
    dsrt_device_retain(dev);
    return DSRT_OK;
}

dsrt_status dsrt_buffer_wrap_host(dsrt_device *dev, void *ptr, size_t bytes, int readonly, dsrt_buffer **out)
{
    if (dev && !dev->backend->vt->buffer_wrap_host) {
        if (out) *out = NULL;
        return dsrt_error(DSRT_CODE_UNIMPLEMENTED, "%s cannot address host memory directly", dev->label);
    }
    if (!ptr) return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "host pointer to wrap is NULL");
    DSRT_TRY(dsrt_buffer_new(dev, bytes, out));
    dsrt_buffer *b = *out;
    dsrt_status st = dev->backend->vt->buffer_wrap_host(dev->dctx, ptr, bytes, &b->handle);
    if (st) {
        free(b);
        *out = NULL;
        return st;
    }
    b->host_ptr = ptr;
    b->readonly = readonly != 0;
    b->wrapped = true;
    dsrt_device_retain(dev);
    return DSRT_OK;
}

void dsrt_buffer_retain(dsrt_buffer *b)
{
    if (b) atomic_fetch_add(&b->refs, 1);
}

void dsrt_buffer_release(dsrt_buffer *b)
{
    if (!b) return;
    if (atomic_fetch_sub(&b->refs, 1) != 1) return;
    dsrt_device *dev = b->dev;
    dev->backend->vt->buffer_free(dev->dctx, b->handle);
    free(b);
    dsrt_device_release(dev);
}

size_t dsrt_buffer_size(const dsrt_buffer *b) { return b ? b->size : 0; }
dsrt_device *dsrt_buffer_device(const dsrt_buffer *b) { return b ? b->dev : NULL; }
int dsrt_buffer_readonly(const dsrt_buffer *b) { return b ? b->readonly : 0; }
void *dsrt_buffer_host_ptr(const dsrt_buffer *b) { return b ? b->host_ptr : NULL; }
void *dsrt_buffer_native(const dsrt_buffer *b) { return b ? b->handle : NULL; }
