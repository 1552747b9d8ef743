/* "mpi" collectives: one rank per process, across processes and nodes, staged through host memory.
 *
 * A call reads its send data into host memory through the rank's stream (after the stream's earlier
 * work), starts the matching nonblocking MPI operation on the communicator's private MPI
 * communicator, and, outside a group, waits for it and enqueues the upload of the result on the
 * stream. Inside a group the operations stay in flight until the outermost group end, so a rank can
 * post a send and a recv to the same peer without deadlock.
 *
 * Before each collective the ranks agree on what they are doing with one small allreduce of the call's
 * kind, dtype, count, reduction and root (and, for all_to_allv, an exchange of the counts), and on
 * whether any rank failed to prepare; a mismatch or a failure on one rank fails the call on every rank
 * with the same message, instead of MPI reading past buffers or waiting forever. A send that fails on
 * its rank still sends an empty message with a "failed" tag so the receiver does not wait forever; a
 * recv that fails drains the sender's message so the pair stays in step.
 *
 * bf16 and f16 reductions go through MPI as fp32 (converted on the host) and are rounded once after.
 * MPI is initialized here only when the application has not done it; dsrt then finalizes it at exit.
 * MPI itself is the only process-wide state touched. */
#ifdef DSRT_HAVE_MPI

#include <fcntl.h>
#include <limits.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "comm_impl.h"
#include "dsrt/half.h"
#include "hal_internal.h"

enum { DSRT_MPI_TAG_DATA = 1, DSRT_MPI_TAG_FAILED = 2 };

/* A peer's failure, broadcast from that rank so every rank reports the same words. */
typedef struct dsrt_mpi_failure {
    int32_t code;
    char msg[508];
} dsrt_mpi_failure;

typedef struct dsrt_mpi_pending {
    dsrt_comm_kind kind;
    MPI_Request req;
    char label[96];
    void *in;               /* staged input, owned */
    void *wide;             /* fp32 result of a bf16/f16 reduction, owned */
    dsrt_comm_stage *stage; /* output staging; NULL for send */
    dsrt_stream *stream;
    dsrt_tensor recv;
    dsrt_dtype dtype;
    int64_t count;
    int peer;
    bool drain;             /* a rejected recv consuming the sender's message: result ignored */
    int64_t *rv;            /* all_to_allv: recv counts then displacements (2 x size), owned */
    int size;
    struct dsrt_mpi_pending *next;
} dsrt_mpi_pending;

typedef struct dsrt_mpi_rank {
    MPI_Comm comm;          /* private: a dup or split, so dsrt's messages never meet the application's */
    int group_depth;
    dsrt_mpi_pending *head, *tail;
    dsrt_comm_stage_pool pool;
    uint64_t coll_seq;
    uint64_t *send_seq, *recv_seq; /* per peer, for messages */
} dsrt_mpi_rank;

static dsrt_status dsrt_mpi_error(int rc, const char *fmt, ...) DSRT_PRINTF(2, 3);
static dsrt_status dsrt_mpi_error(int rc, const char *fmt, ...)
{
    char what[256], es[MPI_MAX_ERROR_STRING];
    int len = 0;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    if (MPI_Error_string(rc, es, &len) != MPI_SUCCESS) snprintf(es, sizeof es, "error code %d", rc);
    return dsrt_error(DSRT_CODE_DEVICE, "%s: MPI failed: %s", what, es);
}

/* ---- MPI itself ---- */

static void dsrt_mpi_finalize_at_exit(void)
{
    int fin = 0;
    MPI_Finalized(&fin);
    if (!fin) MPI_Finalize();
}

/* Initializes MPI unless the application did. MPI's own "initialized" flag is the only record of it,
 * so dsrt keeps no state of its own; the exit hook is registered once because MPI inits once. */
static dsrt_status dsrt_mpi_ensure_init(void)
{
    int inited = 0, fin = 0;
    MPI_Finalized(&fin);
    if (fin) return dsrt_error(DSRT_CODE_UNAVAILABLE, "MPI was already finalized in this process");
    MPI_Initialized(&inited);
    if (inited) return DSRT_OK;
    int provided = 0;
    /* MULTIPLE: the application may drive different communicators from different threads. */
    int rc = MPI_Init_thread(NULL, NULL, MPI_THREAD_MULTIPLE, &provided);
    if (rc != MPI_SUCCESS) return dsrt_mpi_error(rc, "initializing MPI");
    atexit(dsrt_mpi_finalize_at_exit);
    return DSRT_OK;
}

