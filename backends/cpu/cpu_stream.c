/* CPU streams: an in-order queue drained by one worker thread per stream (ops fan out to the shared
 * thread pool), events as completion counters, graphs as recorded entry lists. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_backend.h"
#include "dsrt/buffer.h"

typedef enum { E_WRITE, E_READ, E_COPY, E_FILL, E_OP, E_RECORD, E_WAIT, E_GRAPH } dsrt_entry_kind;

/* Shared by the HAL handle and every queued record or wait of it: the handle may be released while
 * they are queued, so the last holder frees it. */
typedef struct dsrt_cpu_event {
    pthread_mutex_t m;
    pthread_cond_t c;
    uint64_t pending;   /* records issued */
    uint64_t completed; /* records reached */
    atomic_int refs;
} dsrt_cpu_event;

typedef struct dsrt_cpu_graph dsrt_cpu_graph;

typedef struct dsrt_entry {
    dsrt_entry_kind kind;
    struct dsrt_entry *next;
    void *dst;
    const void *src;
    size_t bytes;
    uint32_t pattern;
    size_t pattern_size;
    dsrt_cpu_event *event;
    uint64_t target;
    dsrt_cpu_graph *graph;
    dsrt_op op;
    dsrt_cpu_buffer *hold[2]; /* transfers: the buffers they touch, referenced until the entry goes */
} dsrt_entry;

/* A graph is shared by its HAL handle and every queued launch of it: the handle may be released while
 * launches are still queued, so the last of them frees it. */
struct dsrt_cpu_graph {
    dsrt_entry **entries;
    size_t n;
    atomic_int refs;
};

static void dsrt_entry_free(dsrt_entry *e);

/* Queued and recorded ops keep the HAL buffers of their operands (and scales) alive. */
static void dsrt_op_hold(const dsrt_op *op, bool take)
{
    const dsrt_tensor *ts[DSRT_OP_MAX_IN + DSRT_OP_MAX_OUT];
    for (int i = 0; i < DSRT_OP_MAX_IN; i++) ts[i] = &op->in[i];
    for (int i = 0; i < DSRT_OP_MAX_OUT; i++) ts[DSRT_OP_MAX_IN + i] = &op->out[i];
    for (int i = 0; i < DSRT_OP_MAX_IN + DSRT_OP_MAX_OUT; i++) {
        dsrt_buffer *bufs[2] = {ts[i]->buf, ts[i]->buf ? ts[i]->scale.buf : NULL};
        for (int j = 0; j < 2; j++) {
            if (!bufs[j]) continue;
            if (take) dsrt_buffer_retain(bufs[j]);
            else dsrt_buffer_release(bufs[j]);
        }
    }
}

static void dsrt_graph_unref(dsrt_cpu_graph *g)
{
    if (!g || atomic_fetch_sub(&g->refs, 1) != 1) return;
    for (size_t i = 0; i < g->n; i++) dsrt_entry_free(g->entries[i]);
    free(g->entries);
    free(g);
}

static void dsrt_event_unref(dsrt_cpu_event *ev)
{
    if (!ev || atomic_fetch_sub(&ev->refs, 1) != 1) return;
    pthread_mutex_destroy(&ev->m);
    pthread_cond_destroy(&ev->c);
    free(ev);
}

/* Frees a queue entry and drops the references it holds. */
static void dsrt_entry_free(dsrt_entry *e)
{
    if (!e) return;
    if (e->kind == E_GRAPH) dsrt_graph_unref(e->graph);
    if (e->kind == E_RECORD || e->kind == E_WAIT) dsrt_event_unref(e->event);
    if (e->kind == E_OP) dsrt_op_hold(&e->op, false);
    for (int i = 0; i < 2; i++) dsrt_cpu_buffer_unref(e->hold[i]);
    free(e);
}

typedef struct dsrt_cpu_stream {
    dsrt_cpu_device *dev;
    pthread_t worker;
    bool has_worker;
    pthread_mutex_t m;
    pthread_cond_t has_work, idle;
    dsrt_entry *head, *tail;
    bool busy, stop;
    dsrt_status err; /* first failure since the last sync (sticky) */
    bool capturing;
    dsrt_entry **cap;
    size_t ncap, capcap;
    dsrt_status cap_err;
} dsrt_cpu_stream;

static dsrt_status dsrt_run_entry(dsrt_cpu_stream *s, const dsrt_entry *e);

