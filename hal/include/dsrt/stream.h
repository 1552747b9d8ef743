/* Streams, events and graphs.
 *
 * A stream is an in-order queue on one device: transfers and ops enqueue and return at once; they run
 * in order. A failure while running is sticky: the next dsrt_stream_sync (or event sync) returns it.
 * Events order work across streams, also across devices of different backends (the HAL then waits
 * on the host). A graph records a stream's work once and replays it cheaply (CUDA graphs, or a
 * recorded op list); data in device tensors may change between replays, shapes may not. */
#ifndef DSRT_STREAM_H
#define DSRT_STREAM_H

#include <stdbool.h>
#include <stddef.h>

#include "dsrt/handles.h"
#include "dsrt/status.h"

#ifdef __cplusplus
extern "C" {
#endif

dsrt_status dsrt_stream_create(dsrt_device *dev, dsrt_stream **out);
/* Waits for queued work, then frees the stream. */
void dsrt_stream_release(dsrt_stream *s);
dsrt_device *dsrt_stream_device(const dsrt_stream *s);
/* Blocks until all queued work finished; returns the first failure since the last sync. */
dsrt_status dsrt_stream_sync(dsrt_stream *s);

/* Host <-> device transfers. The host memory must stay valid until the work completes (sync). */
dsrt_status dsrt_stream_write(dsrt_stream *s, dsrt_buffer *dst, size_t dst_offset, const void *src,
                              size_t bytes);
dsrt_status dsrt_stream_read(dsrt_stream *s, const dsrt_buffer *src, size_t src_offset, void *dst,
                             size_t bytes);
/* Buffer to buffer. Across devices (any backends) the HAL stages through the host and the call
 * completes before returning. */
dsrt_status dsrt_stream_copy(dsrt_stream *s, const dsrt_buffer *src, size_t src_offset,
                             dsrt_buffer *dst, size_t dst_offset, size_t bytes);
/* Fills `bytes` with a repeated 1-, 2- or 4-byte pattern. */
dsrt_status dsrt_stream_fill(dsrt_stream *s, dsrt_buffer *dst, size_t offset, size_t bytes,
                             const void *pattern, size_t pattern_size);

dsrt_status dsrt_event_create(dsrt_device *dev, dsrt_event **out);
void dsrt_event_release(dsrt_event *e);
/* Marks the current end of `s`. */
dsrt_status dsrt_event_record(dsrt_event *e, dsrt_stream *s);
/* Work enqueued on `s` after this call starts after `e` completed. */
dsrt_status dsrt_stream_wait_event(dsrt_stream *s, dsrt_event *e);
dsrt_status dsrt_event_sync(dsrt_event *e);
/* *done = whether the recorded work finished (an unrecorded event counts as finished). */
dsrt_status dsrt_event_query(dsrt_event *e, bool *done);

/* Graphs. Between begin and end, work on `s` is recorded, not run. A backend without graph support
 * returns UNIMPLEMENTED from begin; callers then run work directly. */
dsrt_status dsrt_stream_begin_capture(dsrt_stream *s);
dsrt_status dsrt_stream_end_capture(dsrt_stream *s, dsrt_graph **out);
dsrt_status dsrt_graph_launch(dsrt_graph *g, dsrt_stream *s);
void dsrt_graph_release(dsrt_graph *g);

#ifdef __cplusplus
}
#endif
#endif
