/* A minimal out-of-tree backend for the registry tests (tests/unit/test_hal.c), built several times
 * with different definitions:
 *   DSRT_TEST_PLUGIN_NAME="x"   the registry name of a valid plugin (host memory, synchronous
 *                               streams, no ops, no host wrapping, no graphs)
 *   DSRT_TEST_PLUGIN_BAD_ABI    the vtable claims another ABI version
 *   DSRT_TEST_PLUGIN_NO_ENTRY   the entry symbol is not exported at all
 *   DSRT_TEST_PLUGIN_NO_ENQUEUE the vtable lacks the required enqueue_op entry
 * Its device is deliberately not host-visible and has a small allocation limit, so the tests can
 * reach the HAL paths a CPU device never takes (staged cross-device copies, refused wrapping). */
#include <stdlib.h>
#include <string.h>

#include "dsrt/backend_impl.h"

#ifndef DSRT_TEST_PLUGIN_NAME
#define DSRT_TEST_PLUGIN_NAME "testbad"
#endif

#define TP_MAX_ALLOC (64u << 10)

typedef struct {
    void *ptr;
    size_t size;
} tp_buffer;

static dsrt_status tp_init(void **bctx)
{
    *bctx = NULL;
    return DSRT_OK;
}
static void tp_deinit(void *bctx) { (void)bctx; }
static dsrt_status tp_device_count(void *bctx, int *count, char *why, size_t why_len)
{
    *count = 1;
    return DSRT_OK;
}
static dsrt_status tp_device_caps(void *bctx, int index, dsrt_device_caps *caps)
{
    memset(caps, 0, sizeof *caps);
    strcpy(caps->name, "dsrt test plugin device");
    strcpy(caps->vendor, "dsrt tests");
    caps->type = DSRT_DEVICE_OTHER;
    caps->memory_bytes = 1u << 20;
    caps->max_alloc_bytes = TP_MAX_ALLOC;
    caps->compute_units = 1;
    caps->numa_node = -1;
    return DSRT_OK;
}
static dsrt_status tp_device_open(void *bctx, int index, void **dctx)
{
    static int token; /* the device needs no state; any non-NULL context will do */
    *dctx = &token;
    return DSRT_OK;
}
static void tp_device_close(void *dctx) { (void)dctx; }
static dsrt_status tp_buffer_alloc(void *dctx, size_t bytes, void **handle, void **host_ptr)
{
    tp_buffer *b = calloc(1, sizeof *b);
    if (!b) return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "test plugin: out of memory");
    b->ptr = calloc(1, bytes);
    if (!b->ptr) {
        free(b);
        return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "test plugin: out of memory");
    }
    b->size = bytes;
    *handle = b;
    *host_ptr = NULL; /* pretend to be device memory */
    return DSRT_OK;
}
static void tp_buffer_free(void *dctx, void *handle)
{
    tp_buffer *b = handle;
    free(b->ptr);
    free(b);
}
static dsrt_status tp_stream_create(void *dctx, void **sctx)
{
    static int token;
    *sctx = &token;
    return DSRT_OK;
}
static void tp_stream_destroy(void *sctx) { (void)sctx; }
static dsrt_status tp_stream_sync(void *sctx) { return DSRT_OK; }
static dsrt_status tp_write(void *sctx, void *dst, size_t off, const void *src, size_t bytes)
{
    memcpy((char *)((tp_buffer *)dst)->ptr + off, src, bytes);
    return DSRT_OK;
}
static dsrt_status tp_read(void *sctx, void *src, size_t off, void *dst, size_t bytes)
{
    memcpy(dst, (char *)((tp_buffer *)src)->ptr + off, bytes);
    return DSRT_OK;
}
static dsrt_status tp_copy(void *sctx, void *src, size_t soff, void *dst, size_t doff, size_t bytes)
{
    memmove((char *)((tp_buffer *)dst)->ptr + doff, (char *)((tp_buffer *)src)->ptr + soff, bytes);
    return DSRT_OK;
}
static dsrt_status tp_fill(void *sctx, void *dst, size_t off, size_t bytes, const void *pattern, size_t psize)
{
    char *d = (char *)((tp_buffer *)dst)->ptr + off;
    for (size_t i = 0; i < bytes; i += psize) memcpy(d + i, pattern, psize);
    return DSRT_OK;
}
static dsrt_status tp_event_create(void *dctx, void **ectx)
{
    static int token;
    *ectx = &token;
    return DSRT_OK;
}
static void tp_event_destroy(void *ectx) { (void)ectx; }
static dsrt_status tp_event_record(void *ectx, void *sctx) { return DSRT_OK; }
static dsrt_status tp_stream_wait_event(void *sctx, void *ectx) { return DSRT_OK; }
static dsrt_status tp_event_sync(void *ectx) { return DSRT_OK; }
static dsrt_status tp_event_query(void *ectx, bool *done)
{
    *done = true;
    return DSRT_OK;
}
static bool tp_supports_op(void *dctx, const dsrt_op *op, char *why, size_t why_len)
{
    strncpy(why, "the test plugin runs no ops", why_len - 1);
    why[why_len - 1] = 0;
    return false;
}
static dsrt_status tp_enqueue_op(void *sctx, const dsrt_op *op)
{
    return dsrt_error(DSRT_CODE_UNIMPLEMENTED, "test plugin: no ops");
}

static const dsrt_backend_vtable tp_vtable = {
#ifdef DSRT_TEST_PLUGIN_BAD_ABI
    .abi_version = DSRT_BACKEND_ABI_VERSION + 1000u,
#else
    .abi_version = DSRT_BACKEND_ABI_VERSION,
#endif
    .struct_size = sizeof(dsrt_backend_vtable),
    .name = DSRT_TEST_PLUGIN_NAME,
    .init = tp_init,
    .deinit = tp_deinit,
    .device_count = tp_device_count,
    .device_caps = tp_device_caps,
    .device_open = tp_device_open,
    .device_close = tp_device_close,
    .buffer_alloc = tp_buffer_alloc,
    .buffer_free = tp_buffer_free,
    .stream_create = tp_stream_create,
    .stream_destroy = tp_stream_destroy,
    .stream_sync = tp_stream_sync,
    .write = tp_write,
    .read = tp_read,
    .copy = tp_copy,
    .fill = tp_fill,
    .event_create = tp_event_create,
    .event_destroy = tp_event_destroy,
    .event_record = tp_event_record,
    .stream_wait_event = tp_stream_wait_event,
    .event_sync = tp_event_sync,
    .event_query = tp_event_query,
    .supports_op = tp_supports_op,
#ifndef DSRT_TEST_PLUGIN_NO_ENQUEUE
    .enqueue_op = tp_enqueue_op,
#endif
};

#ifdef DSRT_TEST_PLUGIN_NO_ENQUEUE
/* Keeps the unused function referenced so -Wunused-function stays quiet in this variant. */
void *dsrt_test_plugin_unused_enqueue(void) { return (void *)(size_t)&tp_enqueue_op; }
#endif

#ifdef DSRT_TEST_PLUGIN_NO_ENTRY
/* Exports something, just not the entry the registry looks for. */
const dsrt_backend_vtable *dsrt_backend_plugin_entry_misspelled(uint32_t host_abi_version)
{
    (void)host_abi_version;
    return &tp_vtable;
}
#else
const dsrt_backend_vtable *dsrt_backend_plugin_entry(uint32_t host_abi_version);
const dsrt_backend_vtable *dsrt_backend_plugin_entry(uint32_t host_abi_version)
{
    (void)host_abi_version;
    return &tp_vtable;
}
#endif