static void dsrt_event_reach(dsrt_cpu_event *ev, uint64_t target)
{
    pthread_mutex_lock(&ev->m);
    if (ev->completed < target) ev->completed = target;
    pthread_cond_broadcast(&ev->c);
    pthread_mutex_unlock(&ev->m);
}

static void dsrt_event_wait_for(dsrt_cpu_event *ev, uint64_t target)
{
    pthread_mutex_lock(&ev->m);
    while (ev->completed < target) pthread_cond_wait(&ev->c, &ev->m);
    pthread_mutex_unlock(&ev->m);
}

static dsrt_status dsrt_run_entry(dsrt_cpu_stream *s, const dsrt_entry *e)
{
    switch (e->kind) {
    case E_WRITE:
    case E_READ:
    case E_COPY: memmove(e->dst, e->src, e->bytes); return DSRT_OK;
    case E_FILL: {
        unsigned char *d = e->dst;
        if (e->pattern_size == 1) {
            memset(d, (int)(e->pattern & 0xff), e->bytes);
        } else {
            for (size_t i = 0; i < e->bytes; i += e->pattern_size) memcpy(d + i, &e->pattern, e->pattern_size);
        }
        return DSRT_OK;
    }
    case E_OP: return dsrt_cpu_run_op(s->dev->pool, &e->op);
    case E_RECORD: dsrt_event_reach(e->event, e->target); return DSRT_OK;
    case E_WAIT: dsrt_event_wait_for(e->event, e->target); return DSRT_OK;
    case E_GRAPH:
        for (size_t i = 0; i < e->graph->n; i++) DSRT_TRY(dsrt_run_entry(s, e->graph->entries[i]));
        return DSRT_OK;
    }
    return dsrt_error(DSRT_CODE_INTERNAL, "cpu stream: unknown entry kind %d", (int)e->kind);
}

/* Runs an entry and keeps the first failure. Events still complete after a failure so that waiters on
 * other streams never hang; other work is skipped. */
static void dsrt_execute(dsrt_cpu_stream *s, const dsrt_entry *e)
{
    bool failed;
    pthread_mutex_lock(&s->m);
    failed = s->err != DSRT_OK;
    pthread_mutex_unlock(&s->m);
    if (failed && e->kind != E_RECORD) return;
    dsrt_status st = dsrt_run_entry(s, e);
    if (st) {
        pthread_mutex_lock(&s->m);
        if (!s->err) s->err = st;
        else dsrt_status_free(st);
        pthread_mutex_unlock(&s->m);
    }
}

static void *dsrt_stream_main(void *arg)
{
    dsrt_cpu_stream *s = arg;
    pthread_mutex_lock(&s->m);
    for (;;) {
        while (!s->head && !s->stop) pthread_cond_wait(&s->has_work, &s->m);
        if (!s->head && s->stop) break;
        dsrt_entry *e = s->head;
        s->head = e->next;
        if (!s->head) s->tail = NULL;
        s->busy = true;
        pthread_mutex_unlock(&s->m);
        dsrt_execute(s, e);
        dsrt_entry_free(e);
        pthread_mutex_lock(&s->m);
        s->busy = false;
        if (!s->head) pthread_cond_broadcast(&s->idle);
    }
    pthread_mutex_unlock(&s->m);
    return NULL;
}

dsrt_status dsrt_cpu_stream_create(void *dctx, void **sctx)
{
    dsrt_cpu_stream *s = calloc(1, sizeof *s);
    if (!s) return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "out of memory for a CPU stream");
    s->dev = dctx;
    pthread_mutex_init(&s->m, NULL);
    pthread_cond_init(&s->has_work, NULL);
    pthread_cond_init(&s->idle, NULL);
    if (!s->dev->inline_streams) {
        if (pthread_create(&s->worker, NULL, dsrt_stream_main, s) != 0) {
            pthread_mutex_destroy(&s->m);
            pthread_cond_destroy(&s->has_work);
            pthread_cond_destroy(&s->idle);
            free(s);
            return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "cannot start a CPU stream thread");
        }
        s->has_worker = true;
    }
    *sctx = s;
    return DSRT_OK;
}

static void dsrt_free_capture(dsrt_cpu_stream *s)
{
    for (size_t i = 0; i < s->ncap; i++) dsrt_entry_free(s->cap[i]);
    free(s->cap);
    s->cap = NULL;
    s->ncap = s->capcap = 0;
}

