/* "inproc" collectives: ranks on devices of any backends in one process (the mixed-vendor case).
 *
 * The communicators made by one dsrt_comm_init_all share a clique. A call on a rank becomes a
 * "part": its parameters plus its send data, read into host memory through the rank's stream (after
 * the stream's earlier work). Parts of the same operation meet in a "slot" of the clique: the k-th
 * collective of every rank, or the k-th send from a to b with the k-th recv at b from a. Once a slot
 * holds all its parts, each rank's owner computes that rank's output on the host from the parts'
 * staged data and enqueues its upload on the rank's stream, so later work on the stream sees it.
 * The last part to finish frees the slot.
 *
 * Who runs a part: the thread that made the call, at once (one thread per rank: the call returns
 * when every rank has joined), or, inside a group, at the thread's outermost group end, which first
 * posts all its parts and only then waits for any. That order is why one thread can drive every
 * rank without deadlock.
 *
 * A rank that rejects a call (bad arguments, a failed read) still posts an error part in its place:
 * the peers' matching calls fail naming it instead of waiting forever, and call numbering stays in
 * step so the communicators remain usable.
 *
 * Everything lives in the clique and its ranks, guarded by the clique's mutex; nothing is global. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm_impl.h"
#include "hal_internal.h"

typedef struct dsrt_inproc_slot dsrt_inproc_slot;

/* all_to_allv arrays in a part: four runs of `size` entries. */
enum { DSRT_V_SEND_COUNTS = 0, DSRT_V_SEND_DISPLS, DSRT_V_RECV_COUNTS, DSRT_V_RECV_DISPLS };

typedef struct dsrt_inproc_part {
    dsrt_comm_kind kind;
    int rank;           /* the rank that made the call */
    uint64_t seq;       /* collective number, or send/recv number between the two ranks */
    dsrt_dtype dtype;
    int64_t count;
    dsrt_reduce_op op;
    int root, peer;
    int64_t *v;         /* all_to_allv counts and displacements (4 x size), owned */
    dsrt_tensor send, recv;
    bool has_send, has_recv;
    void *input;        /* staged send data, owned; other ranks read it once the slot is full */
    dsrt_status err;    /* set: the rank does not take part, and this says why (owned) */
    dsrt_comm *comm;    /* for the owner only */
    dsrt_stream *stream;
    dsrt_inproc_slot *slot;
    struct dsrt_inproc_part *next; /* a group's queue, then its list of parts to finish */
} dsrt_inproc_part;

struct dsrt_inproc_slot {
    bool p2p;
    uint64_t seq;
    int src, dst;       /* p2p */
    int expected, arrived, done;
    /* all_reduce: every rank needs the same reduction, so it is computed once, in chunks claimed by
     * whichever owners are there (all of them with one thread per rank, the one thread otherwise). */
    void *result;
    bool result_failed;
    int64_t chunk, nchunks, next_chunk, chunks_done;
    dsrt_inproc_slot *next;
    dsrt_inproc_part *parts[]; /* collective: by rank; p2p: [0] send, [1] recv */
};

typedef struct dsrt_inproc_group {
    pthread_t thread;
    int depth;
    dsrt_inproc_part *head, *tail;
} dsrt_inproc_group;

typedef struct dsrt_inproc_clique {
    int size;
    pthread_mutex_t m;
    pthread_cond_t cv;  /* a part arrived or a chunk finished */
    int live;           /* communicators not yet released */
    dsrt_inproc_slot *slots;
    dsrt_inproc_group *groups; /* open groups, one per thread */
    int ngroups, capgroups;
} dsrt_inproc_clique;

typedef struct dsrt_inproc_rank {
    dsrt_inproc_clique *q;
    uint64_t coll_seq;
    uint64_t *send_seq, *recv_seq; /* per peer */
    dsrt_comm_stage_pool pool;
} dsrt_inproc_rank;

/* Elements of an all_reduce result reduced per claim: big enough to amortize the lock, small enough
 * that several threads share a large reduction. */
