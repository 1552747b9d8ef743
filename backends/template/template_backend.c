/* The template backend: every entry of dsrt_backend_vtable, in the order of backend_impl.h, for one fake
 * device whose memory is host memory. Transfers, fills, streams and events work, so the HAL, `dsrt
 * devices` and `dsrt conform` run against it; every op answers UNIMPLEMENTED with a pointer to
 * docs/porting.md (template_ops.c). In the spirit of IREE's null driver: copy, rename, fill in.
 *
 * Built two ways from these same files (CMakeLists.txt beside this file):
 *  - out of tree, against an installed dsrt: a plugin, libdsrt-template.so, loaded with
 *    `--backend-plugin FILE` or DSRT_BACKEND_PATH; it exports dsrt_backend_plugin_entry;
 *  - in tree with -DDSRT_TEMPLATE_BACKEND=ON: compiled into libdsrt (DSRT_TEMPLATE_BUILTIN) and
 *    registered as "template". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "template_backend.h"

/* ---- devices: capabilities are data ----
 * A port fills this from its driver's queries (memory, compute units, native number formats...).
 * Placement, kernel selection and conformance skips read these fields; nothing reads vendor names. */
static const dsrt_device_caps dsrt_template_device_table[] = {
    {
        .name = "template device (host memory stand-in)",
        .vendor = "dsrt template",
        .driver = "template 0.1",
        .type = DSRT_DEVICE_ACCELERATOR,
        .memory_bytes = 4ull << 30,
        .max_alloc_bytes = 1ull << 30,
        .local_mem_bytes = 64u << 10,
        .compute_units = 1,
        .max_work_group = 256,
        .subgroup_size = 32,
        .numa_node = -1,
        .numa_nodes = 1,
        .native_fp8 = false,
        .native_bf16 = false,
        .native_fp16 = false,
        .unified_memory = false,
        .peak_mem_gbs = 0,     /* unknown: `dsrt bench` then reports no roofline fraction */
        .peak_tflops_bf16 = 0,
        .peak_tflops_fp8 = 0,
    },
};
#define DSRT_TEMPLATE_NDEV ((int)(sizeof dsrt_template_device_table / sizeof dsrt_template_device_table[0]))

/* ---- backend lifetime ---- */

static dsrt_status dsrt_template_init(void **bctx)
{
    /* A port loads its driver here. A missing driver is not an error: init succeeds and device_count
     * returns 0 with the reason, so `dsrt devices` can say why. */
    dsrt_template_backend *b = calloc(1, sizeof *b);
    if (!b) return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "template backend: out of memory starting up");
    b->device_count = DSRT_TEMPLATE_NDEV;
    *bctx = b;
    return DSRT_OK;
}

static void dsrt_template_deinit(void *bctx) { free(bctx); }

static dsrt_status dsrt_template_device_count(void *bctx, int *count, char *why, size_t why_len)
{
    dsrt_template_backend *b = bctx;
    *count = b->device_count;
    if (*count == 0) snprintf(why, why_len, "template backend: no device (a port says which driver is missing)");
    return DSRT_OK;
}

static dsrt_status dsrt_template_device_caps(void *bctx, int index, dsrt_device_caps *caps)
{
    if (index < 0 || index >= DSRT_TEMPLATE_NDEV)
        return dsrt_error(DSRT_CODE_OUT_OF_RANGE, "template backend: no device %d", index);
    *caps = dsrt_template_device_table[index];
    return DSRT_OK;
}

static dsrt_status dsrt_template_device_open(void *bctx, int index, void **dctx)
{
    dsrt_template_device *d = calloc(1, sizeof *d);
    if (!d) return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "template backend: out of memory opening device %d", index);
    d->index = index;
    d->caps = dsrt_template_device_table[index];
    *dctx = d;
    return DSRT_OK;
}

static void dsrt_template_device_close(void *dctx) { free(dctx); }

/* ---- memory ---- */