void dsrt_cpu_stream_destroy(void *sctx)
{
    dsrt_cpu_stream *s = sctx;
    if (s->has_worker) {
        pthread_mutex_lock(&s->m);
        s->stop = true;
        pthread_cond_signal(&s->has_work);
        pthread_mutex_unlock(&s->m);
        pthread_join(s->worker, NULL);
    }
    dsrt_free_capture(s);
    dsrt_status_free(s->cap_err);
    dsrt_status_free(s->err);
    pthread_mutex_destroy(&s->m);
    pthread_cond_destroy(&s->has_work);
    pthread_cond_destroy(&s->idle);
    free(s);
}

static dsrt_status dsrt_submit(dsrt_cpu_stream *s, dsrt_entry *e)
{
    if (s->capturing) {
        if (e->kind == E_RECORD || e->kind == E_WAIT || e->kind == E_GRAPH) {
            dsrt_entry_free(e);
            return dsrt_error(DSRT_CODE_UNIMPLEMENTED, "cpu: events and nested graphs cannot be captured");
        }
        if (s->ncap == s->capcap) {
            size_t n = s->capcap ? s->capcap * 2 : 64;
            dsrt_entry **c = realloc(s->cap, n * sizeof *c);
            if (!c) {
                free(e);
                return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "out of memory recording a graph");
            }
            s->cap = c;
            s->capcap = n;
        }
        s->cap[s->ncap++] = e;
        return DSRT_OK;
    }
    if (!s->has_worker) {
        dsrt_execute(s, e);
        dsrt_entry_free(e);
        return DSRT_OK;
    }
    pthread_mutex_lock(&s->m);
    if (s->tail) s->tail->next = e;
    else s->head = e;
    s->tail = e;
    pthread_cond_signal(&s->has_work);
    pthread_mutex_unlock(&s->m);
    return DSRT_OK;
}

static dsrt_entry *dsrt_new_entry(dsrt_entry_kind kind)
{
    dsrt_entry *e = calloc(1, sizeof *e);
    if (e) e->kind = kind;
    return e;
}

#define NEW_ENTRY(var, kind)                                                                                          \
    dsrt_entry *var = dsrt_new_entry(kind);                                                                           \
    if (!var) return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "out of memory queueing CPU work")

dsrt_status dsrt_cpu_stream_sync(void *sctx)
{
    dsrt_cpu_stream *s = sctx;
    pthread_mutex_lock(&s->m);
    while (s->head || s->busy) pthread_cond_wait(&s->idle, &s->m);
    dsrt_status st = s->err;
    s->err = DSRT_OK;
    pthread_mutex_unlock(&s->m);
    return st;
}

static void *dsrt_ptr(void *handle, size_t off) { return (char *)((dsrt_cpu_buffer *)handle)->ptr + off; }

static void dsrt_hold(dsrt_entry *e, int i, void *handle)
{
    dsrt_cpu_buffer_ref(handle);
    e->hold[i] = handle;
}

dsrt_status dsrt_cpu_write(void *sctx, void *dst, size_t off, const void *src, size_t bytes)
{
    NEW_ENTRY(e, E_WRITE);
    dsrt_hold(e, 0, dst);
    e->dst = dsrt_ptr(dst, off);
    e->src = src;
    e->bytes = bytes;
    return dsrt_submit(sctx, e);
}

dsrt_status dsrt_cpu_read(void *sctx, void *src, size_t off, void *dst, size_t bytes)
{
    NEW_ENTRY(e, E_READ);
    dsrt_hold(e, 0, src);
    e->dst = dst;
    e->src = dsrt_ptr(src, off);
    e->bytes = bytes;
    return dsrt_submit(sctx, e);
}

dsrt_status dsrt_cpu_copy(void *sctx, void *src, size_t soff, void *dst, size_t doff, size_t bytes)
{
    NEW_ENTRY(e, E_COPY);
    dsrt_hold(e, 0, src);
    dsrt_hold(e, 1, dst);
    e->dst = dsrt_ptr(dst, doff);
    e->src = dsrt_ptr(src, soff);
    e->bytes = bytes;
    return dsrt_submit(sctx, e);
}

dsrt_status dsrt_cpu_fill(void *sctx, void *dst, size_t off, size_t bytes, const void *pattern, size_t psize)
{
    NEW_ENTRY(e, E_FILL);
    dsrt_hold(e, 0, dst);
    e->dst = dsrt_ptr(dst, off);
    e->bytes = bytes;
    memcpy(&e->pattern, pattern, psize);
    e->pattern_size = psize;
    return dsrt_submit(sctx, e);
}