static dsrt_status dsrt_mpi_rank_new(dsrt_comm *c, MPI_Comm mc)
{
    dsrt_mpi_rank *r = calloc(1, sizeof *r);
    if (r) {
        r->send_seq = calloc((size_t)c->size, sizeof *r->send_seq);
        r->recv_seq = calloc((size_t)c->size, sizeof *r->recv_seq);
    }
    if (!r || !r->send_seq || !r->recv_seq) {
        if (r) free(r->send_seq), free(r->recv_seq);
        free(r);
        MPI_Comm_free(&mc);
        return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "out of host memory for an MPI rank");
    }
    /* Failures come back as return codes; MPI's default would abort the process. */
    MPI_Comm_set_errhandler(mc, MPI_ERRORS_RETURN);
    r->comm = mc;
    r->pool.dev = c->dev;
    c->ctx = r;
    return DSRT_OK;
}

dsrt_status dsrt_comm_mpi_init_world(dsrt_device *device, dsrt_comm **out)
{
    DSRT_TRY(dsrt_mpi_ensure_init());
    int rank = 0, size = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    dsrt_comm *c = dsrt_comm_shell_new(&dsrt_comm_impl_mpi, device, rank, size);
    if (!c) return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "out of host memory for a communicator");
    MPI_Comm mc;
    int rc = MPI_Comm_dup(MPI_COMM_WORLD, &mc);
    dsrt_status st = rc == MPI_SUCCESS ? dsrt_mpi_rank_new(c, mc) : dsrt_mpi_error(rc, "duplicating MPI_COMM_WORLD");
    if (st) {
        dsrt_comm_shell_free(c);
        return st;
    }
    *out = c;
    return DSRT_OK;
}

/* The id's payload: a 31-bit color naming the group of processes (random, so that ids made
 * independently do not collide). */
static dsrt_status dsrt_mpi_get_unique_id(unsigned char *payload)
{
    uint32_t color = 0;
    int fd = open("/dev/urandom", O_RDONLY);
    if (fd >= 0) {
        if (read(fd, &color, sizeof color) != (ssize_t)sizeof color) color = 0;
        close(fd);
    }
    if (!color) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        color = (uint32_t)ts.tv_nsec ^ (uint32_t)ts.tv_sec * 2654435761u ^ (uint32_t)getpid() * 40503u;
    }
    color &= 0x7fffffffu;
    memcpy(payload, "dsrt-mpi", 8);
    memcpy(payload + 8, &color, sizeof color);
    return DSRT_OK;
}

static dsrt_status dsrt_mpi_init_rank(dsrt_comm *c, const unsigned char *payload)
{
    if (memcmp(payload, "dsrt-mpi", 8) != 0)
        return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "the id's payload was not made by the mpi implementation");
    uint32_t color;
    memcpy(&color, payload + 8, sizeof color);
    DSRT_TRY(dsrt_mpi_ensure_init());
    /* Every process of the world splits; those holding this id end up together, ordered by rank. */
    MPI_Comm mc;
    int rc = MPI_Comm_split(MPI_COMM_WORLD, (int)(color & 0x7fffffffu), c->rank, &mc);
    if (rc != MPI_SUCCESS) return dsrt_mpi_error(rc, "splitting MPI_COMM_WORLD by the id");
    int got_rank = -1, got_size = 0;
    MPI_Comm_rank(mc, &got_rank);
    MPI_Comm_size(mc, &got_size);
    /* Every member learns whether all got the rank they asked for, so all fail or none. */
    int ok = got_rank == c->rank && got_size == c->size, all_ok = 0;
    rc = MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_LAND, mc);
    if (rc != MPI_SUCCESS || !all_ok) {
        MPI_Comm_free(&mc);
        if (rc != MPI_SUCCESS) return dsrt_mpi_error(rc, "checking the ranks holding the id");
        return dsrt_error(DSRT_CODE_INVALID_ARGUMENT,
                          "the %d processes holding this id do not form ranks 0..%d (this one asked for rank %d of "
                          "%d and got rank %d of %d)", got_size, c->size - 1, c->rank, c->size, got_rank, got_size);
    }
    return dsrt_mpi_rank_new(c, mc);
}

/* ---- types ---- */

/* The MPI type that moves elements of `dt` (no arithmetic). */
static MPI_Datatype dsrt_mpi_move_type(dsrt_dtype dt)
{
    switch (dsrt_dtype_size(dt)) {
    case 2: return MPI_UINT16_T;
    case 4: return MPI_UINT32_T;
    case 8: return MPI_UINT64_T;
    default: return MPI_BYTE;
    }
}

