/* The CPU backend's private types: the device (thread pool, NUMA layout) and buffers. */
#ifndef DSRT_CPU_BACKEND_H
#define DSRT_CPU_BACKEND_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "dsrt/backend_impl.h"
#include "thread_pool.h"

typedef struct dsrt_cpu_device {
    dsrt_pool *pool;
    int threads;
    int numa_nodes;
    bool inline_streams; /* DSRT_CPU_SYNC=1: run work at enqueue time (debugging) */
} dsrt_cpu_device;

/* Shared by the HAL buffer and the queued transfers that touch it: the HAL handle may be released
 * while work on it is still queued (as cudaFree and clReleaseMemObject allow), so the last holder
 * frees the memory. */
typedef struct dsrt_cpu_buffer {
    void *ptr;
    size_t size;
    bool owned;       /* false for wrapped host memory */
    bool numa_alloc;  /* freed with numa_free */
    atomic_int refs;
} dsrt_cpu_buffer;

void dsrt_cpu_buffer_ref(dsrt_cpu_buffer *b);
void dsrt_cpu_buffer_unref(dsrt_cpu_buffer *b);

/* Runs one validated op on the pool (kernels/cpu). */
dsrt_status dsrt_cpu_run_op(dsrt_pool *pool, const dsrt_op *op);
bool dsrt_cpu_supports_op(const dsrt_op *op, char *why, size_t why_len);

/* Streams, events and graphs (cpu_stream.c). */
dsrt_status dsrt_cpu_stream_create(void *dctx, void **sctx);
void dsrt_cpu_stream_destroy(void *sctx);
dsrt_status dsrt_cpu_stream_sync(void *sctx);
dsrt_status dsrt_cpu_write(void *sctx, void *dst, size_t off, const void *src, size_t bytes);
dsrt_status dsrt_cpu_read(void *sctx, void *src, size_t off, void *dst, size_t bytes);
dsrt_status dsrt_cpu_copy(void *sctx, void *src, size_t soff, void *dst, size_t doff, size_t bytes);
dsrt_status dsrt_cpu_fill(void *sctx, void *dst, size_t off, size_t bytes, const void *pattern, size_t psize);
dsrt_status dsrt_cpu_event_create(void *dctx, void **ectx);
void dsrt_cpu_event_destroy(void *ectx);
dsrt_status dsrt_cpu_event_record(void *ectx, void *sctx);
dsrt_status dsrt_cpu_stream_wait_event(void *sctx, void *ectx);
dsrt_status dsrt_cpu_event_sync(void *ectx);
dsrt_status dsrt_cpu_event_query(void *ectx, bool *done);
dsrt_status dsrt_cpu_enqueue_op(void *sctx, const dsrt_op *op);
dsrt_status dsrt_cpu_begin_capture(void *sctx);
dsrt_status dsrt_cpu_end_capture(void *sctx, void **gctx);
dsrt_status dsrt_cpu_graph_launch(void *gctx, void *sctx);
void dsrt_cpu_graph_destroy(void *gctx);

#endif