static dsrt_status dsrt_template_buffer_alloc(void *dctx, size_t bytes, void **handle, void **host_ptr)
{
    dsrt_template_buffer *b = calloc(1, sizeof *b);
    if (!b) return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "template backend: out of memory for a buffer record");
    b->mem = malloc(bytes);
    if (!b->mem) {
        free(b);
        return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "template backend: cannot allocate %zu bytes", bytes);
    }
    b->bytes = bytes;
    *handle = b;
    *host_ptr = NULL; /* like a discrete device: the host reaches it through transfers only */
    return DSRT_OK;
}

static void dsrt_template_buffer_free(void *dctx, void *handle)
{
    dsrt_template_buffer *b = handle;
    if (!b) return;
    free(b->mem);
    free(b);
}

static dsrt_status dsrt_template_buffer_wrap_host(void *dctx, void *ptr, size_t bytes, void **handle)
{
    /* Devices that can address host memory (unified memory, host-pinned mappings) wrap it here and the
     * core loads checkpoints without a copy. This one says no; the HAL's callers then upload. */
    return dsrt_error(DSRT_CODE_UNIMPLEMENTED, "template backend cannot address host memory directly");
}

void *dsrt_template_tensor_ptr(const dsrt_tensor *t)
{
    dsrt_template_buffer *b = dsrt_buffer_native(t->buf);
    return (char *)b->mem + t->offset;
}

/* ---- streams ----
 * The HAL has checked ranges, devices and read-only flags before any of these is called. */

static dsrt_status dsrt_template_stream_create(void *dctx, void **sctx)
{
    dsrt_template_stream *s = calloc(1, sizeof *s);
    if (!s) return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "template backend: out of memory for a stream");
    s->dev = dctx;
    *sctx = s;
    return DSRT_OK;
}

static void dsrt_template_stream_destroy(void *sctx)
{
    dsrt_template_stream *s = sctx;
    dsrt_status_free(s->error);
    free(s);
}

static dsrt_status dsrt_template_stream_sync(void *sctx)
{
    /* A port waits for its queue here and returns the first failure since the last sync. */
    dsrt_template_stream *s = sctx;
    dsrt_status e = s->error;
    s->error = DSRT_OK;
    return e;
}

static dsrt_status dsrt_template_write(void *sctx, void *dst, size_t dst_off, const void *src, size_t bytes)
{
    memcpy((char *)((dsrt_template_buffer *)dst)->mem + dst_off, src, bytes);
    return DSRT_OK;
}

static dsrt_status dsrt_template_read(void *sctx, void *src, size_t src_off, void *dst, size_t bytes)
{
    memcpy(dst, (const char *)((dsrt_template_buffer *)src)->mem + src_off, bytes);
    return DSRT_OK;
}

static dsrt_status dsrt_template_copy(void *sctx, void *src, size_t src_off, void *dst, size_t dst_off, size_t bytes)
{
    memmove((char *)((dsrt_template_buffer *)dst)->mem + dst_off,
            (const char *)((dsrt_template_buffer *)src)->mem + src_off, bytes);
    return DSRT_OK;
}

static dsrt_status dsrt_template_fill(void *sctx, void *dst, size_t off, size_t bytes, const void *pattern,
                                      size_t pattern_size)
{
    char *d = (char *)((dsrt_template_buffer *)dst)->mem + off;
    for (size_t i = 0; i < bytes; i += pattern_size) memcpy(d + i, pattern, pattern_size);
    return DSRT_OK;
}

/* ---- events ---- */

static dsrt_status dsrt_template_event_create(void *dctx, void **ectx)
{
    dsrt_template_event *e = calloc(1, sizeof *e);
    if (!e) return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "template backend: out of memory for an event");
    *ectx = e;
    return DSRT_OK;
}

static void dsrt_template_event_destroy(void *ectx) { free(ectx); }

static dsrt_status dsrt_template_event_record(void *ectx, void *sctx)
{
    ((dsrt_template_event *)ectx)->recorded = true; /* synchronous streams: done when recorded */
    return DSRT_OK;
}