#define DSRT_INPROC_CHUNK 16384

static dsrt_inproc_rank *dsrt_inproc_ctx(const dsrt_comm *c) { return c->ctx; }

/* ---- parts and slots ---- */

static void dsrt_inproc_part_free(dsrt_inproc_part *p)
{
    if (!p) return;
    free(p->v);
    free(p->input);
    dsrt_status_free(p->err);
    free(p);
}

static void dsrt_inproc_slot_free(dsrt_inproc_slot *s)
{
    for (int i = 0; i < s->expected; i++) dsrt_inproc_part_free(s->parts[i]);
    free(s->result);
    free(s);
}

/* Removes `s` from the clique's list (under the lock). */
static void dsrt_inproc_slot_unlink(dsrt_inproc_clique *q, dsrt_inproc_slot *s)
{
    for (dsrt_inproc_slot **pp = &q->slots; *pp; pp = &(*pp)->next) {
        if (*pp == s) {
            *pp = s->next;
            return;
        }
    }
}

static bool dsrt_inproc_is_p2p(dsrt_comm_kind k) { return k == DSRT_COMM_SEND || k == DSRT_COMM_RECV; }

/* "all_reduce #3 (inproc, 4 ranks)" or "send #1 from rank 0 to rank 2": how messages name a slot. */
static const char *dsrt_inproc_label(const dsrt_inproc_part *p, int size, char *buf, size_t len)
{
    if (p->kind == DSRT_COMM_SEND)
        snprintf(buf, len, "send #%llu from rank %d to rank %d", (unsigned long long)p->seq, p->rank, p->peer);
    else if (p->kind == DSRT_COMM_RECV)
        snprintf(buf, len, "recv #%llu at rank %d from rank %d", (unsigned long long)p->seq, p->rank, p->peer);
    else
        snprintf(buf, len, "%s #%llu (inproc, %d ranks)", dsrt_comm_kind_name(p->kind), (unsigned long long)p->seq,
                 size);
    return buf;
}

/* A part for `call` on c's rank; `why` non-NULL makes it an error part. Numbers it in the rank's
 * sequence of calls. NULL when out of memory. */
static dsrt_inproc_part *dsrt_inproc_part_new(dsrt_comm *c, const dsrt_comm_call *call, dsrt_status why)
{
    dsrt_inproc_rank *r = dsrt_inproc_ctx(c);
    dsrt_inproc_part *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->kind = call->kind;
    p->rank = c->rank;
    p->comm = c;
    p->stream = call->stream;
    p->dtype = call->dtype;
    p->count = call->count;
    p->op = call->op;
    p->root = call->root;
    p->peer = call->peer;
    if (why) {
        p->err = dsrt_error(dsrt_status_code(why), "%s", dsrt_status_message(why));
    } else {
        if (call->send) p->send = *call->send, p->has_send = true;
        if (call->recv) p->recv = *call->recv, p->has_recv = true;
        if (call->kind == DSRT_COMM_ALL_TO_ALLV) {
            size_t n = (size_t)c->size;
            p->v = malloc(4 * n * sizeof(int64_t));
            if (!p->v) {
                free(p);
                return NULL;
            }
            memcpy(p->v + DSRT_V_SEND_COUNTS * n, call->send_counts, n * sizeof(int64_t));
            memcpy(p->v + DSRT_V_SEND_DISPLS * n, call->send_displs, n * sizeof(int64_t));
            memcpy(p->v + DSRT_V_RECV_COUNTS * n, call->recv_counts, n * sizeof(int64_t));
            memcpy(p->v + DSRT_V_RECV_DISPLS * n, call->recv_displs, n * sizeof(int64_t));
        }
    }
    if (p->kind == DSRT_COMM_SEND) p->seq = r->send_seq[p->peer]++;
    else if (p->kind == DSRT_COMM_RECV) p->seq = r->recv_seq[p->peer]++;
    else p->seq = r->coll_seq++;
    return p;
}

