/* Streams, transfers, events and graphs: argument checks and cross-device staging around the
 * backend's entries. */
#include <stdlib.h>
#include <string.h>

#include "hal_internal.h"

#define VT(dev) ((dev)->backend->vt)

dsrt_status dsrt_stream_create(dsrt_device *dev, dsrt_stream **out)
{
    if (!dev || !out) return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "device or output is NULL");
    *out = NULL;
    dsrt_stream *s = calloc(1, sizeof *s);
    if (!s) return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "out of memory for a stream on %s", dev->label);
    s->dev = dev;
    dsrt_status st = VT(dev)->stream_create(dev->dctx, &s->sctx);
    if (st) {
        free(s);
        return dsrt_status_wrap(st, "creating a stream on %s", dev->label);
    }
    dsrt_device_retain(dev);
    *out = s;
    return DSRT_OK;
}

void dsrt_stream_release(dsrt_stream *s)
{
    if (!s) return;
    dsrt_status_free(VT(s->dev)->stream_sync(s->sctx));
    VT(s->dev)->stream_destroy(s->sctx);
    dsrt_device_release(s->dev);
    free(s);
}

dsrt_device *dsrt_stream_device(const dsrt_stream *s) { return s ? s->dev : NULL; }

static dsrt_status dsrt_stream_check(const dsrt_stream *s, const char *what)
{
    if (!s) return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "%s: stream is NULL", what);
    return DSRT_OK;
}

dsrt_status dsrt_stream_sync(dsrt_stream *s)
{
    DSRT_TRY(dsrt_stream_check(s, "stream sync"));
    if (s->capturing)
        return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "stream on %s is capturing a graph and cannot be synced",
                          s->dev->label);
    return VT(s->dev)->stream_sync(s->sctx);
}

static dsrt_status dsrt_range_check(const dsrt_buffer *b, size_t off, size_t bytes, const char *what)
{
    if (!b) return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "%s: buffer is NULL", what);
    if (off > b->size || bytes > b->size - off)
        return dsrt_error(DSRT_CODE_OUT_OF_RANGE, "%s: range [%zu, %zu) is outside the %zu-byte buffer on %s", what,
                          off, off + bytes, b->size, b->dev->label);
    return DSRT_OK;
}

static dsrt_status dsrt_same_device(const dsrt_stream *s, const dsrt_buffer *b, const char *what)
{
    if (b->dev != s->dev)
        return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "%s: buffer lives on %s but the stream on %s", what,
                          b->dev->label, s->dev->label);
    return DSRT_OK;
}

dsrt_status dsrt_stream_write(dsrt_stream *s, dsrt_buffer *dst, size_t dst_offset, const void *src, size_t bytes)
{
    DSRT_TRY(dsrt_stream_check(s, "write"));
    DSRT_TRY(dsrt_range_check(dst, dst_offset, bytes, "write"));
    DSRT_TRY(dsrt_same_device(s, dst, "write"));
    if (dst->readonly) return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "write: buffer on %s is read-only", dst->dev->label);
    if (!src && bytes) return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "write: source pointer is NULL");
    if (!bytes) return DSRT_OK;
    return VT(s->dev)->write(s->sctx, dst->handle, dst_offset, src, bytes);
}

dsrt_status dsrt_stream_read(dsrt_stream *s, const dsrt_buffer *src, size_t src_offset, void *dst, size_t bytes)
{
    DSRT_TRY(dsrt_stream_check(s, "read"));
    DSRT_TRY(dsrt_range_check(src, src_offset, bytes, "read"));
    DSRT_TRY(dsrt_same_device(s, src, "read"));
    if (!dst && bytes) return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "read: destination pointer is NULL");
    if (!bytes) return DSRT_OK;
    return VT(s->dev)->read(s->sctx, src->handle, src_offset, dst, bytes);
}

/* Copies between devices through host memory; completes before returning. */
static dsrt_status dsrt_copy_across(dsrt_stream *s, const dsrt_buffer *src, size_t src_offset, dsrt_buffer *dst,
                                    size_t dst_offset, size_t bytes)
{
    if (s->capturing)
        return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "a copy between %s and %s cannot be captured in a graph",
                          src->dev->label, dst->dev->label);
    void *host = malloc(bytes);
    if (!host) return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "out of host memory staging %zu bytes", bytes);
    dsrt_stream *other = NULL;
    dsrt_device *other_dev = (s->dev == src->dev) ? dst->dev : src->dev;
    dsrt_status st = dsrt_stream_create(other_dev, &other);
    if (!st) {
        dsrt_stream *rs = (s->dev == src->dev) ? s : other, *ws = (s->dev == src->dev) ? other : s;
        st = VT(rs->dev)->read(rs->sctx, src->handle, src_offset, host, bytes);
        if (!st) st = VT(rs->dev)->stream_sync(rs->sctx);
        if (!st) st = VT(ws->dev)->write(ws->sctx, dst->handle, dst_offset, host, bytes);
        if (!st) st = VT(ws->dev)->stream_sync(ws->sctx);
        dsrt_stream_release(other);
    }
    free(host);
    return st;
}

dsrt_status dsrt_stream_copy(dsrt_stream *s, const dsrt_buffer *src, size_t src_offset, dsrt_buffer *dst,
                             size_t dst_offset, size_t bytes)
{
    DSRT_TRY(dsrt_stream_check(s, "copy"));
    DSRT_TRY(dsrt_range_check(src, src_offset, bytes, "copy source"));
    DSRT_TRY(dsrt_range_check(dst, dst_offset, bytes, "copy destination"));
    if (dst->readonly) return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "copy: destination on %s is read-only", dst->dev->label);
    if (src->dev != s->dev && dst->dev != s->dev)
        return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "copy: neither %s nor %s is the stream's device %s",
                          src->dev->label, dst->dev->label, s->dev->label);
    if (!bytes) return DSRT_OK;
    if (src->dev != dst->dev) return dsrt_copy_across(s, src, src_offset, dst, dst_offset, bytes);
    return VT(s->dev)->copy(s->sctx, src->handle, src_offset, dst->handle, dst_offset, bytes);
}

