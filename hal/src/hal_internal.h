/* Private definitions of the HAL objects, shared by the files in hal/src (and white-box tests). */
#ifndef DSRT_HAL_INTERNAL_H
#define DSRT_HAL_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "dsrt/backend_impl.h"
#include "dsrt/buffer.h"
#include "dsrt/device.h"
#include "dsrt/stream.h"

struct dsrt_backend {
    const dsrt_backend_vtable *vt;
    void *bctx;
    bool initialized;       /* init ran (successfully or not) */
    dsrt_status init_error; /* kept: reported by every later use */
    int device_count;
    char why[256];          /* why there are no devices */
    void *dl_handle;        /* plugin library, NULL when built in */
    char origin[256];       /* "built in" or the plugin path */
};

struct dsrt_device {
    dsrt_backend *backend;
    int index;
    void *dctx;
    atomic_int refs;
    dsrt_device_caps caps;
    char label[80];
};

struct dsrt_buffer {
    dsrt_device *dev;
    void *handle;
    void *host_ptr;
    size_t size;
    atomic_int refs;
    bool readonly;
    bool wrapped;
};

struct dsrt_stream {
    dsrt_device *dev;
    void *sctx;
    bool capturing;
};

struct dsrt_event {
    dsrt_device *dev;
    void *ectx;
    dsrt_stream *last_stream; /* stream of the last record, for cross-device waits */
    bool recorded;
};

struct dsrt_graph {
    dsrt_device *dev;
    void *gctx;
};

/* One past the last byte a strided view touches (offset itself for an empty view). False when that
 * does not fit in size_t: callers must treat such a view as not fitting any buffer. */
bool dsrt_view_end(size_t offset, size_t esize, int ndim, const int64_t *shape, const int64_t *stride, size_t *end);

/* Makes sure the backend's init ran; returns its failure, if any (a copy the caller owns). */
dsrt_status dsrt_backend_ensure_init(dsrt_backend *b);

#endif