/* The MPI type reductions of `dt` run in (bf16 and f16 widen to fp32). */
static MPI_Datatype dsrt_mpi_reduce_type(dsrt_dtype dt)
{
    switch (dt) {
    case DSRT_I32: return MPI_INT32_T;
    case DSRT_I64: return MPI_INT64_T;
    case DSRT_U8: return MPI_UINT8_T;
    default: return MPI_FLOAT;
    }
}

static MPI_Op dsrt_mpi_op(dsrt_reduce_op op)
{
    switch (op) {
    case DSRT_REDUCE_PROD: return MPI_PROD;
    case DSRT_REDUCE_MAX: return MPI_MAX;
    case DSRT_REDUCE_MIN: return MPI_MIN;
    default: return MPI_SUM;
    }
}

static bool dsrt_mpi_widens(dsrt_dtype dt) { return dt == DSRT_BF16 || dt == DSRT_F16; }

static void dsrt_mpi_to_f32(dsrt_dtype dt, const void *src, float *dst, int64_t n)
{
    const uint16_t *s = src;
    for (int64_t i = 0; i < n; i++) dst[i] = dt == DSRT_BF16 ? dsrt_bf16_to_f32(s[i]) : dsrt_f16_to_f32(s[i]);
}

static void dsrt_mpi_from_f32(dsrt_dtype dt, const float *src, void *dst, int64_t n)
{
    uint16_t *d = dst;
    for (int64_t i = 0; i < n; i++) d[i] = dt == DSRT_BF16 ? dsrt_f32_to_bf16(src[i]) : dsrt_f32_to_f16(src[i]);
}

/* ---- agreement ---- */

static const char *dsrt_mpi_label(const dsrt_comm *c, const dsrt_comm_call *call, uint64_t seq, char *buf,
                                  size_t len)
{
    if (call->kind == DSRT_COMM_SEND)
        snprintf(buf, len, "send #%llu from rank %d to rank %d (mpi)", (unsigned long long)seq, c->rank, call->peer);
    else if (call->kind == DSRT_COMM_RECV)
        snprintf(buf, len, "recv #%llu at rank %d from rank %d (mpi)", (unsigned long long)seq, c->rank, call->peer);
    else
        snprintf(buf, len, "%s #%llu (mpi, %d ranks)", dsrt_comm_kind_name(call->kind), (unsigned long long)seq,
                 c->size);
    return buf;
}

/* Rank `from` tells everyone why it failed; all return the same error. */
static dsrt_status dsrt_mpi_share_failure(dsrt_mpi_rank *r, int from, int me, dsrt_status mine, const char *label,
                                          const char *what)
{
    dsrt_mpi_failure f;
    memset(&f, 0, sizeof f);
    if (from == me && mine) {
        f.code = (int32_t)dsrt_status_code(mine);
        snprintf(f.msg, sizeof f.msg, "%s", dsrt_status_message(mine));
    }
    int rc = MPI_Bcast(&f, (int)sizeof f, MPI_BYTE, from, r->comm);
    if (rc != MPI_SUCCESS) return dsrt_mpi_error(rc, "%s: sharing rank %d's failure", label, from);
    f.msg[sizeof f.msg - 1] = 0;
    if (from == me && mine) return dsrt_error(dsrt_status_code(mine), "%s", dsrt_status_message(mine));
    return dsrt_error(f.code ? (dsrt_code)f.code : DSRT_CODE_INVALID_ARGUMENT, "%s: rank %d %s: %s", label, from, what,
                      f.msg);
}

/* All ranks compare the call and learn whether any rank failed to prepare it (`mine`, kept by the
 * caller). Returns the same failure on every rank, or DSRT_OK on every rank. */