dsrt_status dsrt_cpu_enqueue_op(void *sctx, const dsrt_op *op)
{
    NEW_ENTRY(e, E_OP);
    e->op = *op;
    dsrt_op_hold(op, true);
    return dsrt_submit(sctx, e);
}

/* ---- events ---- */

dsrt_status dsrt_cpu_event_create(void *dctx, void **ectx)
{
    dsrt_cpu_event *ev = calloc(1, sizeof *ev);
    if (!ev) return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "out of memory for a CPU event");
    pthread_mutex_init(&ev->m, NULL);
    pthread_cond_init(&ev->c, NULL);
    atomic_init(&ev->refs, 1);
    *ectx = ev;
    return DSRT_OK;
}

/* Queued records and waits hold their own references, so releasing the handle never blocks. */
void dsrt_cpu_event_destroy(void *ectx) { dsrt_event_unref(ectx); }

static dsrt_status dsrt_refuse_in_capture(void *sctx)
{
    if (((dsrt_cpu_stream *)sctx)->capturing)
        return dsrt_error(DSRT_CODE_UNIMPLEMENTED, "cpu: events and nested graphs cannot be captured");
    return DSRT_OK;
}

dsrt_status dsrt_cpu_event_record(void *ectx, void *sctx)
{
    dsrt_cpu_event *ev = ectx;
    /* Refused before a record number is taken: a number handed out and then marked reached would
     * also mark earlier, still running records of the event as reached. */
    DSRT_TRY(dsrt_refuse_in_capture(sctx));
    NEW_ENTRY(e, E_RECORD);
    pthread_mutex_lock(&ev->m);
    uint64_t target = e->target = ++ev->pending;
    pthread_mutex_unlock(&ev->m);
    atomic_fetch_add(&ev->refs, 1); /* held by the queued record */
    e->event = ev;
    dsrt_status st = dsrt_submit(sctx, e); /* frees e on failure */
    if (st) dsrt_event_reach(ev, target); /* never leave a record that will not happen */
    return st;
}

dsrt_status dsrt_cpu_stream_wait_event(void *sctx, void *ectx)
{
    dsrt_cpu_event *ev = ectx;
    DSRT_TRY(dsrt_refuse_in_capture(sctx));
    NEW_ENTRY(e, E_WAIT);
    pthread_mutex_lock(&ev->m);
    e->target = ev->pending;
    pthread_mutex_unlock(&ev->m);
    atomic_fetch_add(&ev->refs, 1); /* held by the queued wait */
    e->event = ev;
    return dsrt_submit(sctx, e);
}

dsrt_status dsrt_cpu_event_sync(void *ectx)
{
    dsrt_cpu_event *ev = ectx;
    pthread_mutex_lock(&ev->m);
    uint64_t target = ev->pending;
    while (ev->completed < target) pthread_cond_wait(&ev->c, &ev->m);
    pthread_mutex_unlock(&ev->m);
    return DSRT_OK;
}

dsrt_status dsrt_cpu_event_query(void *ectx, bool *done)
{
    dsrt_cpu_event *ev = ectx;
    pthread_mutex_lock(&ev->m);
    *done = ev->completed >= ev->pending;
    pthread_mutex_unlock(&ev->m);
    return DSRT_OK;
}

/* ---- graphs ---- */

dsrt_status dsrt_cpu_begin_capture(void *sctx)
{
    dsrt_cpu_stream *s = sctx;
    s->capturing = true;
    return DSRT_OK;
}

dsrt_status dsrt_cpu_end_capture(void *sctx, void **gctx)
{
    dsrt_cpu_stream *s = sctx;
    s->capturing = false;
    dsrt_cpu_graph *g = calloc(1, sizeof *g);
    if (!g) {
        dsrt_free_capture(s);
        return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "out of memory for a graph");
    }
    g->entries = s->cap;
    g->n = s->ncap;
    atomic_init(&g->refs, 1);
    s->cap = NULL;
    s->ncap = s->capcap = 0;
    *gctx = g;
    return DSRT_OK;
}

dsrt_status dsrt_cpu_graph_launch(void *gctx, void *sctx)
{
    NEW_ENTRY(e, E_GRAPH);
    dsrt_cpu_graph *g = gctx;
    atomic_fetch_add(&g->refs, 1); /* the queued launch keeps the graph alive */
    e->graph = g;
    return dsrt_submit(sctx, e);
}

void dsrt_cpu_graph_destroy(void *gctx) { dsrt_graph_unref(gctx); }
