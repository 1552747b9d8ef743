/* The backend interface: what a HAL implementation provides. Built-in backends and out-of-tree
 * plugins implement the same vtable; a plugin exports
 *
 *     const dsrt_backend_vtable *dsrt_backend_plugin_entry(uint32_t host_abi_version);
 *
 * and the registry refuses it unless vt->abi_version == DSRT_BACKEND_ABI_VERSION and
 * vt->struct_size >= sizeof(dsrt_backend_vtable) of the version it was built against.
 *
 * Contexts are the backend's own: `bctx` (backend instance), `dctx` (opened device), buffer handles,
 * `sctx` (stream), `ectx` (event), `gctx` (graph). The HAL validates every op and transfer before
 * calling in, keeps reference counts and turns cross-device work into host-staged copies, so a
 * backend only does its own device's work. Entries marked optional may be NULL. */
#ifndef DSRT_BACKEND_IMPL_H
#define DSRT_BACKEND_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dsrt/comm.h"
#include "dsrt/device.h"
#include "dsrt/ops.h"
#include "dsrt/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Bumped whenever dsrt_backend_vtable, dsrt_op, dsrt_tensor or dsrt_device_caps change layout. */
#define DSRT_BACKEND_ABI_VERSION 3u /* 2: dsrt_device_caps.concurrent_streams; 3: dsrt_op_params.by_position */
#define DSRT_BACKEND_PLUGIN_ENTRY "dsrt_backend_plugin_entry"

typedef struct dsrt_backend_vtable {
    uint32_t abi_version;  /* DSRT_BACKEND_ABI_VERSION */
    uint32_t struct_size;  /* sizeof(dsrt_backend_vtable) */
    const char *name;      /* registry name: lower case, no ':' */

    /* Backend lifetime. init may find no driver: it then succeeds, and device_count returns 0 with
     * a reason written to `why`. */
    dsrt_status (*init)(void **bctx);
    void (*deinit)(void *bctx);
    dsrt_status (*device_count)(void *bctx, int *count, char *why, size_t why_len);
    dsrt_status (*device_caps)(void *bctx, int index, dsrt_device_caps *caps);
    dsrt_status (*device_open)(void *bctx, int index, void **dctx);
    void (*device_close)(void *dctx);

    /* Memory. host_ptr receives the host address when the memory is host-visible, else NULL. */
    dsrt_status (*buffer_alloc)(void *dctx, size_t bytes, void **handle, void **host_ptr);
    void (*buffer_free)(void *dctx, void *handle);
    /* optional: zero-copy wrap of caller-owned host memory */
    dsrt_status (*buffer_wrap_host)(void *dctx, void *ptr, size_t bytes, void **handle);

    /* Streams (in order). Transfers and ops return once enqueued. */
    dsrt_status (*stream_create)(void *dctx, void **sctx);
    void (*stream_destroy)(void *sctx); /* after the HAL synced it */
    dsrt_status (*stream_sync)(void *sctx);
    dsrt_status (*write)(void *sctx, void *dst, size_t dst_off, const void *src, size_t bytes);
    dsrt_status (*read)(void *sctx, void *src, size_t src_off, void *dst, size_t bytes);
    dsrt_status (*copy)(void *sctx, void *src, size_t src_off, void *dst, size_t dst_off, size_t bytes);
    dsrt_status (*fill)(void *sctx, void *dst, size_t off, size_t bytes, const void *pattern,
                        size_t pattern_size);

    /* Events. */
    dsrt_status (*event_create)(void *dctx, void **ectx);
    void (*event_destroy)(void *ectx);
    dsrt_status (*event_record)(void *ectx, void *sctx);
    dsrt_status (*stream_wait_event)(void *sctx, void *ectx); /* same backend and device only */
    dsrt_status (*event_sync)(void *ectx);
    dsrt_status (*event_query)(void *ectx, bool *done);

    /* Ops. supports_op decides from kinds, dtypes, shapes and params (never data) and explains a
     * refusal in `why`; enqueue_op is only called for validated, supported ops. */
    bool (*supports_op)(void *dctx, const dsrt_op *op, char *why, size_t why_len);
    dsrt_status (*enqueue_op)(void *sctx, const dsrt_op *op);

    /* optional: graph capture and replay. */
    dsrt_status (*begin_capture)(void *sctx);
    dsrt_status (*end_capture)(void *sctx, void **gctx);
    dsrt_status (*graph_launch)(void *gctx, void *sctx);
    void (*graph_destroy)(void *gctx);
} dsrt_backend_vtable;

typedef const dsrt_backend_vtable *(*dsrt_backend_plugin_entry_fn)(uint32_t host_abi_version);

#ifdef __cplusplus
}
#endif
#endif