/* The slot `p` belongs in, created when it is the first part to arrive (under the lock). */
static dsrt_inproc_slot *dsrt_inproc_slot_for(dsrt_inproc_clique *q, const dsrt_inproc_part *p, int *index)
{
    bool p2p = dsrt_inproc_is_p2p(p->kind);
    int src = p->kind == DSRT_COMM_SEND ? p->rank : p->peer, dst = p->kind == DSRT_COMM_SEND ? p->peer : p->rank;
    *index = p2p ? (p->kind == DSRT_COMM_SEND ? 0 : 1) : p->rank;
    for (dsrt_inproc_slot *s = q->slots; s; s = s->next) {
        if (s->p2p != p2p || s->seq != p->seq) continue;
        if (!p2p || (s->src == src && s->dst == dst)) return s;
    }
    int expected = p2p ? 2 : q->size;
    dsrt_inproc_slot *s = calloc(1, sizeof *s + (size_t)expected * sizeof(dsrt_inproc_part *));
    if (!s) return NULL;
    s->p2p = p2p;
    s->seq = p->seq;
    s->src = p2p ? src : -1;
    s->dst = p2p ? dst : -1;
    s->expected = expected;
    s->next = q->slots;
    q->slots = s;
    return s;
}

/* Stages p's input and puts p in its slot. A failure (which also turns p into an error part, so the
 * peers learn of it) is returned; an error part (made by abandon) posts and returns DSRT_OK. Error
 * parts are finished on arrival, so the caller must not touch them afterwards. */
static dsrt_status dsrt_inproc_post(dsrt_inproc_clique *q, dsrt_inproc_part *p)
{
    dsrt_status st = DSRT_OK;
    char lbl[96];
    if (!p->err && p->has_send) {
        size_t bytes = dsrt_tensor_nbytes(&p->send);
        p->input = dsrt_comm_alloc(bytes);
        if (!p->input)
            st = dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "out of host memory staging %zu bytes", bytes);
        else
            st = dsrt_comm_read_input(p->stream, &p->send, p->input);
        if (st) {
            st = dsrt_status_wrap(st, "%s: reading rank %d's input", dsrt_inproc_label(p, q->size, lbl, sizeof lbl),
                                  p->rank);
            p->err = dsrt_error(dsrt_status_code(st), "%s", dsrt_status_message(st));
        }
    }
    bool failed = p->err != NULL;
    pthread_mutex_lock(&q->m);
    int index;
    dsrt_inproc_slot *s = dsrt_inproc_slot_for(q, p, &index);
    if (!s || s->parts[index]) {
        pthread_mutex_unlock(&q->m);
        dsrt_status e = !s ? dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "out of host memory for a collective slot")
                           : dsrt_error(DSRT_CODE_INTERNAL,
                                        "%s is posted twice (is the communicator used by two threads at once?)",
                                        dsrt_inproc_label(p, q->size, lbl, sizeof lbl));
        dsrt_inproc_part_free(p);
        dsrt_status_free(st);
        return e;
    }
    s->parts[index] = p;
    p->slot = s;
    s->arrived++;
    if (failed && ++s->done == s->expected) {
        dsrt_inproc_slot_unlink(q, s);
        dsrt_inproc_slot_free(s);
    }
    pthread_cond_broadcast(&q->cv);
    pthread_mutex_unlock(&q->m);
    return st;
}

/* ---- computing a rank's output ---- */

/* Enqueues the upload of stage bytes [off, off+bytes) into the same bytes of p's recv tensor. */
static dsrt_status dsrt_inproc_upload(dsrt_inproc_part *p, dsrt_comm_stage *st, size_t off, size_t bytes)
{
    if (!bytes) return DSRT_OK;
    return dsrt_stream_write(p->stream, p->recv.buf, p->recv.offset + off, (char *)st->host + off, bytes);
}

/* Uploads the whole staged output and marks the stage in use until the upload completes. */
static dsrt_status dsrt_inproc_upload_all(dsrt_inproc_part *p, dsrt_comm_stage *st, size_t bytes)
{
    dsrt_inproc_rank *r = dsrt_inproc_ctx(p->comm);
    dsrt_status e = dsrt_inproc_upload(p, st, 0, bytes);
    dsrt_status c = dsrt_comm_stage_commit(&r->pool, st, p->stream);
    if (e) {
        dsrt_status_free(c);
        return e;
    }
    return c;
}