dsrt_status dsrt_stream_fill(dsrt_stream *s, dsrt_buffer *dst, size_t offset, size_t bytes, const void *pattern,
                             size_t pattern_size)
{
    DSRT_TRY(dsrt_stream_check(s, "fill"));
    DSRT_TRY(dsrt_range_check(dst, offset, bytes, "fill"));
    DSRT_TRY(dsrt_same_device(s, dst, "fill"));
    if (dst->readonly) return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "fill: buffer on %s is read-only", dst->dev->label);
    if (!pattern || (pattern_size != 1 && pattern_size != 2 && pattern_size != 4))
        return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "fill: pattern must be 1, 2 or 4 bytes (got %zu)", pattern_size);
    if (bytes % pattern_size || offset % pattern_size)
        return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "fill: offset %zu and size %zu must be multiples of the %zu-byte pattern",
                          offset, bytes, pattern_size);
    if (!bytes) return DSRT_OK;
    return VT(s->dev)->fill(s->sctx, dst->handle, offset, bytes, pattern, pattern_size);
}

/* ---- events ---- */

dsrt_status dsrt_event_create(dsrt_device *dev, dsrt_event **out)
{
    if (!dev || !out) return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "device or output is NULL");
    *out = NULL;
    dsrt_event *e = calloc(1, sizeof *e);
    if (!e) return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "out of memory for an event");
    e->dev = dev;
    dsrt_status st = VT(dev)->event_create(dev->dctx, &e->ectx);
    if (st) {
        free(e);
        return st;
    }
    dsrt_device_retain(dev);
    *out = e;
    return DSRT_OK;
}

void dsrt_event_release(dsrt_event *e)
{
    if (!e) return;
    VT(e->dev)->event_destroy(e->ectx);
    dsrt_device_release(e->dev);
    free(e);
}

dsrt_status dsrt_event_record(dsrt_event *e, dsrt_stream *s)
{
    if (!e) return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "event is NULL");
    DSRT_TRY(dsrt_stream_check(s, "event record"));
    if (e->dev != s->dev)
        return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "event of %s recorded on a stream of %s", e->dev->label,
                          s->dev->label);
    DSRT_TRY(VT(s->dev)->event_record(e->ectx, s->sctx));
    e->recorded = true;
    e->last_stream = s;
    return DSRT_OK;
}

dsrt_status dsrt_stream_wait_event(dsrt_stream *s, dsrt_event *e)
{
    if (!e) return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "event is NULL");
    DSRT_TRY(dsrt_stream_check(s, "wait event"));
    if (!e->recorded) return DSRT_OK;
    if (e->dev == s->dev) return VT(s->dev)->stream_wait_event(s->sctx, e->ectx);
    /* Another device (maybe another vendor): the host waits for the event, which orders everything
     * enqueued afterwards on s. */
    return VT(e->dev)->event_sync(e->ectx);
}

dsrt_status dsrt_event_sync(dsrt_event *e)
{
    if (!e) return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "event is NULL");
    if (!e->recorded) return DSRT_OK;
    return VT(e->dev)->event_sync(e->ectx);
}

dsrt_status dsrt_event_query(dsrt_event *e, bool *done)
{
    if (!e || !done) return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "event or output is NULL");
    if (!e->recorded) {
        *done = true;
        return DSRT_OK;
    }
    return VT(e->dev)->event_query(e->ectx, done);
}

/* ---- graphs ---- */

dsrt_status dsrt_stream_begin_capture(dsrt_stream *s)
{
    DSRT_TRY(dsrt_stream_check(s, "begin capture"));
    if (!VT(s->dev)->begin_capture)
        return dsrt_error(DSRT_CODE_UNIMPLEMENTED, "backend '%s' has no graph capture", s->dev->backend->vt->name);
    if (s->capturing) return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "stream on %s is already capturing", s->dev->label);
    DSRT_TRY(VT(s->dev)->begin_capture(s->sctx));
    s->capturing = true;
    return DSRT_OK;
}

dsrt_status dsrt_stream_end_capture(dsrt_stream *s, dsrt_graph **out)
{
    DSRT_TRY(dsrt_stream_check(s, "end capture"));
    if (!out) return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "end capture: output is NULL");
    *out = NULL;
    if (!s->capturing) return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "stream on %s is not capturing", s->dev->label);
    s->capturing = false;
    dsrt_graph *g = calloc(1, sizeof *g);
    if (!g) return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "out of memory for a graph");
    dsrt_status st = VT(s->dev)->end_capture(s->sctx, &g->gctx);
    if (st) {
        free(g);
        return st;
    }
    g->dev = s->dev;
    dsrt_device_retain(s->dev);
    *out = g;
    return DSRT_OK;
}

dsrt_status dsrt_graph_launch(dsrt_graph *g, dsrt_stream *s)
{
    if (!g) return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "graph is NULL");
    DSRT_TRY(dsrt_stream_check(s, "graph launch"));
    if (g->dev != s->dev)
        return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "graph of %s launched on a stream of %s", g->dev->label,
                          s->dev->label);
    return VT(s->dev)->graph_launch(g->gctx, s->sctx);
}

void dsrt_graph_release(dsrt_graph *g)
{
    if (!g) return;
    VT(g->dev)->graph_destroy(g->gctx);
    dsrt_device_release(g->dev);
    free(g);
}