static dsrt_status dsrt_mpi_agree(dsrt_comm *c, const dsrt_comm_call *call, dsrt_status mine, const char *label)
{
    dsrt_mpi_rank *r = c->ctx;
    bool reduce = call->kind == DSRT_COMM_ALL_REDUCE || call->kind == DSRT_COMM_REDUCE_SCATTER;
    enum { K = 6 };
    int64_t d[K] = {(int64_t)call->kind,
                    mine ? -1 : (int64_t)call->dtype,
                    mine || call->kind == DSRT_COMM_ALL_TO_ALLV ? -1 : call->count,
                    mine || !reduce ? -1 : (int64_t)call->op,
                    call->kind == DSRT_COMM_BROADCAST ? call->root : -1,
                    mine ? c->rank : -1};
    int64_t v[2 * K], res[2 * K];
    for (int i = 0; i < K; i++) v[i] = d[i], v[K + i] = -d[i];
    int rc = MPI_Allreduce(v, res, 2 * K, MPI_INT64_T, MPI_MAX, r->comm);
    if (rc != MPI_SUCCESS) return dsrt_mpi_error(rc, "%s: agreeing on the call", label);
    if (res[K - 1] >= 0) return dsrt_mpi_share_failure(r, (int)res[K - 1], c->rank, mine, label, "did not take part");
    /* max(x) and -max(-x) = min(x): equal exactly when every rank passed the same value. A failed
     * rank passes -1 for what it could not establish, which the failure above already reported. */
    int64_t hi[K], lo[K];
    for (int i = 0; i < K; i++) hi[i] = res[i], lo[i] = -res[K + i];
    if (hi[0] != lo[0])
        return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "%s: the ranks call different collectives (%s and %s)", label,
                          dsrt_comm_kind_name((dsrt_comm_kind)lo[0]), dsrt_comm_kind_name((dsrt_comm_kind)hi[0]));
    if (hi[1] != lo[1])
        return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "%s: the ranks pass different dtypes (%s and %s)", label,
                          dsrt_dtype_name((dsrt_dtype)lo[1]), dsrt_dtype_name((dsrt_dtype)hi[1]));
    if (hi[2] != lo[2])
        return dsrt_error(DSRT_CODE_INVALID_ARGUMENT,
                          "%s: the ranks pass different element counts (from %lld to %lld%s)", label, (long long)lo[2],
                          (long long)hi[2],
                          call->kind == DSRT_COMM_ALL_REDUCE || call->kind == DSRT_COMM_BROADCAST ? "" : " per rank block");
    if (hi[3] != lo[3])
        return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "%s: the ranks reduce differently (%s and %s)", label,
                          dsrt_reduce_op_name((dsrt_reduce_op)lo[3]), dsrt_reduce_op_name((dsrt_reduce_op)hi[3]));
    if (hi[4] != lo[4])
        return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "%s: the ranks name different roots (%lld and %lld)", label,
                          (long long)lo[4], (long long)hi[4]);
    if (call->kind != DSRT_COMM_ALL_TO_ALLV) return DSRT_OK;

    /* all_to_allv: what each rank sends me must be what I expect from it, on every pair. */
    int64_t *got = malloc((size_t)c->size * sizeof *got);
    int64_t bad = -1, worst = -1;
    char msg[256] = "";
    if (got) {
        rc = MPI_Alltoall(call->send_counts, 1, MPI_INT64_T, got, 1, MPI_INT64_T, r->comm);
        if (rc != MPI_SUCCESS) {
            free(got);
            return dsrt_mpi_error(rc, "%s: exchanging the counts", label);
        }
        for (int j = 0; j < c->size && bad < 0; j++)
            if (got[j] != call->recv_counts[j]) {
                bad = c->rank;
                snprintf(msg, sizeof msg, "rank %d expects %lld elements from rank %d but rank %d sends it %lld",
                         c->rank, (long long)call->recv_counts[j], j, j, (long long)got[j]);
            }
        free(got);
    } else {
        /* Still take part in the exchange (into a second try at memory) so the others are not left
         * waiting; if that fails too, this rank cannot stay in step and says so. */
        int64_t *sink = calloc((size_t)c->size, sizeof *sink);
        if (!sink) return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "%s: out of host memory", label);
        MPI_Alltoall(call->send_counts, 1, MPI_INT64_T, sink, 1, MPI_INT64_T, r->comm);
        free(sink);
        bad = c->rank;
        snprintf(msg, sizeof msg, "out of host memory checking the counts");
    }
    rc = MPI_Allreduce(&bad, &worst, 1, MPI_INT64_T, MPI_MAX, r->comm);
    if (rc != MPI_SUCCESS) return dsrt_mpi_error(rc, "%s: agreeing on the counts", label);
    if (worst < 0) return DSRT_OK;
    dsrt_status why = bad >= 0 ? dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "%s: %s", label, msg) : DSRT_OK;
    dsrt_status st = dsrt_mpi_share_failure(r, (int)worst, c->rank, why, label, "found a count mismatch");
    dsrt_status_free(why);
    return st;
}