/* The same failure on every rank when a peer did not take part or the ranks disagree. */
static dsrt_status dsrt_inproc_check_collective(const dsrt_inproc_part *p, int size)
{
    const dsrt_inproc_slot *s = p->slot;
    char lbl[96];
    dsrt_inproc_label(p, size, lbl, sizeof lbl);
    for (int r = 0; r < size; r++)
        if (s->parts[r]->err)
            return dsrt_error(dsrt_status_code(s->parts[r]->err), "%s: rank %d did not take part: %s", lbl, r,
                              dsrt_status_message(s->parts[r]->err));
    const dsrt_inproc_part *a = s->parts[0];
    for (int r = 1; r < size; r++) {
        const dsrt_inproc_part *b = s->parts[r];
        if (b->kind != a->kind)
            return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "collective #%llu: rank 0 called %s but rank %d called %s",
                              (unsigned long long)p->seq, dsrt_comm_kind_name(a->kind), r, dsrt_comm_kind_name(b->kind));
        if (b->dtype != a->dtype)
            return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "%s: rank 0 passes %s data but rank %d passes %s", lbl,
                              dsrt_dtype_name(a->dtype), r, dsrt_dtype_name(b->dtype));
        if (a->kind != DSRT_COMM_ALL_TO_ALLV && b->count != a->count) {
            bool blocks = a->kind == DSRT_COMM_ALL_GATHER || a->kind == DSRT_COMM_REDUCE_SCATTER ||
                          a->kind == DSRT_COMM_ALL_TO_ALL;
            return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "%s: rank 0 passes %lld elements%s but rank %d passes %lld",
                              lbl, (long long)a->count, blocks ? " per rank block" : "", r, (long long)b->count);
        }
        if ((a->kind == DSRT_COMM_ALL_REDUCE || a->kind == DSRT_COMM_REDUCE_SCATTER) && b->op != a->op)
            return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "%s: rank 0 reduces with %s but rank %d with %s", lbl,
                              dsrt_reduce_op_name(a->op), r, dsrt_reduce_op_name(b->op));
        if (a->kind == DSRT_COMM_BROADCAST && b->root != a->root)
            return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "%s: rank 0 names root %d but rank %d names root %d", lbl,
                              a->root, r, b->root);
    }
    if (a->kind == DSRT_COMM_ALL_TO_ALLV) {
        size_t n = (size_t)size;
        for (int j = 0; j < size; j++)
            for (int i = 0; i < size; i++) {
                int64_t expect = s->parts[j]->v[DSRT_V_RECV_COUNTS * n + (size_t)i];
                int64_t sent = s->parts[i]->v[DSRT_V_SEND_COUNTS * n + (size_t)j];
                if (expect != sent)
                    return dsrt_error(DSRT_CODE_INVALID_ARGUMENT,
                                      "%s: rank %d expects %lld elements from rank %d but rank %d sends it %lld", lbl, j,
                                      (long long)expect, i, i, (long long)sent);
            }
    }
    return DSRT_OK;
}

/* all_reduce: claims chunks of the shared result until none are left, then waits for the chunks
 * other threads claimed. */
