/* Device memory. A buffer belongs to one device and keeps that device alive. */
#ifndef DSRT_BUFFER_H
#define DSRT_BUFFER_H

#include <stddef.h>

#include "dsrt/handles.h"
#include "dsrt/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Allocates `bytes` (> 0) of device memory. Fails with RESOURCE_EXHAUSTED naming the device, the size
 * and the device's limit when the request exceeds max_alloc_bytes or the allocation fails. Contents
 * are undefined. */
dsrt_status dsrt_buffer_alloc(dsrt_device *dev, size_t bytes, dsrt_buffer **out);

/* Wraps host memory the caller keeps alive (e.g. an mmap'd checkpoint) without copying, where the
 * device can address host memory (CPU backend, unified-memory devices). Returns UNIMPLEMENTED
 * otherwise: the caller then allocates and uploads. `readonly` buffers reject writes. */
dsrt_status dsrt_buffer_wrap_host(dsrt_device *dev, void *ptr, size_t bytes, int readonly,
                                  dsrt_buffer **out);

void dsrt_buffer_retain(dsrt_buffer *b);
void dsrt_buffer_release(dsrt_buffer *b);
size_t dsrt_buffer_size(const dsrt_buffer *b);
dsrt_device *dsrt_buffer_device(const dsrt_buffer *b);
int dsrt_buffer_readonly(const dsrt_buffer *b);
/* Host address of the contents where the device memory is host-visible; NULL otherwise. */
void *dsrt_buffer_host_ptr(const dsrt_buffer *b);
/* The backend's own handle (a pointer, a cl_mem, ...): for backend implementations. */
void *dsrt_buffer_native(const dsrt_buffer *b);

#ifdef __cplusplus
}
#endif
#endif