/* What MPI cannot carry: counts beyond int. Checked before the agreement so every rank hears. */
static dsrt_status dsrt_mpi_check_limits(const dsrt_comm *c, const dsrt_comm_call *call, const char *label)
{
    int64_t biggest = call->count;
    if (call->kind == DSRT_COMM_ALL_GATHER || call->kind == DSRT_COMM_ALL_TO_ALL) biggest = call->count * c->size;
    if (call->kind == DSRT_COMM_SEND || call->kind == DSRT_COMM_RECV)
        biggest = call->count * (int64_t)dsrt_dtype_size(call->dtype);
    if (call->kind == DSRT_COMM_ALL_TO_ALLV) {
        for (int i = 0; i < c->size; i++) {
            int64_t e1 = call->send_displs[i] + call->send_counts[i], e2 = call->recv_displs[i] + call->recv_counts[i];
            if (e1 > biggest) biggest = e1;
            if (e2 > biggest) biggest = e2;
        }
    }
    if (biggest > INT_MAX)
        return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "%s: %lld exceeds MPI's count limit (%d); split the call", label,
                          (long long)biggest, INT_MAX);
    return DSRT_OK;
}

/* ---- running calls ---- */

static void dsrt_mpi_pending_free(dsrt_mpi_pending *p)
{
    if (!p) return;
    free(p->in);
    free(p->wide);
    free(p->rv);
    free(p);
}

/* Waits for p's MPI operation and enqueues the upload of its result. */
static dsrt_status dsrt_mpi_finish(dsrt_mpi_rank *r, dsrt_mpi_pending *p)
{
    MPI_Status status;
    memset(&status, 0, sizeof status);
    int rc = MPI_Wait(&p->req, &status);
    dsrt_status st = DSRT_OK;
    if (p->drain) {
        /* Consumed the sender's message for a recv this rank rejected; nothing to report twice. */
    } else if (p->kind == DSRT_COMM_RECV) {
        int got = 0;
        size_t want = (size_t)p->count * dsrt_dtype_size(p->dtype);
        if (rc == MPI_SUCCESS) MPI_Get_count(&status, MPI_BYTE, &got);
        if (rc != MPI_SUCCESS && (rc == MPI_ERR_TRUNCATE || status.MPI_ERROR == MPI_ERR_TRUNCATE))
            st = dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "%s: rank %d sent more than the %zu bytes (%lld %s) expected",
                            p->label, p->peer, want, (long long)p->count, dsrt_dtype_name(p->dtype));
        else if (rc != MPI_SUCCESS)
            st = dsrt_mpi_error(rc, "%s", p->label);
        else if (status.MPI_TAG == DSRT_MPI_TAG_FAILED)
            st = dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "%s: rank %d did not take part (its send failed; see its error)",
                            p->label, p->peer);
        else if ((size_t)got != want)
            st = dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "%s: rank %d sent %d bytes but %zu (%lld %s) were expected",
                            p->label, p->peer, got, want, (long long)p->count, dsrt_dtype_name(p->dtype));
    } else if (rc != MPI_SUCCESS) {
        st = dsrt_mpi_error(rc, "%s", p->label);
    }

    if (!st && p->stage) {
        size_t es = dsrt_dtype_size(p->dtype);
        char *host = p->stage->host;
        if (p->wide) {
            int64_t n = p->kind == DSRT_COMM_REDUCE_SCATTER || p->kind == DSRT_COMM_ALL_REDUCE ? p->count : 0;
            dsrt_mpi_from_f32(p->dtype, p->wide, host, n);
        }
        if (p->kind == DSRT_COMM_ALL_TO_ALLV) {
            /* Only the segments: the rest of recv keeps its contents. */
            for (int i = 0; i < p->size && !st; i++) {
                size_t off = (size_t)p->rv[p->size + i] * es, len = (size_t)p->rv[i] * es;
                if (len) st = dsrt_stream_write(p->stream, p->recv.buf, p->recv.offset + off, host + off, len);
            }
        } else {
            size_t bytes = dsrt_tensor_nbytes(&p->recv);
            if (bytes) st = dsrt_stream_write(p->stream, p->recv.buf, p->recv.offset, host, bytes);
        }
        dsrt_status cm = dsrt_comm_stage_commit(&r->pool, p->stage, p->stream);
        if (!st) st = cm;
        else dsrt_status_free(cm);
        p->stage = NULL;
    }
    if (p->stage) dsrt_comm_stage_drop(&r->pool, p->stage);
    dsrt_mpi_pending_free(p);
    return st;
}