static dsrt_status dsrt_inproc_shared_reduce(dsrt_inproc_clique *q, dsrt_inproc_part *p)
{
    dsrt_inproc_slot *s = p->slot;
    size_t es = dsrt_dtype_size(p->dtype);
    const void **srcs = malloc((size_t)q->size * sizeof *srcs);
    pthread_mutex_lock(&q->m);
    if (!s->result && !s->result_failed) {
        s->result = dsrt_comm_alloc((size_t)p->count * es);
        s->result_failed = s->result == NULL;
        s->chunk = DSRT_INPROC_CHUNK;
        s->nchunks = (p->count + s->chunk - 1) / s->chunk;
    }
    bool failed = s->result_failed;
    pthread_mutex_unlock(&q->m);
    if (failed) {
        free(srcs);
        return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "out of host memory for an all_reduce of %lld elements",
                          (long long)p->count);
    }
    for (;;) {
        pthread_mutex_lock(&q->m);
        int64_t c = s->next_chunk < s->nchunks ? s->next_chunk++ : -1;
        pthread_mutex_unlock(&q->m);
        if (c < 0) break;
        int64_t base = c * s->chunk, m = p->count - base < s->chunk ? p->count - base : s->chunk;
        if (srcs) {
            for (int r = 0; r < q->size; r++) srcs[r] = (const char *)s->parts[r]->input + (size_t)base * es;
            dsrt_comm_reduce_host(p->dtype, p->op, srcs, q->size, (char *)s->result + (size_t)base * es, m);
        } else {
            /* No room for the pointer array: reduce pairwise through the result instead. */
            char *dst = (char *)s->result + (size_t)base * es;
            memcpy(dst, (const char *)s->parts[0]->input + (size_t)base * es, (size_t)m * es);
            for (int r = 1; r < q->size; r++) {
                const void *two[2] = {dst, (const char *)s->parts[r]->input + (size_t)base * es};
                dsrt_comm_reduce_host(p->dtype, p->op, two, 2, dst, m);
            }
        }
        pthread_mutex_lock(&q->m);
        if (++s->chunks_done == s->nchunks) pthread_cond_broadcast(&q->cv);
        pthread_mutex_unlock(&q->m);
    }
    free(srcs);
    pthread_mutex_lock(&q->m);
    while (s->chunks_done < s->nchunks) pthread_cond_wait(&q->cv, &q->m);
    pthread_mutex_unlock(&q->m);
    return DSRT_OK;
}

static dsrt_status dsrt_inproc_compute_collective(dsrt_inproc_clique *q, dsrt_inproc_part *p)
{
    DSRT_TRY(dsrt_inproc_check_collective(p, q->size));
    dsrt_inproc_rank *r = dsrt_inproc_ctx(p->comm);
    dsrt_inproc_slot *s = p->slot;
    int n = q->size, me = p->rank;
    size_t es = dsrt_dtype_size(p->dtype);
    size_t out_bytes = dsrt_tensor_nbytes(&p->recv);
    size_t blk = (size_t)p->count * es;

    if (p->kind == DSRT_COMM_ALL_REDUCE) DSRT_TRY(dsrt_inproc_shared_reduce(q, p));

    dsrt_comm_stage *st;
    DSRT_TRY(dsrt_comm_stage_get(&r->pool, out_bytes, &st));
    char *out = st->host;
    switch (p->kind) {
    case DSRT_COMM_ALL_REDUCE: memcpy(out, s->result, out_bytes); break;
    case DSRT_COMM_REDUCE_SCATTER: {
        const void **srcs = malloc((size_t)n * sizeof *srcs);
        if (!srcs) {
            dsrt_comm_stage_drop(&r->pool, st);
            return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "out of host memory for a reduce_scatter");
        }
        for (int i = 0; i < n; i++) srcs[i] = (const char *)s->parts[i]->input + (size_t)me * blk;
        dsrt_comm_reduce_host(p->dtype, p->op, srcs, n, out, p->count);
        free(srcs);
        break;
    }
    case DSRT_COMM_ALL_GATHER:
        for (int i = 0; i < n; i++) memcpy(out + (size_t)i * blk, s->parts[i]->input, blk);
        break;
    case DSRT_COMM_ALL_TO_ALL:
        for (int i = 0; i < n; i++) memcpy(out + (size_t)i * blk, (const char *)s->parts[i]->input + (size_t)me * blk, blk);
        break;
    case DSRT_COMM_BROADCAST: memcpy(out, s->parts[p->root]->input, out_bytes); break;
    case DSRT_COMM_ALL_TO_ALLV: {
        /* Only the segments are uploaded: the rest of recv keeps its contents. */
        size_t nn = (size_t)n;
        dsrt_status e = DSRT_OK;
        for (int i = 0; i < n && !e; i++) {
            const dsrt_inproc_part *src = s->parts[i];
            size_t off = (size_t)p->v[DSRT_V_RECV_DISPLS * nn + (size_t)i] * es;
            size_t len = (size_t)p->v[DSRT_V_RECV_COUNTS * nn + (size_t)i] * es;
            size_t soff = (size_t)src->v[DSRT_V_SEND_DISPLS * nn + (size_t)me] * es;
            memcpy(out + off, (const char *)src->input + soff, len);
            e = dsrt_inproc_upload(p, st, off, len);
        }
        dsrt_status c = dsrt_comm_stage_commit(&r->pool, st, p->stream);
        if (e) {
            dsrt_status_free(c);
            return e;
        }
        return c;
    }
    default:
        dsrt_comm_stage_drop(&r->pool, st);
        return dsrt_error(DSRT_CODE_INTERNAL, "inproc: %s is not a collective", dsrt_comm_kind_name(p->kind));
    }
    return dsrt_inproc_upload_all(p, st, out_bytes);
}

