/* The template backend's private types. Copy this folder to start a port (docs/porting.md): rename
 * "template" and the dsrt_template_ prefix to your backend's name, then replace the host-memory stand-ins
 * (buffers, streams, events) with your driver's objects and fill in the ops one by one.
 *
 * Everything here talks to dsrt through its installed public headers only, so the same sources build
 * inside the dsrt tree and as an out-of-tree plugin. */
#ifndef DSRT_TEMPLATE_BACKEND_H
#define DSRT_TEMPLATE_BACKEND_H

#include <stdbool.h>
#include <stddef.h>

#include "dsrt/backend_impl.h"
#include "dsrt/buffer.h"

/* Backend instance: created once by init, holds what enumeration found. */
typedef struct dsrt_template_backend {
    int device_count;
} dsrt_template_backend;

/* An opened device. A real port keeps its driver context, queues and compiled kernels here. */
typedef struct dsrt_template_device {
    int index;
    dsrt_device_caps caps;
} dsrt_template_device;

/* A buffer. Here: host memory standing in for device memory (never shown to the HAL as host-visible,
 * so the HAL and its callers treat it like a discrete device and use transfers). */
typedef struct dsrt_template_buffer {
    void *mem;
    size_t bytes;
} dsrt_template_buffer;

/* A stream. Work here runs at enqueue time; a real port records it into a driver queue and returns.
 * The first failure is kept and reported by the next sync (the HAL's sticky-error rule). */
typedef struct dsrt_template_stream {
    dsrt_template_device *dev;
    dsrt_status error;
} dsrt_template_stream;

/* An event: with synchronous streams every recorded event has completed. */
typedef struct dsrt_template_event {
    bool recorded;
} dsrt_template_event;

/* The op table (template_ops.c). */
bool dsrt_template_supports_op(dsrt_template_device *dev, const dsrt_op *op, char *why, size_t why_len);
dsrt_status dsrt_template_run_op(dsrt_template_stream *s, const dsrt_op *op);

/* Host address of the bytes of a tensor in one of this backend's buffers (for host-memory stand-ins). */
void *dsrt_template_tensor_ptr(const dsrt_tensor *t);

#endif