static dsrt_status dsrt_template_stream_wait_event(void *sctx, void *ectx) { return DSRT_OK; }
static dsrt_status dsrt_template_event_sync(void *ectx) { return DSRT_OK; }

static dsrt_status dsrt_template_event_query(void *ectx, bool *done)
{
    *done = true;
    return DSRT_OK;
}

/* ---- ops ---- */

static bool dsrt_template_supports(void *dctx, const dsrt_op *op, char *why, size_t why_len)
{
    return dsrt_template_supports_op(dctx, op, why, why_len);
}

static dsrt_status dsrt_template_enqueue_op(void *sctx, const dsrt_op *op)
{
    dsrt_template_stream *s = sctx;
    if (s->error) return DSRT_OK; /* after a failure, work is skipped until the sync reports it */
    dsrt_status st = dsrt_template_run_op(s, op);
    /* Refusals are returned at once; a failure while running would be kept for the sync. */
    return st;
}

/* ---- graphs (optional): a port with command-buffer replay implements these ---- */

static dsrt_status dsrt_template_begin_capture(void *sctx)
{
    return dsrt_error(DSRT_CODE_UNIMPLEMENTED, "template backend has no graph capture (callers run work directly)");
}

static dsrt_status dsrt_template_end_capture(void *sctx, void **gctx)
{
    return dsrt_error(DSRT_CODE_UNIMPLEMENTED, "template backend has no graph capture");
}

static dsrt_status dsrt_template_graph_launch(void *gctx, void *sctx)
{
    return dsrt_error(DSRT_CODE_UNIMPLEMENTED, "template backend has no graph capture");
}

static void dsrt_template_graph_destroy(void *gctx) {}

static const dsrt_backend_vtable dsrt_template_vtable = {
    .abi_version = DSRT_BACKEND_ABI_VERSION,
    .struct_size = sizeof(dsrt_backend_vtable),
    .name = "template",
    .init = dsrt_template_init,
    .deinit = dsrt_template_deinit,
    .device_count = dsrt_template_device_count,
    .device_caps = dsrt_template_device_caps,
    .device_open = dsrt_template_device_open,
    .device_close = dsrt_template_device_close,
    .buffer_alloc = dsrt_template_buffer_alloc,
    .buffer_free = dsrt_template_buffer_free,
    .buffer_wrap_host = dsrt_template_buffer_wrap_host,
    .stream_create = dsrt_template_stream_create,
    .stream_destroy = dsrt_template_stream_destroy,
    .stream_sync = dsrt_template_stream_sync,
    .write = dsrt_template_write,
    .read = dsrt_template_read,
    .copy = dsrt_template_copy,
    .fill = dsrt_template_fill,
    .event_create = dsrt_template_event_create,
    .event_destroy = dsrt_template_event_destroy,
    .event_record = dsrt_template_event_record,
    .stream_wait_event = dsrt_template_stream_wait_event,
    .event_sync = dsrt_template_event_sync,
    .event_query = dsrt_template_event_query,
    .supports_op = dsrt_template_supports,
    .enqueue_op = dsrt_template_enqueue_op,
    .begin_capture = dsrt_template_begin_capture,
    .end_capture = dsrt_template_end_capture,
    .graph_launch = dsrt_template_graph_launch,
    .graph_destroy = dsrt_template_graph_destroy,
};

#ifdef DSRT_TEMPLATE_BUILTIN
/* Built in: hal/src/registry.c lists it among the compiled-in backends (DSRT_HAVE_TEMPLATE). */
const dsrt_backend_vtable *dsrt_template_backend_vtable(void) { return &dsrt_template_vtable; }
#else
/* Plugin: the one exported symbol. Returning NULL refuses a dsrt whose backend ABI differs from the
 * one these sources were compiled against (the registry reports that to the user). */
__attribute__((visibility("default"))) const dsrt_backend_vtable *dsrt_backend_plugin_entry(uint32_t host_abi_version)
{
    return host_abi_version == DSRT_BACKEND_ABI_VERSION ? &dsrt_template_vtable : NULL;
}
#endif