static dsrt_status dsrt_inproc_compute_p2p(dsrt_inproc_clique *q, dsrt_inproc_part *p)
{
    dsrt_inproc_slot *s = p->slot;
    const dsrt_inproc_part *snd = s->parts[0], *rcv = s->parts[1];
    char lbl[96];
    dsrt_inproc_label(p, q->size, lbl, sizeof lbl);
    const dsrt_inproc_part *other = p == snd ? rcv : snd;
    if (other->err)
        return dsrt_error(dsrt_status_code(other->err), "%s: rank %d did not take part: %s", lbl, other->rank,
                          dsrt_status_message(other->err));
    if (snd->dtype != rcv->dtype || snd->count != rcv->count)
        return dsrt_error(DSRT_CODE_INVALID_ARGUMENT,
                          "%s: rank %d sends %lld %s elements but rank %d receives %lld %s elements", lbl, snd->rank,
                          (long long)snd->count, dsrt_dtype_name(snd->dtype), rcv->rank, (long long)rcv->count,
                          dsrt_dtype_name(rcv->dtype));
    if (p == snd) return DSRT_OK; /* the data already sits in the slot */
    dsrt_inproc_rank *r = dsrt_inproc_ctx(p->comm);
    size_t bytes = dsrt_tensor_nbytes(&p->recv);
    dsrt_comm_stage *st;
    DSRT_TRY(dsrt_comm_stage_get(&r->pool, bytes, &st));
    memcpy(st->host, snd->input, bytes);
    return dsrt_inproc_upload_all(p, st, bytes);
}

/* Waits until p's slot is full, computes p's output, and leaves the slot (freeing it when last). */
static dsrt_status dsrt_inproc_finish(dsrt_inproc_clique *q, dsrt_inproc_part *p)
{
    dsrt_inproc_slot *s = p->slot;
    pthread_mutex_lock(&q->m);
    while (s->arrived < s->expected) pthread_cond_wait(&q->cv, &q->m);
    pthread_mutex_unlock(&q->m);
    dsrt_status st = s->p2p ? dsrt_inproc_compute_p2p(q, p) : dsrt_inproc_compute_collective(q, p);
    pthread_mutex_lock(&q->m);
    if (++s->done == s->expected) {
        dsrt_inproc_slot_unlink(q, s);
        dsrt_inproc_slot_free(s);
    }
    pthread_mutex_unlock(&q->m);
    return st;
}

/* ---- groups ---- */

/* The calling thread's open group in q, or NULL (under the lock). */
static dsrt_inproc_group *dsrt_inproc_my_group(dsrt_inproc_clique *q)
{
    pthread_t self = pthread_self();
    for (int i = 0; i < q->ngroups; i++)
        if (pthread_equal(q->groups[i].thread, self)) return &q->groups[i];
    return NULL;
}