/* Runs p now, or keeps it for the group end. */
static dsrt_status dsrt_mpi_complete(dsrt_mpi_rank *r, dsrt_mpi_pending *p)
{
    if (r->group_depth > 0) {
        if (r->tail) r->tail->next = p;
        else r->head = p;
        r->tail = p;
        return DSRT_OK;
    }
    return dsrt_mpi_finish(r, p);
}

/* A send that failed on this rank still sends something, so the receiver learns instead of waiting. */
static void dsrt_mpi_send_failed(dsrt_mpi_rank *r, int peer)
{
    MPI_Request req;
    if (MPI_Isend(NULL, 0, MPI_BYTE, peer, DSRT_MPI_TAG_FAILED, r->comm, &req) == MPI_SUCCESS) MPI_Request_free(&req);
}

/* A recv that failed on this rank still consumes the sender's message, so later pairs stay matched. */
static dsrt_status dsrt_mpi_recv_drain(dsrt_mpi_rank *r, int peer, const char *label)
{
    dsrt_mpi_pending *p = calloc(1, sizeof *p);
    if (!p) return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "out of host memory");
    p->kind = DSRT_COMM_RECV;
    p->drain = true;
    p->peer = peer;
    snprintf(p->label, sizeof p->label, "%s", label);
    int rc = MPI_Irecv(NULL, 0, MPI_BYTE, peer, MPI_ANY_TAG, r->comm, &p->req);
    if (rc != MPI_SUCCESS) {
        free(p);
        return dsrt_mpi_error(rc, "%s: draining", label);
    }
    return dsrt_mpi_complete(r, p);
}

static dsrt_status dsrt_mpi_p2p(dsrt_comm *c, const dsrt_comm_call *call, dsrt_status invalid)
{
    dsrt_mpi_rank *r = c->ctx;
    char label[96];
    uint64_t seq = call->kind == DSRT_COMM_SEND ? r->send_seq[call->peer]++ : r->recv_seq[call->peer]++;
    dsrt_mpi_label(c, call, seq, label, sizeof label);
    dsrt_status st = invalid ? DSRT_OK : dsrt_mpi_check_limits(c, call, label);
    if (invalid || st) {
        if (call->kind == DSRT_COMM_SEND) dsrt_mpi_send_failed(r, call->peer);
        else dsrt_status_free(dsrt_mpi_recv_drain(r, call->peer, label));
        return st;
    }
    dsrt_mpi_pending *p = calloc(1, sizeof *p);
    if (!p) st = dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "%s: out of host memory", label);
    size_t bytes = dsrt_tensor_nbytes(call->kind == DSRT_COMM_SEND ? call->send : call->recv);
    if (!st) {
        p->kind = call->kind;
        p->stream = call->stream;
        p->dtype = call->dtype;
        p->count = call->count;
        p->peer = call->peer;
        snprintf(p->label, sizeof p->label, "%s", label);
        if (call->kind == DSRT_COMM_SEND) {
            p->in = dsrt_comm_alloc(bytes);
            st = p->in ? dsrt_comm_read_input(call->stream, call->send, p->in)
                       : dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "out of host memory staging %zu bytes", bytes);
        } else {
            p->recv = *call->recv;
            st = dsrt_comm_stage_get(&r->pool, bytes, &p->stage);
        }
    }
    if (st) {
        if (p && p->stage) dsrt_comm_stage_drop(&r->pool, p->stage);
        dsrt_mpi_pending_free(p);
        if (call->kind == DSRT_COMM_SEND) dsrt_mpi_send_failed(r, call->peer);
        else dsrt_status_free(dsrt_mpi_recv_drain(r, call->peer, label));
        return dsrt_status_wrap(st, "%s", label);
    }
    int rc = call->kind == DSRT_COMM_SEND
                 ? MPI_Isend(p->in, (int)bytes, MPI_BYTE, p->peer, DSRT_MPI_TAG_DATA, r->comm, &p->req)
                 : MPI_Irecv(p->stage->host, (int)bytes, MPI_BYTE, p->peer, MPI_ANY_TAG, r->comm, &p->req);
    if (rc != MPI_SUCCESS) {
        if (p->stage) dsrt_comm_stage_drop(&r->pool, p->stage);
        dsrt_mpi_pending_free(p);
        return dsrt_mpi_error(rc, "%s", label);
    }
    return dsrt_mpi_complete(r, p);
}