/* Queues p in the calling thread's open group; false when the thread has none (under no lock). */
static bool dsrt_inproc_queue(dsrt_inproc_clique *q, dsrt_inproc_part *p)
{
    pthread_mutex_lock(&q->m);
    dsrt_inproc_group *g = dsrt_inproc_my_group(q);
    if (g) {
        if (g->tail) g->tail->next = p;
        else g->head = p;
        g->tail = p;
    }
    pthread_mutex_unlock(&q->m);
    return g != NULL;
}

static dsrt_status dsrt_inproc_group_start(dsrt_comm *c)
{
    dsrt_inproc_clique *q = dsrt_inproc_ctx(c)->q;
    pthread_mutex_lock(&q->m);
    dsrt_inproc_group *g = dsrt_inproc_my_group(q);
    if (!g) {
        if (q->ngroups == q->capgroups) {
            int nc = q->capgroups ? 2 * q->capgroups : 4;
            dsrt_inproc_group *ng = realloc(q->groups, (size_t)nc * sizeof *ng);
            if (!ng) {
                pthread_mutex_unlock(&q->m);
                return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "out of host memory opening a group");
            }
            q->groups = ng;
            q->capgroups = nc;
        }
        g = &q->groups[q->ngroups++];
        memset(g, 0, sizeof *g);
        g->thread = pthread_self();
    }
    g->depth++;
    pthread_mutex_unlock(&q->m);
    return DSRT_OK;
}

static dsrt_status dsrt_inproc_group_end(dsrt_comm *c)
{
    dsrt_inproc_clique *q = dsrt_inproc_ctx(c)->q;
    pthread_mutex_lock(&q->m);
    dsrt_inproc_group *g = dsrt_inproc_my_group(q);
    if (!g) {
        pthread_mutex_unlock(&q->m);
        return dsrt_error(DSRT_CODE_INVALID_ARGUMENT,
                          "comm group_end on rank %d: this thread has no open group (group_start first)", c->rank);
    }
    if (--g->depth > 0) {
        pthread_mutex_unlock(&q->m);
        return DSRT_OK;
    }
    dsrt_inproc_part *head = g->head;
    *g = q->groups[--q->ngroups];
    pthread_mutex_unlock(&q->m);

    /* Post everything first, then wait: a part waits only for peers that are posted already or that
     * other threads post, never for a later part of this thread. */
    dsrt_status first = DSRT_OK;
    dsrt_inproc_part *fin = NULL, *fin_tail = NULL;
    for (dsrt_inproc_part *p = head, *nx; p; p = nx) {
        nx = p->next;
        p->next = NULL;
        bool normal = p->err == NULL;
        dsrt_status st = dsrt_inproc_post(q, p);
        if (st) {
            if (!first) first = st;
            else dsrt_status_free(st);
        } else if (normal) {
            if (fin_tail) fin_tail->next = p;
            else fin = p;
            fin_tail = p;
        }
    }
    for (dsrt_inproc_part *p = fin, *nx; p; p = nx) {
        nx = p->next;
        dsrt_status st = dsrt_inproc_finish(q, p);
        if (st) {
            if (!first) first = st;
            else dsrt_status_free(st);
        }
    }
    return first;
}

/* ---- calls ---- */

static dsrt_status dsrt_inproc_submit(dsrt_comm *c, const dsrt_comm_call *call)
{
    dsrt_inproc_clique *q = dsrt_inproc_ctx(c)->q;
    dsrt_inproc_part *p = dsrt_inproc_part_new(c, call, NULL);
    if (!p) return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "out of host memory for a %s", dsrt_comm_kind_name(call->kind));
    if (dsrt_inproc_queue(q, p)) return DSRT_OK;
    DSRT_TRY(dsrt_inproc_post(q, p));
    return dsrt_inproc_finish(q, p);
}

static void dsrt_inproc_abandon(dsrt_comm *c, const dsrt_comm_call *call, dsrt_status why)
{
    dsrt_inproc_clique *q = dsrt_inproc_ctx(c)->q;
    dsrt_inproc_part *p = dsrt_inproc_part_new(c, call, why);
    if (!p) return; /* out of memory: the peers wait, as they would with NCCL */
    if (dsrt_inproc_queue(q, p)) return;
    dsrt_status_free(dsrt_inproc_post(q, p));
}

/* ---- lifetime ---- */

static void dsrt_inproc_rank_free(dsrt_inproc_rank *r)
{
    if (!r) return;
    dsrt_comm_stage_pool_free(&r->pool);
    free(r->send_seq);
    free(r->recv_seq);
    free(r);
}

static void dsrt_inproc_clique_free(dsrt_inproc_clique *q)
{
    while (q->slots) {
        dsrt_inproc_slot *s = q->slots;
        q->slots = s->next;
        dsrt_inproc_slot_free(s);
    }
    for (int i = 0; i < q->ngroups; i++)
        for (dsrt_inproc_part *p = q->groups[i].head, *nx; p; p = nx) {
            nx = p->next;
            dsrt_inproc_part_free(p);
        }
    free(q->groups);
    pthread_cond_destroy(&q->cv);
    pthread_mutex_destroy(&q->m);
    free(q);
}

static dsrt_status dsrt_inproc_init_all(dsrt_comm *const *comms, int n)
{
    dsrt_inproc_clique *q = calloc(1, sizeof *q);
    if (!q) return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "out of host memory for an inproc clique");
    if (pthread_mutex_init(&q->m, NULL)) {
        free(q);
        return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "cannot create the clique's mutex");
    }
    if (pthread_cond_init(&q->cv, NULL)) {
        pthread_mutex_destroy(&q->m);
        free(q);
        return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "cannot create the clique's condition variable");
    }
    q->size = n;
    for (int i = 0; i < n; i++) {
        dsrt_inproc_rank *r = calloc(1, sizeof *r);
        if (r) {
            r->q = q;
            r->pool.dev = comms[i]->dev;
            r->send_seq = calloc((size_t)n, sizeof *r->send_seq);
            r->recv_seq = calloc((size_t)n, sizeof *r->recv_seq);
        }
        if (!r || !r->send_seq || !r->recv_seq) {
            dsrt_inproc_rank_free(r);
            for (int j = 0; j < i; j++) dsrt_inproc_rank_free(comms[j]->ctx), comms[j]->ctx = NULL;
            dsrt_inproc_clique_free(q);
            return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "out of host memory for %d inproc ranks", n);
        }
        comms[i]->ctx = r;
    }
    q->live = n;
    return DSRT_OK;
}

static void dsrt_inproc_release(dsrt_comm *c)
{
    dsrt_inproc_rank *r = dsrt_inproc_ctx(c);
    dsrt_inproc_clique *q = r->q;
    pthread_mutex_lock(&q->m);
    /* Calls of this rank still queued in an open group will never run: drop them. */
    for (int i = 0; i < q->ngroups; i++) {
        dsrt_inproc_group *g = &q->groups[i];
        dsrt_inproc_part **pp = &g->head;
        g->tail = NULL;
        while (*pp) {
            if ((*pp)->comm == c) {
                dsrt_inproc_part *dead = *pp;
                *pp = dead->next;
                dsrt_inproc_part_free(dead);
            } else {
                g->tail = *pp;
                pp = &(*pp)->next;
            }
        }
    }
    bool last = --q->live == 0;
    pthread_mutex_unlock(&q->m);
    dsrt_inproc_rank_free(r);
    c->ctx = NULL;
    if (last) dsrt_inproc_clique_free(q);
}

const dsrt_comm_vtable dsrt_comm_impl_inproc = {
    .name = "inproc",
    .accepts = NULL,
    .init_all = dsrt_inproc_init_all,
    .get_unique_id = NULL,
    .init_rank = NULL,
    .release = dsrt_inproc_release,
    .group_start = dsrt_inproc_group_start,
    .group_end = dsrt_inproc_group_end,
    .submit = dsrt_inproc_submit,
    .abandon = dsrt_inproc_abandon,
};