/* Starts the nonblocking MPI collective for a prepared p. */
static int dsrt_mpi_start(dsrt_comm *c, const dsrt_comm_call *call, dsrt_mpi_pending *p)
{
    dsrt_mpi_rank *r = c->ctx;
    MPI_Datatype mt = dsrt_mpi_move_type(call->dtype), rt = dsrt_mpi_reduce_type(call->dtype);
    MPI_Op op = dsrt_mpi_op(call->op);
    int n = (int)call->count;
    void *out = p->wide ? p->wide : p->stage->host;
    switch (call->kind) {
    case DSRT_COMM_ALL_REDUCE: return MPI_Iallreduce(p->in, out, n, rt, op, r->comm, &p->req);
    case DSRT_COMM_REDUCE_SCATTER: return MPI_Ireduce_scatter_block(p->in, out, n, rt, op, r->comm, &p->req);
    case DSRT_COMM_ALL_GATHER: return MPI_Iallgather(p->in, n, mt, out, n, mt, r->comm, &p->req);
    case DSRT_COMM_ALL_TO_ALL: return MPI_Ialltoall(p->in, n, mt, out, n, mt, r->comm, &p->req);
    case DSRT_COMM_BROADCAST: return MPI_Ibcast(out, n, mt, call->root, r->comm, &p->req);
    case DSRT_COMM_ALL_TO_ALLV: {
        int size = c->size;
        int *iv = malloc(4 * (size_t)size * sizeof *iv);
        if (!iv) return MPI_ERR_NO_MEM;
        for (int i = 0; i < size; i++) {
            iv[i] = (int)call->send_counts[i];
            iv[size + i] = (int)call->send_displs[i];
            iv[2 * size + i] = (int)call->recv_counts[i];
            iv[3 * size + i] = (int)call->recv_displs[i];
        }
        /* MPI reads the count arrays when the operation starts (MPI 3.1, 5.12), so they can go now. */
        int rc = MPI_Ialltoallv(p->in, iv, iv + size, mt, out, iv + 2 * size, iv + 3 * size, mt, r->comm, &p->req);
        free(iv);
        return rc;
    }
    default: return MPI_ERR_OTHER;
    }
}

static dsrt_status dsrt_mpi_collective(dsrt_comm *c, const dsrt_comm_call *call, dsrt_status invalid)
{
    dsrt_mpi_rank *r = c->ctx;
    char label[96];
    dsrt_mpi_label(c, call, r->coll_seq++, label, sizeof label);
    dsrt_status mine = invalid ? DSRT_OK : dsrt_mpi_check_limits(c, call, label);
    dsrt_mpi_pending *p = NULL;
    if (!invalid && !mine) {
        /* Prepare everything that can fail on this rank alone before agreeing, so a failure here
         * reaches the peers through the agreement. */
        p = calloc(1, sizeof *p);
        if (!p) mine = dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "%s: out of host memory", label);
    }
    if (p) {
        p->kind = call->kind;
        p->stream = call->stream;
        p->recv = *call->recv;
        p->dtype = call->dtype;
        p->count = call->count;
        p->size = c->size;
        snprintf(p->label, sizeof p->label, "%s", label);
        size_t out_bytes = dsrt_tensor_nbytes(call->recv);
        mine = dsrt_comm_stage_get(&r->pool, out_bytes, &p->stage);
        bool reduce = call->kind == DSRT_COMM_ALL_REDUCE || call->kind == DSRT_COMM_REDUCE_SCATTER;
        if (!mine && call->send && call->kind != DSRT_COMM_BROADCAST) {
            size_t in_bytes = dsrt_tensor_nbytes(call->send);
            p->in = dsrt_comm_alloc(in_bytes);
            mine = p->in ? dsrt_comm_read_input(call->stream, call->send, p->in)
                         : dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "out of host memory staging %zu bytes", in_bytes);
        } else if (!mine && call->kind == DSRT_COMM_BROADCAST && call->send) {
            /* The root broadcasts from the staging buffer its own recv is then uploaded from. */
            mine = dsrt_comm_read_input(call->stream, call->send, p->stage->host);
        }
        if (!mine && reduce && dsrt_mpi_widens(call->dtype)) {
            int64_t nin = dsrt_tensor_numel(call->send);
            float *win = malloc((size_t)(nin ? nin : 1) * sizeof(float));
            p->wide = malloc((size_t)(call->count ? call->count : 1) * sizeof(float));
            if (!win || !p->wide) {
                free(win);
                mine = dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "out of host memory widening %lld elements", (long long)nin);
            } else {
                dsrt_mpi_to_f32(call->dtype, p->in, win, nin);
                free(p->in);
                p->in = win;
            }
        }
        if (!mine && call->kind == DSRT_COMM_ALL_TO_ALLV) {
            p->rv = malloc(2 * (size_t)c->size * sizeof *p->rv);
            if (!p->rv) mine = dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "out of host memory");
            else {
                memcpy(p->rv, call->recv_counts, (size_t)c->size * sizeof *p->rv);
                memcpy(p->rv + c->size, call->recv_displs, (size_t)c->size * sizeof *p->rv);
            }
        }
        if (mine) mine = dsrt_status_wrap(mine, "%s", label);
    }
    dsrt_status agreed = dsrt_mpi_agree(c, call, invalid ? invalid : mine, label);
    if (agreed || invalid || mine) {
        if (p) {
            if (p->stage) dsrt_comm_stage_drop(&r->pool, p->stage);
            dsrt_mpi_pending_free(p);
        }
        if (invalid) { /* the caller returns its own copy */
            dsrt_status_free(agreed);
            return DSRT_OK;
        }
        dsrt_status_free(mine);
        return agreed ? agreed : dsrt_error(DSRT_CODE_INTERNAL, "%s: agreement passed a failed call", label);
    }
    int rc = dsrt_mpi_start(c, call, p);
    if (rc != MPI_SUCCESS) {
        dsrt_comm_stage_drop(&r->pool, p->stage);
        dsrt_mpi_pending_free(p);
        return dsrt_mpi_error(rc, "%s: starting", label);
    }
    return dsrt_mpi_complete(r, p);
}

static dsrt_status dsrt_mpi_submit(dsrt_comm *c, const dsrt_comm_call *call)
{
    if (call->kind == DSRT_COMM_SEND || call->kind == DSRT_COMM_RECV) return dsrt_mpi_p2p(c, call, DSRT_OK);
    return dsrt_mpi_collective(c, call, DSRT_OK);
}

static void dsrt_mpi_abandon(dsrt_comm *c, const dsrt_comm_call *call, dsrt_status why)
{
    if (call->kind == DSRT_COMM_SEND || call->kind == DSRT_COMM_RECV) dsrt_status_free(dsrt_mpi_p2p(c, call, why));
    else dsrt_status_free(dsrt_mpi_collective(c, call, why));
}

/* ---- groups and lifetime ---- */

static dsrt_status dsrt_mpi_group_start(dsrt_comm *c)
{
    ((dsrt_mpi_rank *)c->ctx)->group_depth++;
    return DSRT_OK;
}

static dsrt_status dsrt_mpi_finish_all(dsrt_mpi_rank *r)
{
    dsrt_status first = DSRT_OK;
    dsrt_mpi_pending *p = r->head;
    r->head = r->tail = NULL;
    for (dsrt_mpi_pending *nx; p; p = nx) {
        nx = p->next;
        dsrt_status st = dsrt_mpi_finish(r, p);
        if (st && !first) first = st;
        else dsrt_status_free(st);
    }
    return first;
}

static dsrt_status dsrt_mpi_group_end(dsrt_comm *c)
{
    dsrt_mpi_rank *r = c->ctx;
    if (r->group_depth == 0)
        return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "comm group_end on rank %d (mpi): no open group (group_start first)",
                          c->rank);
    if (--r->group_depth > 0) return DSRT_OK;
    return dsrt_mpi_finish_all(r);
}

static void dsrt_mpi_release(dsrt_comm *c)
{
    dsrt_mpi_rank *r = c->ctx;
    if (!r) return;
    r->group_depth = 0;
    dsrt_status_free(dsrt_mpi_finish_all(r));
    dsrt_comm_stage_pool_free(&r->pool);
    int fin = 0;
    MPI_Finalized(&fin);
    if (!fin) MPI_Comm_free(&r->comm);
    free(r->send_seq);
    free(r->recv_seq);
    free(r);
    c->ctx = NULL;
}

const dsrt_comm_vtable dsrt_comm_impl_mpi = {
    .name = "mpi",
    .accepts = NULL,
    .init_all = NULL, /* one rank per process */
    .get_unique_id = dsrt_mpi_get_unique_id,
    .init_rank = dsrt_mpi_init_rank,
    .release = dsrt_mpi_release,
    .group_start = dsrt_mpi_group_start,
    .group_end = dsrt_mpi_group_end,
    .submit = dsrt_mpi_submit,
    .abandon = dsrt_mpi_abandon,
};

#endif /* DSRT_HAVE_MPI */
