/* Collectives: the inproc implementation over cliques of 2, 3 and 4 CPU devices (the CPU device
 * opened several times), every collective with f32, bf16 and i32 data against exact expected values,
 * in both threading modes (one thread per rank; one thread driving all ranks through groups), stream
 * ordering, and the error cases. With --mpi the same binary is one rank of the MPI test (run by ctest
 * under mpirun with 2 processes). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dsrt/half.h"
#include "testutil.h"

#define MAXR 4

typedef struct clique {
    int n;
    dsrt_device *dev[MAXR];
    dsrt_stream *s[MAXR];
    dsrt_comm *c[MAXR];
} clique;

static void clique_open(clique *q, int n)
{
    memset(q, 0, sizeof *q);
    q->n = n;
    dsrt_backend *cpu;
    ck_ok(dsrt_backend_find("cpu", &cpu));
    for (int r = 0; r < n; r++) {
        ck_ok(dsrt_device_open(cpu, 0, &q->dev[r]));
        ck_ok(dsrt_stream_create(q->dev[r], &q->s[r]));
    }
    ck_ok(dsrt_comm_init_all("inproc", q->dev, n, q->c));
    for (int r = 0; r < n; r++) {
        ck_assert_int_eq(dsrt_comm_rank(q->c[r]), r);
        ck_assert_int_eq(dsrt_comm_size(q->c[r]), n);
        ck_assert_str_eq(dsrt_comm_impl(q->c[r]), "inproc");
        ck_assert_ptr_eq(dsrt_comm_device(q->c[r]), q->dev[r]);
    }
}

static void clique_close(clique *q)
{
    for (int r = 0; r < q->n; r++) {
        dsrt_status_free(dsrt_stream_sync(q->s[r]));
        dsrt_comm_release(q->c[r]);
        dsrt_stream_release(q->s[r]);
        dsrt_device_release(q->dev[r]);
    }
}

/* ---- host data ---- */

static void put(dsrt_dtype dt, void *base, int64_t i, double v)
{
    switch (dt) {
    case DSRT_F32: ((float *)base)[i] = (float)v; break;
    case DSRT_BF16: ((uint16_t *)base)[i] = dsrt_f32_to_bf16((float)v); break;
    case DSRT_F16: ((uint16_t *)base)[i] = dsrt_f32_to_f16((float)v); break;
    case DSRT_I32: ((int32_t *)base)[i] = (int32_t)v; break;
    case DSRT_I64: ((int64_t *)base)[i] = (int64_t)v; break;
    default: ck_abort_msg("put: dtype %s", dsrt_dtype_name(dt));
    }
}

static double get(dsrt_dtype dt, const void *base, int64_t i)
{
    switch (dt) {
    case DSRT_F32: return ((const float *)base)[i];
    case DSRT_BF16: return dsrt_bf16_to_f32(((const uint16_t *)base)[i]);
    case DSRT_F16: return dsrt_f16_to_f32(((const uint16_t *)base)[i]);
    case DSRT_I32: return ((const int32_t *)base)[i];
    case DSRT_I64: return (double)((const int64_t *)base)[i];
    default: ck_abort_msg("get: dtype %s", dsrt_dtype_name(dt));
    }
    return 0;
}

/* Small multiples of 1/4 (floats) or small integers: every sum, max and min the tests form is exact
 * in f32 and bf16, so results compare with ==. */
static double val(dsrt_dtype dt, int rank, int64_t i)
{
    int64_t k = (rank * 7 + i * 3) % 11 - 5;
    return dt == DSRT_I32 || dt == DSRT_I64 ? (double)(k + (rank * 13 + i * 5) % 17) : 0.25 * (double)k;
}

/* A device tensor of `numel` elements on rank r's device, filled from `host` (or a byte pattern). */
static dsrt_tensor dev_tensor(clique *q, int r, dsrt_dtype dt, int64_t numel, const void *host)
{
    size_t bytes = (size_t)numel * dsrt_dtype_size(dt);
    dsrt_buffer *b;
    ck_ok(dsrt_buffer_alloc(q->dev[r], bytes ? bytes : 1, &b));
    dsrt_tensor t;
    ck_ok(dsrt_tensor_make(b, 0, dt, 1, &numel, &t));
    if (host && bytes) ck_ok(dsrt_stream_write(q->s[r], b, 0, host, bytes));
    else if (bytes) ck_ok(dsrt_stream_fill(q->s[r], b, 0, bytes, &(uint8_t){0xAB}, 1));
    ck_ok(dsrt_stream_sync(q->s[r]));
    return t;
}

static void *download(clique *q, int r, const dsrt_tensor *t)
{
    size_t bytes = dsrt_tensor_nbytes(t);
    void *h = malloc(bytes ? bytes : 1);
    ck_ok(dsrt_stream_read(q->s[r], t->buf, t->offset, h, bytes));
    ck_ok(dsrt_stream_sync(q->s[r]));
    return h;
}

static void free_tensor(dsrt_tensor *t)
{
    if (t->buf) dsrt_buffer_release(t->buf);
    t->buf = NULL;
}

/* ---- running one call on every rank ---- */

typedef enum { K_ALL_REDUCE, K_ALL_GATHER, K_REDUCE_SCATTER, K_ALL_TO_ALL, K_ALL_TO_ALLV, K_BROADCAST, K_RING } kind;

typedef struct spec {
    kind k;
    dsrt_reduce_op op;
    int root;
    dsrt_tensor send[MAXR], recv[MAXR];
    int64_t sc[MAXR][MAXR], sd[MAXR][MAXR], rc[MAXR][MAXR], rd[MAXR][MAXR];
    dsrt_stream *stream_override[MAXR]; /* error tests: a wrong stream */
} spec;

static dsrt_status do_call(clique *q, int r, spec *sp)
{
    dsrt_stream *s = sp->stream_override[r] ? sp->stream_override[r] : q->s[r];
    dsrt_comm *c = q->c[r];
    switch (sp->k) {
    case K_ALL_REDUCE: return dsrt_all_reduce(c, &sp->send[r], &sp->recv[r], sp->op, s);
    case K_ALL_GATHER: return dsrt_all_gather(c, &sp->send[r], &sp->recv[r], s);
    case K_REDUCE_SCATTER: return dsrt_reduce_scatter(c, &sp->send[r], &sp->recv[r], sp->op, s);
    case K_ALL_TO_ALL: return dsrt_all_to_all(c, &sp->send[r], &sp->recv[r], s);
    case K_ALL_TO_ALLV:
        return dsrt_all_to_allv(c, &sp->send[r], sp->sc[r], sp->sd[r], &sp->recv[r], sp->rc[r], sp->rd[r], s);
    case K_BROADCAST: return dsrt_broadcast(c, r == sp->root ? &sp->send[r] : NULL, &sp->recv[r], sp->root, s);
    case K_RING: {
        /* Send to the next rank and receive from the previous one: a cycle, so each rank groups its
         * pair (with one thread per rank it would otherwise block in the send). */
        dsrt_status st = dsrt_comm_group_start(c);
        dsrt_status a = st ? DSRT_OK : dsrt_send(c, &sp->send[r], (r + 1) % q->n, s);
        dsrt_status b = st ? DSRT_OK : dsrt_recv(c, &sp->recv[r], (r + q->n - 1) % q->n, s);
        dsrt_status e = st ? DSRT_OK : dsrt_comm_group_end(c);
        dsrt_status first = st ? st : a ? a : b ? b : e;
        if (first != a) dsrt_status_free(a);
        if (first != b) dsrt_status_free(b);
        if (first != e) dsrt_status_free(e);
        return first;
    }
    }
    return dsrt_error(DSRT_CODE_INTERNAL, "test: bad kind");
}

typedef enum { M_THREADS, M_GROUP, M_GROUP_EACH, M_COUNT } mode;
static const char *mode_name[] = {"one thread per rank", "one thread, one group", "one thread, a group per comm"};

typedef struct rank_job {
    clique *q;
    spec *sp;
    int r;
    dsrt_status st;
} rank_job;

static void *rank_main(void *arg)
{
    rank_job *j = arg;
    j->st = do_call(j->q, j->r, j->sp);
    return NULL;
}

/* Runs sp on every rank. st[r] receives rank r's call status; in the group modes the group end's
 * failure goes to *group (NULL when the caller expects none: then it must succeed). */
static void run_all(clique *q, mode m, spec *sp, dsrt_status st[MAXR], dsrt_status *group)
{
    if (group) *group = DSRT_OK;
    if (m == M_THREADS) {
        pthread_t th[MAXR];
        rank_job jobs[MAXR];
        for (int r = 0; r < q->n; r++) {
            jobs[r] = (rank_job){q, sp, r, DSRT_OK};
            ck_assert_int_eq(pthread_create(&th[r], NULL, rank_main, &jobs[r]), 0);
        }
        for (int r = 0; r < q->n; r++) {
            pthread_join(th[r], NULL);
            st[r] = jobs[r].st;
        }
        return;
    }
    if (m == M_GROUP) ck_ok(dsrt_comm_group_start(q->c[q->n - 1]));
    else
        for (int r = 0; r < q->n; r++) ck_ok(dsrt_comm_group_start(q->c[r]));
    for (int r = 0; r < q->n; r++) st[r] = do_call(q, r, sp);
    dsrt_status g = DSRT_OK;
    if (m == M_GROUP) g = dsrt_comm_group_end(q->c[0]);
    else
        for (int r = 0; r < q->n; r++) {
            dsrt_status e = dsrt_comm_group_end(q->c[r]);
            if (e && !g) g = e;
            else dsrt_status_free(e);
        }
    if (group) *group = g;
    else if (g) ck_abort_msg("group end failed (%s): %s", mode_name[m], dsrt_status_message(g));
}

static void run_ok(clique *q, mode m, spec *sp)
{
    dsrt_status st[MAXR];
    run_all(q, m, sp, st, NULL);
    for (int r = 0; r < q->n; r++)
        if (st[r]) ck_abort_msg("rank %d of %d (%s) failed: %s", r, q->n, mode_name[m], dsrt_status_message(st[r]));
}

/* Syncs first: a collective's upload into recv may still be queued on the stream (buffers must
 * outlive the work enqueued on them). Failures are the test's to check elsewhere. */
static void spec_free(clique *q, spec *sp)
{
    for (int r = 0; r < q->n; r++) dsrt_status_free(dsrt_stream_sync(q->s[r]));
    for (int r = 0; r < q->n; r++) {
        free_tensor(&sp->send[r]);
        free_tensor(&sp->recv[r]);
    }
}

/* Fills every rank's send with val() and a recv of `nrecv` elements with a pattern. */
static void spec_fill(clique *q, spec *sp, dsrt_dtype dt, int64_t nsend, int64_t nrecv)
{
    size_t es = dsrt_dtype_size(dt);
    for (int r = 0; r < q->n; r++) {
        void *h = malloc((size_t)nsend * es + 1);
        for (int64_t i = 0; i < nsend; i++) put(dt, h, i, val(dt, r, i));
        sp->send[r] = dev_tensor(q, r, dt, nsend, h);
        sp->recv[r] = dev_tensor(q, r, dt, nrecv, NULL);
        free(h);
    }
}

static double combine(dsrt_reduce_op op, double a, double b)
{
    switch (op) {
    case DSRT_REDUCE_SUM: return a + b;
    case DSRT_REDUCE_PROD: return a * b;
    case DSRT_REDUCE_MAX: return a > b ? a : b;
    case DSRT_REDUCE_MIN: return a < b ? a : b;
    }
    return 0;
}

static double reduce_at(dsrt_dtype dt, dsrt_reduce_op op, int n, int64_t i)
{
    double a = val(dt, 0, i);
    for (int r = 1; r < n; r++) a = combine(op, a, val(dt, r, i));
    return a;
}

static void expect_eq(dsrt_dtype dt, const void *h, int64_t i, double want, const char *what, int r, mode m)
{
    double got = get(dt, h, i);
    ck_assert_msg(got == want, "%s %s, rank %d, %s: element %lld is %g, expected %g", what, dsrt_dtype_name(dt), r,
                  mode_name[m], (long long)i, got, want);
}

static const dsrt_dtype test_dtypes[] = {DSRT_F32, DSRT_BF16, DSRT_I32};
#define NDT ((int)(sizeof test_dtypes / sizeof test_dtypes[0]))

/* ---- the collectives ---- */

START_TEST(test_all_reduce)
{
    clique q;
    clique_open(&q, 2 + _i);
    const int64_t count = 37;
    for (int d = 0; d < NDT; d++)
        for (int m = 0; m < M_COUNT; m++)
            for (int op = DSRT_REDUCE_SUM; op <= DSRT_REDUCE_MIN; op++) {
                dsrt_dtype dt = test_dtypes[d];
                if (op == DSRT_REDUCE_PROD && dt != DSRT_I32) continue; /* float products are not exact here */
                spec sp = {.k = K_ALL_REDUCE, .op = (dsrt_reduce_op)op};
                spec_fill(&q, &sp, dt, count, count);
                run_ok(&q, (mode)m, &sp);
                for (int r = 0; r < q.n; r++) {
                    void *h = download(&q, r, &sp.recv[r]);
                    for (int64_t i = 0; i < count; i++)
                        expect_eq(dt, h, i, reduce_at(dt, (dsrt_reduce_op)op, q.n, i), "all_reduce", r, (mode)m);
                    free(h);
                }
                spec_free(&q, &sp);
            }
    clique_close(&q);
}
END_TEST

/* In place (recv is send), a size that spans several shared-reduction chunks, and many calls in a
 * row (the staging pool cycles). */
START_TEST(test_all_reduce_in_place_large)
{
    clique q;
    clique_open(&q, 2 + _i);
    const int64_t count = 100000;
    for (int m = 0; m < M_COUNT; m++) {
        spec sp = {.k = K_ALL_REDUCE, .op = DSRT_REDUCE_SUM};
        spec_fill(&q, &sp, DSRT_F32, count, 1);
        for (int r = 0; r < q.n; r++) {
            free_tensor(&sp.recv[r]);
            sp.recv[r] = sp.send[r];
        }
        for (int rep = 0; rep < 3; rep++) run_ok(&q, (mode)m, &sp);
        /* Three in-place sums multiply the first sum by n twice more. */
        double scale = (double)q.n * q.n;
        for (int r = 0; r < q.n; r++) {
            void *h = download(&q, r, &sp.recv[r]);
            for (int64_t i = 0; i < count; i += 997)
                expect_eq(DSRT_F32, h, i, scale * reduce_at(DSRT_F32, DSRT_REDUCE_SUM, q.n, i), "in-place all_reduce", r,
                          (mode)m);
            free(h);
            sp.recv[r].buf = NULL;
        }
        spec_free(&q, &sp);
    }
    for (int m = 0; m < M_COUNT; m++) {
        spec sp = {.k = K_ALL_REDUCE, .op = DSRT_REDUCE_MAX};
        spec_fill(&q, &sp, DSRT_I32, 64, 64);
        for (int rep = 0; rep < 40; rep++) run_ok(&q, (mode)m, &sp);
        void *h = download(&q, q.n - 1, &sp.recv[q.n - 1]);
        for (int64_t i = 0; i < 64; i++)
            expect_eq(DSRT_I32, h, i, reduce_at(DSRT_I32, DSRT_REDUCE_MAX, q.n, i), "repeated all_reduce", q.n - 1,
                      (mode)m);
        free(h);
        spec_free(&q, &sp);
    }
    clique_close(&q);
}
END_TEST

/* bf16 and f16 sums accumulate in fp32 and round once: 1 + 2^-8 + 2^-8 is 1 + 2^-7 (exact in bf16),
 * whereas rounding after each addition would give 1 (each 1 + 2^-8 ties to even). */
START_TEST(test_all_reduce_rounds_once)
{
    clique q;
    clique_open(&q, 3);
    const dsrt_dtype dts[] = {DSRT_BF16, DSRT_F16};
    for (int d = 0; d < 2; d++) {
        dsrt_dtype dt = dts[d];
        double tiny = dt == DSRT_BF16 ? 1.0 / 256 : 1.0 / 2048, want = 1.0 + 2 * tiny;
        spec sp = {.k = K_ALL_REDUCE, .op = DSRT_REDUCE_SUM};
        for (int r = 0; r < 3; r++) {
            int64_t h[4]; /* room for any dtype put() writes */
            for (int i = 0; i < 4; i++) put(dt, h, i, r == 0 ? 1.0 : tiny);
            sp.send[r] = dev_tensor(&q, r, dt, 4, h);
            sp.recv[r] = dev_tensor(&q, r, dt, 4, NULL);
        }
        run_ok(&q, M_GROUP, &sp);
        for (int r = 0; r < 3; r++) {
            void *h = download(&q, r, &sp.recv[r]);
            for (int i = 0; i < 4; i++) expect_eq(dt, h, i, want, "rounded-once all_reduce", r, M_GROUP);
            free(h);
        }
        spec_free(&q, &sp);
    }
    /* i64 sums are exact beyond 2^53. */
    spec sp = {.k = K_ALL_REDUCE, .op = DSRT_REDUCE_SUM};
    for (int r = 0; r < 3; r++) {
        int64_t h[2] = {((int64_t)1 << 60) + r, -r};
        sp.send[r] = dev_tensor(&q, r, DSRT_I64, 2, h);
        sp.recv[r] = dev_tensor(&q, r, DSRT_I64, 2, NULL);
    }
    run_ok(&q, M_THREADS, &sp);
    int64_t *h = download(&q, 1, &sp.recv[1]);
    ck_assert(h[0] == ((int64_t)3 << 60) + 3);
    ck_assert(h[1] == -3);
    free(h);
    spec_free(&q, &sp);
    clique_close(&q);
}
END_TEST

START_TEST(test_all_gather)
{
    clique q;
    clique_open(&q, 2 + _i);
    const int64_t count = 13;
    for (int d = 0; d < NDT; d++)
        for (int m = 0; m < M_COUNT; m++) {
            dsrt_dtype dt = test_dtypes[d];
            spec sp = {.k = K_ALL_GATHER};
            spec_fill(&q, &sp, dt, count, count * q.n);
            run_ok(&q, (mode)m, &sp);
            for (int r = 0; r < q.n; r++) {
                void *h = download(&q, r, &sp.recv[r]);
                for (int src = 0; src < q.n; src++)
                    for (int64_t i = 0; i < count; i++)
                        expect_eq(dt, h, src * count + i, val(dt, src, i), "all_gather", r, (mode)m);
                free(h);
            }
            spec_free(&q, &sp);
        }
    clique_close(&q);
}
END_TEST

START_TEST(test_reduce_scatter)
{
    clique q;
    clique_open(&q, 2 + _i);
    const int64_t count = 9;
    for (int d = 0; d < NDT; d++)
        for (int m = 0; m < M_COUNT; m++) {
            dsrt_dtype dt = test_dtypes[d];
            spec sp = {.k = K_REDUCE_SCATTER, .op = DSRT_REDUCE_SUM};
            spec_fill(&q, &sp, dt, count * q.n, count);
            run_ok(&q, (mode)m, &sp);
            for (int r = 0; r < q.n; r++) {
                void *h = download(&q, r, &sp.recv[r]);
                for (int64_t i = 0; i < count; i++)
                    expect_eq(dt, h, i, reduce_at(dt, DSRT_REDUCE_SUM, q.n, r * count + i), "reduce_scatter", r, (mode)m);
                free(h);
            }
            spec_free(&q, &sp);
        }
    clique_close(&q);
}
END_TEST

START_TEST(test_all_to_all)
{
    clique q;
    clique_open(&q, 2 + _i);
    const int64_t count = 5;
    for (int d = 0; d < NDT; d++)
        for (int m = 0; m < M_COUNT; m++) {
            dsrt_dtype dt = test_dtypes[d];
            spec sp = {.k = K_ALL_TO_ALL};
            spec_fill(&q, &sp, dt, count * q.n, count * q.n);
            run_ok(&q, (mode)m, &sp);
            for (int r = 0; r < q.n; r++) {
                void *h = download(&q, r, &sp.recv[r]);
                /* recv block i is rank i's send block r */
                for (int i = 0; i < q.n; i++)
                    for (int64_t e = 0; e < count; e++)
                        expect_eq(dt, h, i * count + e, val(dt, i, r * count + e), "all_to_all", r, (mode)m);
                free(h);
            }
            spec_free(&q, &sp);
        }
    clique_close(&q);
}
END_TEST

/* Uneven counts (some zero), segments in reverse order on the receiver, and a gap in recv that must
 * keep its contents. */
static void allv_layout(int n, spec *sp, int64_t *nsend, int64_t *nrecv)
{
    *nsend = *nrecv = 0;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) sp->sc[i][j] = (i + 2 * j) % 4; /* rank i sends this many to rank j */
    for (int i = 0; i < n; i++) {
        int64_t off = 0;
        for (int j = 0; j < n; j++) sp->sd[i][j] = off, off += sp->sc[i][j];
        if (off > *nsend) *nsend = off;
    }
    for (int j = 0; j < n; j++) {
        int64_t off = 1; /* element 0 stays untouched */
        for (int i = n - 1; i >= 0; i--) sp->rc[j][i] = sp->sc[i][j], sp->rd[j][i] = off, off += sp->sc[i][j];
        if (off + 1 > *nrecv) *nrecv = off + 1;
    }
}

START_TEST(test_all_to_allv)
{
    clique q;
    clique_open(&q, 2 + _i);
    for (int d = 0; d < NDT; d++)
        for (int m = 0; m < M_COUNT; m++) {
            dsrt_dtype dt = test_dtypes[d];
            spec sp = {.k = K_ALL_TO_ALLV};
            int64_t nsend, nrecv;
            allv_layout(q.n, &sp, &nsend, &nrecv);
            spec_fill(&q, &sp, dt, nsend, nrecv);
            void *before = download(&q, 0, &sp.recv[0]);
            run_ok(&q, (mode)m, &sp);
            for (int j = 0; j < q.n; j++) {
                void *h = download(&q, j, &sp.recv[j]);
                ck_assert_msg(memcmp(h, before, dsrt_dtype_size(dt)) == 0, "all_to_allv overwrote a gap on rank %d", j);
                for (int i = 0; i < q.n; i++)
                    for (int64_t e = 0; e < sp.rc[j][i]; e++)
                        expect_eq(dt, h, sp.rd[j][i] + e, val(dt, i, sp.sd[i][j] + e), "all_to_allv", j, (mode)m);
                free(h);
            }
            free(before);
            spec_free(&q, &sp);
        }
    clique_close(&q);
}
END_TEST

START_TEST(test_broadcast)
{
    clique q;
    clique_open(&q, 2 + _i);
    const int64_t count = 21;
    for (int d = 0; d < NDT; d++)
        for (int m = 0; m < M_COUNT; m++) {
            dsrt_dtype dt = test_dtypes[d];
            spec sp = {.k = K_BROADCAST, .root = (d + m) % q.n};
            spec_fill(&q, &sp, dt, count, count);
            run_ok(&q, (mode)m, &sp);
            for (int r = 0; r < q.n; r++) {
                void *h = download(&q, r, &sp.recv[r]);
                for (int64_t i = 0; i < count; i++) expect_eq(dt, h, i, val(dt, sp.root, i), "broadcast", r, (mode)m);
                free(h);
            }
            spec_free(&q, &sp);
        }
    clique_close(&q);
}
END_TEST

START_TEST(test_send_recv_ring)
{
    clique q;
    clique_open(&q, 2 + _i);
    const int64_t count = 17;
    for (int d = 0; d < NDT; d++)
        for (int m = 0; m < M_COUNT; m++) {
            dsrt_dtype dt = test_dtypes[d];
            spec sp = {.k = K_RING};
            spec_fill(&q, &sp, dt, count, count);
            run_ok(&q, (mode)m, &sp);
            for (int r = 0; r < q.n; r++) {
                void *h = download(&q, r, &sp.recv[r]);
                int from = (r + q.n - 1) % q.n;
                for (int64_t i = 0; i < count; i++) expect_eq(dt, h, i, val(dt, from, i), "send/recv ring", r, (mode)m);
                free(h);
            }
            spec_free(&q, &sp);
        }
    clique_close(&q);
}
END_TEST

/* A pair exchange without groups, one thread per rank: rank 0 sends then receives, rank 1 receives
 * then sends; and a send to oneself inside a group. */
typedef struct pair_job {
    clique *q;
    int r;
    dsrt_tensor a, b;
    dsrt_status st;
} pair_job;

static void *pair_main(void *arg)
{
    pair_job *j = arg;
    dsrt_comm *c = j->q->c[j->r];
    dsrt_stream *s = j->q->s[j->r];
    if (j->r == 0) {
        j->st = dsrt_send(c, &j->a, 1, s);
        if (!j->st) j->st = dsrt_recv(c, &j->b, 1, s);
    } else {
        j->st = dsrt_recv(c, &j->b, 0, s);
        if (!j->st) j->st = dsrt_send(c, &j->a, 0, s);
    }
    return NULL;
}

START_TEST(test_send_recv_pairs)
{
    clique q;
    clique_open(&q, 2);
    pair_job jobs[2];
    pthread_t th[2];
    for (int r = 0; r < 2; r++) {
        int32_t h[6];
        for (int i = 0; i < 6; i++) h[i] = 100 * r + i;
        jobs[r] = (pair_job){&q, r, dev_tensor(&q, r, DSRT_I32, 6, h), dev_tensor(&q, r, DSRT_I32, 6, NULL), DSRT_OK};
        ck_assert_int_eq(pthread_create(&th[r], NULL, pair_main, &jobs[r]), 0);
    }
    for (int r = 0; r < 2; r++) pthread_join(th[r], NULL);
    for (int r = 0; r < 2; r++) {
        ck_ok(jobs[r].st);
        int32_t *h = download(&q, r, &jobs[r].b);
        for (int i = 0; i < 6; i++) ck_assert_int_eq(h[i], 100 * (1 - r) + i);
        free(h);
    }
    /* to oneself */
    ck_ok(dsrt_comm_group_start(q.c[1]));
    ck_ok(dsrt_send(q.c[1], &jobs[1].a, 1, q.s[1]));
    ck_ok(dsrt_recv(q.c[1], &jobs[1].b, 1, q.s[1]));
    ck_ok(dsrt_comm_group_end(q.c[1]));
    int32_t *h = download(&q, 1, &jobs[1].b);
    for (int i = 0; i < 6; i++) ck_assert_int_eq(h[i], 100 + i);
    free(h);
    for (int r = 0; r < 2; r++) free_tensor(&jobs[r].a), free_tensor(&jobs[r].b);
    clique_close(&q);
}
END_TEST

/* The input is read after work enqueued before the call; work enqueued after sees the output. */
START_TEST(test_stream_ordering)
{
    clique q;
    clique_open(&q, 3);
    const int64_t count = 4096;
    for (int m = 0; m < M_COUNT; m++) {
        spec sp = {.k = K_ALL_REDUCE, .op = DSRT_REDUCE_SUM};
        dsrt_tensor copy[MAXR];
        for (int r = 0; r < q.n; r++) {
            sp.send[r] = dev_tensor(&q, r, DSRT_I32, count, NULL);
            sp.recv[r] = dev_tensor(&q, r, DSRT_I32, count, NULL);
            copy[r] = dev_tensor(&q, r, DSRT_I32, count, NULL);
            /* enqueued, not waited for */
            int32_t v = r + 1;
            ck_ok(dsrt_stream_fill(q.s[r], sp.send[r].buf, 0, (size_t)count * 4, &v, 4));
        }
        run_ok(&q, (mode)m, &sp);
        for (int r = 0; r < q.n; r++)
            ck_ok(dsrt_stream_copy(q.s[r], sp.recv[r].buf, 0, copy[r].buf, 0, (size_t)count * 4));
        int32_t want = q.n * (q.n + 1) / 2;
        for (int r = 0; r < q.n; r++) {
            int32_t *h = download(&q, r, &copy[r]);
            for (int64_t i = 0; i < count; i += 511)
                ck_assert_msg(h[i] == want, "%s: rank %d element %lld is %d, expected %d", mode_name[m], r, (long long)i,
                              h[i], want);
            free(h);
            free_tensor(&copy[r]);
        }
        spec_free(&q, &sp);
    }
    clique_close(&q);
}
END_TEST

/* Several different calls in one group, then the communicators keep working. */
START_TEST(test_group_of_several)
{
    clique q;
    clique_open(&q, 4);
    spec a = {.k = K_ALL_GATHER}, b = {.k = K_BROADCAST, .root = 2};
    spec_fill(&q, &a, DSRT_F32, 3, 12);
    spec_fill(&q, &b, DSRT_BF16, 5, 5);
    ck_ok(dsrt_comm_group_start(q.c[0]));
    ck_ok(dsrt_comm_group_start(q.c[0])); /* nested */
    for (int r = 0; r < 4; r++) ck_ok(do_call(&q, r, &a));
    ck_ok(dsrt_comm_group_end(q.c[0]));
    for (int r = 0; r < 4; r++) ck_ok(do_call(&q, r, &b));
    ck_ok(dsrt_comm_group_end(q.c[3]));
    for (int r = 0; r < 4; r++) {
        void *h = download(&q, r, &a.recv[r]);
        for (int s = 0; s < 4; s++)
            for (int i = 0; i < 3; i++) expect_eq(DSRT_F32, h, s * 3 + i, val(DSRT_F32, s, i), "grouped all_gather", r, M_GROUP);
        free(h);
        h = download(&q, r, &b.recv[r]);
        for (int i = 0; i < 5; i++) expect_eq(DSRT_BF16, h, i, val(DSRT_BF16, 2, i), "grouped broadcast", r, M_GROUP);
        free(h);
    }
    spec_free(&q, &a);
    spec_free(&q, &b);
    clique_close(&q);
}
END_TEST

/* ---- mixed backends ---- */

/* A second backend registered by the test: a stand-in for another vendor's accelerator. Its memory
 * is not host-visible (buffer_alloc returns no host pointer), so everything crosses through the
 * stream's read and write, as with a discrete GPU; its streams run work at once. */
typedef struct fake_buf {
    size_t size;
    unsigned char bytes[];
} fake_buf;

static dsrt_status fake_init(void **bctx)
{
    *bctx = NULL;
    return DSRT_OK;
}
static void fake_deinit(void *bctx) { (void)bctx; }
static dsrt_status fake_device_count(void *bctx, int *count, char *why, size_t why_len)
{
    *count = 1;
    return DSRT_OK;
}
static dsrt_status fake_device_caps(void *bctx, int index, dsrt_device_caps *caps)
{
    memset(caps, 0, sizeof *caps);
    snprintf(caps->name, sizeof caps->name, "test accelerator");
    snprintf(caps->vendor, sizeof caps->vendor, "dsrt tests");
    caps->type = DSRT_DEVICE_ACCELERATOR;
    caps->memory_bytes = caps->max_alloc_bytes = 1u << 30;
    caps->numa_node = -1;
    return DSRT_OK;
}
static dsrt_status fake_device_open(void *bctx, int index, void **dctx)
{
    *dctx = (void *)1;
    return DSRT_OK;
}
static void fake_device_close(void *dctx) { (void)dctx; }
static dsrt_status fake_buffer_alloc(void *dctx, size_t bytes, void **handle, void **host_ptr)
{
    fake_buf *b = calloc(1, sizeof *b + bytes);
    if (!b) return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "fake: out of memory");
    b->size = bytes;
    *handle = b;
    *host_ptr = NULL;
    return DSRT_OK;
}
static void fake_buffer_free(void *dctx, void *handle) { free(handle); }
static dsrt_status fake_stream_create(void *dctx, void **sctx)
{
    *sctx = (void *)1;
    return DSRT_OK;
}
static void fake_stream_destroy(void *sctx) { (void)sctx; }
static dsrt_status fake_ok(void *ctx) { return DSRT_OK; }
static dsrt_status fake_write(void *sctx, void *dst, size_t off, const void *src, size_t bytes)
{
    memcpy(((fake_buf *)dst)->bytes + off, src, bytes);
    return DSRT_OK;
}
static dsrt_status fake_read(void *sctx, void *src, size_t off, void *dst, size_t bytes)
{
    memcpy(dst, ((fake_buf *)src)->bytes + off, bytes);
    return DSRT_OK;
}
static dsrt_status fake_copy(void *sctx, void *src, size_t so, void *dst, size_t dof, size_t bytes)
{
    memmove(((fake_buf *)dst)->bytes + dof, ((fake_buf *)src)->bytes + so, bytes);
    return DSRT_OK;
}
static dsrt_status fake_fill(void *sctx, void *dst, size_t off, size_t bytes, const void *pat, size_t ps)
{
    for (size_t i = 0; i < bytes; i += ps) memcpy(((fake_buf *)dst)->bytes + off + i, pat, ps);
    return DSRT_OK;
}
static dsrt_status fake_event_create(void *dctx, void **ectx)
{
    *ectx = (void *)1;
    return DSRT_OK;
}
static void fake_event_destroy(void *ectx) { (void)ectx; }
static dsrt_status fake_event_record(void *ectx, void *sctx) { return DSRT_OK; }
static dsrt_status fake_event_query(void *ectx, bool *done)
{
    *done = true;
    return DSRT_OK;
}
static bool fake_supports(void *dctx, const dsrt_op *op, char *why, size_t why_len)
{
    snprintf(why, why_len, "the test accelerator runs no ops");
    return false;
}
static dsrt_status fake_enqueue(void *sctx, const dsrt_op *op)
{
    return dsrt_error(DSRT_CODE_UNIMPLEMENTED, "fake: no ops");
}

static const dsrt_backend_vtable fake_vtable = {
    .abi_version = DSRT_BACKEND_ABI_VERSION,
    .struct_size = sizeof(dsrt_backend_vtable),
    .name = "testaccel",
    .init = fake_init,
    .deinit = fake_deinit,
    .device_count = fake_device_count,
    .device_caps = fake_device_caps,
    .device_open = fake_device_open,
    .device_close = fake_device_close,
    .buffer_alloc = fake_buffer_alloc,
    .buffer_free = fake_buffer_free,
    .stream_create = fake_stream_create,
    .stream_destroy = fake_stream_destroy,
    .stream_sync = fake_ok,
    .write = fake_write,
    .read = fake_read,
    .copy = fake_copy,
    .fill = fake_fill,
    .event_create = fake_event_create,
    .event_destroy = fake_event_destroy,
    .event_record = fake_event_record,
    .stream_wait_event = fake_event_record,
    .event_sync = fake_ok,
    .event_query = fake_event_query,
    .supports_op = fake_supports,
    .enqueue_op = fake_enqueue,
};

/* A clique of n ranks alternating CPU and the test accelerator. */
static void clique_open_mixed(clique *q, int n)
{
    memset(q, 0, sizeof *q);
    q->n = n;
    dsrt_backend *cpu, *acc;
    ck_ok(dsrt_backend_find("cpu", &cpu));
    dsrt_status st = dsrt_backend_find("testaccel", &acc);
    if (st) {
        dsrt_status_free(st);
        ck_ok(dsrt_registry_add(&fake_vtable, &acc));
    }
    for (int r = 0; r < n; r++) {
        ck_ok(dsrt_device_open(r % 2 ? acc : cpu, 0, &q->dev[r]));
        ck_ok(dsrt_stream_create(q->dev[r], &q->s[r]));
    }
    ck_ok(dsrt_comm_init_all(NULL, q->dev, n, q->c));
    ck_assert_str_eq(dsrt_comm_impl(q->c[0]), "inproc");
    dsrt_tensor probe = dev_tensor(q, 1, DSRT_U8, 1, NULL);
    ck_assert_msg(dsrt_buffer_host_ptr(probe.buf) == NULL, "the test accelerator's memory must not be host-visible");
    free_tensor(&probe);
}

START_TEST(test_mixed_backends)
{
    clique q;
    clique_open_mixed(&q, 2 + _i);
    for (int m = 0; m < M_COUNT; m++) {
        spec ar = {.k = K_ALL_REDUCE, .op = DSRT_REDUCE_SUM};
        spec_fill(&q, &ar, DSRT_BF16, 33, 33);
        run_ok(&q, (mode)m, &ar);
        spec ag = {.k = K_ALL_GATHER};
        spec_fill(&q, &ag, DSRT_F32, 5, 5 * q.n);
        run_ok(&q, (mode)m, &ag);
        spec av = {.k = K_ALL_TO_ALLV};
        int64_t nsend, nrecv;
        allv_layout(q.n, &av, &nsend, &nrecv);
        spec_fill(&q, &av, DSRT_I32, nsend, nrecv);
        run_ok(&q, (mode)m, &av);
        spec ring = {.k = K_RING};
        spec_fill(&q, &ring, DSRT_I32, 9, 9);
        run_ok(&q, (mode)m, &ring);
        for (int r = 0; r < q.n; r++) {
            void *h = download(&q, r, &ar.recv[r]);
            for (int64_t i = 0; i < 33; i++)
                expect_eq(DSRT_BF16, h, i, reduce_at(DSRT_BF16, DSRT_REDUCE_SUM, q.n, i), "mixed all_reduce", r, (mode)m);
            free(h);
            h = download(&q, r, &ag.recv[r]);
            for (int s = 0; s < q.n; s++)
                for (int64_t i = 0; i < 5; i++) expect_eq(DSRT_F32, h, s * 5 + i, val(DSRT_F32, s, i), "mixed all_gather", r, (mode)m);
            free(h);
            h = download(&q, r, &av.recv[r]);
            for (int i = 0; i < q.n; i++)
                for (int64_t e = 0; e < av.rc[r][i]; e++)
                    expect_eq(DSRT_I32, h, av.rd[r][i] + e, val(DSRT_I32, i, av.sd[i][r] + e), "mixed all_to_allv", r, (mode)m);
            free(h);
            h = download(&q, r, &ring.recv[r]);
            for (int64_t i = 0; i < 9; i++)
                expect_eq(DSRT_I32, h, i, val(DSRT_I32, (r + q.n - 1) % q.n, i), "mixed send/recv", r, (mode)m);
            free(h);
        }
        spec_free(&q, &ar);
        spec_free(&q, &ag);
        spec_free(&q, &av);
        spec_free(&q, &ring);
    }
    clique_close(&q);
}
END_TEST

/* ---- errors ---- */

/* Checks that every rank's call (or the group end) failed with a message containing `needle`. */
static void expect_all_fail(clique *q, mode m, dsrt_status st[MAXR], dsrt_status group, const char *needle)
{
    if (m == M_THREADS) {
        for (int r = 0; r < q->n; r++) ck_fails(st[r], DSRT_CODE_INVALID_ARGUMENT, needle);
    } else {
        for (int r = 0; r < q->n; r++) ck_ok(st[r]);
        ck_fails(group, DSRT_CODE_INVALID_ARGUMENT, needle);
    }
}

static void check_still_works(clique *q, mode m)
{
    spec sp = {.k = K_ALL_REDUCE, .op = DSRT_REDUCE_SUM};
    spec_fill(q, &sp, DSRT_I32, 7, 7);
    run_ok(q, m, &sp);
    for (int r = 0; r < q->n; r++) {
        void *h = download(q, r, &sp.recv[r]);
        for (int64_t i = 0; i < 7; i++)
            expect_eq(DSRT_I32, h, i, reduce_at(DSRT_I32, DSRT_REDUCE_SUM, q->n, i), "all_reduce after an error", r, m);
        free(h);
    }
    spec_free(q, &sp);
}

START_TEST(test_error_mismatched_sizes)
{
    clique q;
    clique_open(&q, 2 + _i);
    for (int m = 0; m < M_COUNT; m++) {
        spec sp = {.k = K_ALL_REDUCE, .op = DSRT_REDUCE_SUM};
        for (int r = 0; r < q.n; r++) {
            int64_t n = r == 1 ? 6 : 8;
            sp.send[r] = dev_tensor(&q, r, DSRT_F32, n, NULL);
            sp.recv[r] = dev_tensor(&q, r, DSRT_F32, n, NULL);
        }
        dsrt_status st[MAXR], g;
        run_all(&q, (mode)m, &sp, st, &g);
        expect_all_fail(&q, (mode)m, st, g, "rank 0 passes 8 elements but rank 1 passes 6");
        spec_free(&q, &sp);

        /* a different dtype on one rank */
        spec sd = {.k = K_ALL_GATHER};
        for (int r = 0; r < q.n; r++) {
            dsrt_dtype dt = r == q.n - 1 ? DSRT_BF16 : DSRT_F32;
            sd.send[r] = dev_tensor(&q, r, dt, 2, NULL);
            sd.recv[r] = dev_tensor(&q, r, dt, 2 * q.n, NULL);
        }
        run_all(&q, (mode)m, &sd, st, &g);
        char needle[96];
        snprintf(needle, sizeof needle, "rank 0 passes f32 data but rank %d passes bf16", q.n - 1);
        expect_all_fail(&q, (mode)m, st, g, needle);
        spec_free(&q, &sd);

        /* all_to_allv counts that do not pair up */
        spec sv = {.k = K_ALL_TO_ALLV};
        int64_t nsend, nrecv;
        allv_layout(q.n, &sv, &nsend, &nrecv);
        sv.rc[1][0] += 1;
        nrecv += 1;
        spec_fill(&q, &sv, DSRT_I32, nsend, nrecv);
        run_all(&q, (mode)m, &sv, st, &g);
        snprintf(needle, sizeof needle, "rank 1 expects %lld elements from rank 0 but rank 0 sends it %lld",
                 (long long)sv.rc[1][0], (long long)sv.sc[0][1]);
        expect_all_fail(&q, (mode)m, st, g, needle);
        spec_free(&q, &sv);

        /* send and recv of different sizes: both sides hear */
        spec sr = {.k = K_RING};
        for (int r = 0; r < q.n; r++) {
            sr.send[r] = dev_tensor(&q, r, DSRT_I32, 4, NULL);
            sr.recv[r] = dev_tensor(&q, r, DSRT_I32, r == 1 ? 3 : 4, NULL);
        }
        run_all(&q, (mode)m, &sr, st, &g);
        if (m == M_THREADS) {
            ck_fails(st[0], DSRT_CODE_INVALID_ARGUMENT, "rank 0 sends 4 i32 elements but rank 1 receives 3");
            ck_fails(st[1], DSRT_CODE_INVALID_ARGUMENT, "rank 0 sends 4 i32 elements but rank 1 receives 3");
            for (int r = 2; r < q.n; r++) ck_ok(st[r]);
        } else {
            /* do_call groups the pair itself: its nested group end returned OK, the outer one fails */
            ck_fails(g, DSRT_CODE_INVALID_ARGUMENT, "rank 0 sends 4 i32 elements but rank 1 receives 3");
            for (int r = 0; r < q.n; r++) ck_ok(st[r]);
        }
        spec_free(&q, &sr);

        /* mismatched collectives */
        spec a = {.k = K_ALL_REDUCE, .op = DSRT_REDUCE_SUM};
        spec_fill(&q, &a, DSRT_I32, 4, 4);
        spec b = {.k = K_ALL_GATHER};
        spec_fill(&q, &b, DSRT_I32, 4, 4 * q.n);
        if (m == M_THREADS) {
            /* rank 0 all_reduce, the others all_gather (run on threads by hand) */
            pthread_t th[MAXR];
            rank_job jobs[MAXR];
            for (int r = 0; r < q.n; r++) {
                jobs[r] = (rank_job){&q, r == 0 ? &a : &b, r, DSRT_OK};
                pthread_create(&th[r], NULL, rank_main, &jobs[r]);
            }
            for (int r = 0; r < q.n; r++) pthread_join(th[r], NULL);
            for (int r = 0; r < q.n; r++)
                ck_fails(jobs[r].st, DSRT_CODE_INVALID_ARGUMENT, "rank 0 called all_reduce but rank 1 called all_gather");
        } else {
            ck_ok(dsrt_comm_group_start(q.c[0]));
            ck_ok(do_call(&q, 0, &a));
            for (int r = 1; r < q.n; r++) ck_ok(do_call(&q, r, &b));
            ck_fails(dsrt_comm_group_end(q.c[0]), DSRT_CODE_INVALID_ARGUMENT,
                     "rank 0 called all_reduce but rank 1 called all_gather");
        }
        spec_free(&q, &a);
        spec_free(&q, &b);

        check_still_works(&q, (mode)m);
    }
    clique_close(&q);
}
END_TEST

START_TEST(test_error_wrong_device_stream)
{
    clique q;
    clique_open(&q, 2 + _i);
    for (int m = 0; m < M_COUNT; m++) {
        spec sp = {.k = K_ALL_REDUCE, .op = DSRT_REDUCE_SUM};
        spec_fill(&q, &sp, DSRT_F32, 5, 5);
        sp.stream_override[1] = q.s[0];
        dsrt_status st[MAXR], g;
        run_all(&q, (mode)m, &sp, st, &g);
        /* rank 1 rejects the call itself; the others fail naming it instead of waiting */
        ck_fails(st[1], DSRT_CODE_INVALID_ARGUMENT, "stream belongs to another opened instance of cpu:0");
        ck_fails(dsrt_all_reduce(q.c[1], &sp.send[1], &sp.recv[1], DSRT_REDUCE_SUM, NULL), DSRT_CODE_INVALID_ARGUMENT,
                 "stream is NULL");
        if (m == M_THREADS) {
            for (int r = 0; r < q.n; r++)
                if (r != 1) ck_fails(st[r], DSRT_CODE_INVALID_ARGUMENT, "rank 1 did not take part");
        } else {
            ck_fails(g, DSRT_CODE_INVALID_ARGUMENT, "rank 1 did not take part");
        }
        /* The NULL-stream call above was a second all_reduce on rank 1 alone: the others match it. */
        spec again = {.k = K_ALL_REDUCE, .op = DSRT_REDUCE_SUM};
        spec_fill(&q, &again, DSRT_F32, 5, 5);
        dsrt_status st2[MAXR];
        for (int r = 0; r < q.n; r++) st2[r] = DSRT_OK;
        if (m == M_THREADS) {
            pthread_t th[MAXR];
            rank_job jobs[MAXR];
            for (int r = 0; r < q.n; r++) {
                if (r == 1) continue;
                jobs[r] = (rank_job){&q, &again, r, DSRT_OK};
                pthread_create(&th[r], NULL, rank_main, &jobs[r]);
            }
            for (int r = 0; r < q.n; r++)
                if (r != 1) pthread_join(th[r], NULL), st2[r] = jobs[r].st;
            for (int r = 0; r < q.n; r++)
                if (r != 1) ck_fails(st2[r], DSRT_CODE_INVALID_ARGUMENT, "stream is NULL");
        } else {
            ck_ok(dsrt_comm_group_start(q.c[0]));
            for (int r = 0; r < q.n; r++)
                if (r != 1) ck_ok(do_call(&q, r, &again));
            ck_fails(dsrt_comm_group_end(q.c[0]), DSRT_CODE_INVALID_ARGUMENT, "rank 1 did not take part");
        }
        spec_free(&q, &again);

        /* a tensor on another rank's device */
        spec_free(&q, &sp);
        spec_fill(&q, &sp, DSRT_F32, 5, 5);
        sp.stream_override[1] = NULL;
        dsrt_tensor keep = sp.recv[1];
        sp.recv[1] = sp.recv[0];
        run_all(&q, (mode)m, &sp, st, &g);
        ck_fails(st[1], DSRT_CODE_INVALID_ARGUMENT, "recv f32[5] lives on another opened instance of cpu:0");
        sp.recv[1] = keep;
        if (m == M_THREADS) {
            for (int r = 0; r < q.n; r++)
                if (r != 1) ck_fails(st[r], DSRT_CODE_INVALID_ARGUMENT, "rank 1 did not take part");
        } else {
            ck_fails(g, DSRT_CODE_INVALID_ARGUMENT, "rank 1 did not take part");
        }
        spec_free(&q, &sp);

        check_still_works(&q, (mode)m);
    }
    clique_close(&q);
}
END_TEST

START_TEST(test_error_rank_out_of_range)
{
    clique q;
    clique_open(&q, 2 + _i);
    dsrt_tensor t = dev_tensor(&q, 0, DSRT_F32, 4, NULL), u = dev_tensor(&q, 0, DSRT_F32, 4, NULL);
    char needle[64];
    snprintf(needle, sizeof needle, "root %d is outside ranks 0..%d", q.n, q.n - 1);
    ck_fails(dsrt_broadcast(q.c[0], &t, &u, q.n, q.s[0]), DSRT_CODE_OUT_OF_RANGE, needle);
    ck_fails(dsrt_broadcast(q.c[0], &t, &u, -1, q.s[0]), DSRT_CODE_OUT_OF_RANGE, "root -1 is outside");
    ck_fails(dsrt_send(q.c[0], &t, q.n, q.s[0]), DSRT_CODE_OUT_OF_RANGE, "peer");
    ck_fails(dsrt_recv(q.c[0], &t, -1, q.s[0]), DSRT_CODE_OUT_OF_RANGE, "peer -1 is outside");
    /* the two rejected broadcasts on rank 0 told the peers: their next two broadcasts fail */
    ck_ok(dsrt_comm_group_start(q.c[1]));
    dsrt_tensor pr[MAXR];
    for (int r = 1; r < q.n; r++) {
        pr[r] = dev_tensor(&q, r, DSRT_F32, 4, NULL);
        ck_ok(dsrt_broadcast(q.c[r], NULL, &pr[r], 0, q.s[r]));
        ck_ok(dsrt_broadcast(q.c[r], NULL, &pr[r], 0, q.s[r]));
    }
    ck_fails(dsrt_comm_group_end(q.c[1]), DSRT_CODE_OUT_OF_RANGE, "rank 0 did not take part");
    for (int r = 0; r < q.n; r++) dsrt_status_free(dsrt_stream_sync(q.s[r]));
    for (int r = 1; r < q.n; r++) free_tensor(&pr[r]);
    free_tensor(&t);
    free_tensor(&u);
    check_still_works(&q, M_GROUP);
    clique_close(&q);
}
END_TEST

START_TEST(test_error_arguments)
{
    clique q;
    clique_open(&q, 2);
    dsrt_tensor f = dev_tensor(&q, 0, DSRT_F32, 8, NULL), b = dev_tensor(&q, 0, DSRT_BF16, 8, NULL);
    dsrt_tensor e = dev_tensor(&q, 0, DSRT_E4M3, 8, NULL), e2 = dev_tensor(&q, 0, DSRT_E4M3, 8, NULL);
    dsrt_tensor big = dev_tensor(&q, 0, DSRT_F32, 16, NULL);
    /* each rejected call also told rank 1; group rank 1's matching calls at the end */
    ck_fails(dsrt_all_reduce(q.c[0], &f, &b, DSRT_REDUCE_SUM, q.s[0]), DSRT_CODE_INVALID_ARGUMENT,
             "send is f32 but recv is bf16");
    ck_fails(dsrt_all_reduce(q.c[0], &e, &e2, DSRT_REDUCE_SUM, q.s[0]), DSRT_CODE_UNIMPLEMENTED, "e4m3 cannot be reduced");
    ck_fails(dsrt_all_reduce(q.c[0], &f, &f, (dsrt_reduce_op)9, q.s[0]), DSRT_CODE_INVALID_ARGUMENT,
             "reduction 9 is not sum");
    ck_fails(dsrt_all_reduce(q.c[0], &f, &big, DSRT_REDUCE_SUM, q.s[0]), DSRT_CODE_INVALID_ARGUMENT,
             "send has 8 elements but recv 16");
    ck_fails(dsrt_all_gather(q.c[0], &f, &f, q.s[0]), DSRT_CODE_INVALID_ARGUMENT,
             "recv has 8 elements but must hold 2 blocks of send's 8");
    ck_fails(dsrt_reduce_scatter(q.c[0], &f, &f, DSRT_REDUCE_SUM, q.s[0]), DSRT_CODE_INVALID_ARGUMENT,
             "send has 8 elements but must hold 2 blocks of recv's 8");
    dsrt_tensor strided;
    int64_t shape[2] = {4, 2}, stride[2] = {4, 1};
    ck_ok(dsrt_tensor_make_strided(big.buf, 0, DSRT_F32, 2, shape, stride, &strided));
    ck_fails(dsrt_all_to_all(q.c[0], &strided, &f, q.s[0]), DSRT_CODE_INVALID_ARGUMENT, "send f32[4,2] is not contiguous");
    dsrt_tensor absent = {0};
    ck_fails(dsrt_all_gather(q.c[0], &absent, &f, q.s[0]), DSRT_CODE_INVALID_ARGUMENT, "send tensor is absent");
    int64_t cnt[2] = {4, 5}, dsp[2] = {0, 4};
    ck_fails(dsrt_all_to_allv(q.c[0], &f, cnt, dsp, &f, cnt, dsp, q.s[0]), DSRT_CODE_OUT_OF_RANGE,
             "send segment for rank 1, elements [4, 9), is outside the 8-element send tensor");
    ck_fails(dsrt_all_to_allv(q.c[0], &f, NULL, dsp, &f, cnt, dsp, q.s[0]), DSRT_CODE_INVALID_ARGUMENT,
             "send counts or displacements are NULL");
    dsrt_buffer *ro;
    static float host_ro[8];
    ck_ok(dsrt_buffer_wrap_host(q.dev[0], host_ro, sizeof host_ro, 1, &ro));
    dsrt_tensor rot;
    int64_t n8 = 8;
    ck_ok(dsrt_tensor_make(ro, 0, DSRT_F32, 1, &n8, &rot));
    ck_fails(dsrt_all_reduce(q.c[0], &f, &rot, DSRT_REDUCE_SUM, q.s[0]), DSRT_CODE_INVALID_ARGUMENT,
             "recv f32[8] is in a read-only buffer");
    dsrt_buffer_release(ro);
    ck_fails(dsrt_all_reduce(NULL, &f, &f, DSRT_REDUCE_SUM, q.s[0]), DSRT_CODE_INVALID_ARGUMENT, "communicator is NULL");
    ck_fails(dsrt_comm_group_end(q.c[0]), DSRT_CODE_INVALID_ARGUMENT, "no open group");

    /* rank 0 rejected 11 collectives (all but the NULL-communicator call), each posted in its place:
     * rank 1 matches them in a group and hears about them */
    dsrt_tensor g1 = dev_tensor(&q, 1, DSRT_F32, 8, NULL);
    ck_ok(dsrt_comm_group_start(q.c[1]));
    for (int k = 0; k < 11; k++) ck_ok(dsrt_all_reduce(q.c[1], &g1, &g1, DSRT_REDUCE_SUM, q.s[1]));
    dsrt_status ge = dsrt_comm_group_end(q.c[1]);
    ck_assert_msg(ge != DSRT_OK, "rank 1's group should fail");
    ck_assert_msg(strstr(dsrt_status_message(ge), "rank 0 did not take part") != NULL, "%s", dsrt_status_message(ge));
    dsrt_status_free(ge);
    for (int r = 0; r < 2; r++) dsrt_status_free(dsrt_stream_sync(q.s[r]));
    free_tensor(&g1);

    free_tensor(&f);
    free_tensor(&b);
    free_tensor(&e);
    free_tensor(&e2);
    free_tensor(&big);
    check_still_works(&q, M_THREADS);
    clique_close(&q);
}
END_TEST

START_TEST(test_init_errors)
{
    dsrt_backend *cpu;
    ck_ok(dsrt_backend_find("cpu", &cpu));
    dsrt_device *d[2];
    ck_ok(dsrt_device_open(cpu, 0, &d[0]));
    ck_ok(dsrt_device_open(cpu, 0, &d[1]));
    dsrt_comm *c[2];
    ck_fails(dsrt_comm_init_all("nosuch", d, 2, c), DSRT_CODE_NOT_FOUND, "no collectives implementation 'nosuch'");
    ck_fails(dsrt_comm_init_all(NULL, d, 0, c), DSRT_CODE_INVALID_ARGUMENT, "0 devices");
    dsrt_device *withnull[2] = {d[0], NULL};
    ck_fails(dsrt_comm_init_all(NULL, withnull, 2, c), DSRT_CODE_INVALID_ARGUMENT, "device 1 is NULL");
    dsrt_comm_unique_id id;
    ck_fails(dsrt_comm_get_unique_id("inproc", &id), DSRT_CODE_UNIMPLEMENTED, "dsrt_comm_init_all");
    memset(&id, 0, sizeof id);
    ck_fails(dsrt_comm_init_rank(NULL, d[0], 2, &id, 0, c), DSRT_CODE_INVALID_ARGUMENT, "not made by dsrt_comm_get_unique_id");
    ck_fails(dsrt_comm_init_rank(NULL, d[0], 2, &id, 2, c), DSRT_CODE_OUT_OF_RANGE, "rank 2 is outside 0..1");
    /* the default picks inproc for CPU devices; one device is a clique of one */
    ck_ok(dsrt_comm_init_all(NULL, d, 1, c));
    ck_assert_str_eq(dsrt_comm_impl(c[0]), "inproc");
    dsrt_stream *s;
    ck_ok(dsrt_stream_create(d[0], &s));
    clique one = {.n = 1};
    one.dev[0] = d[0];
    one.s[0] = s;
    one.c[0] = c[0];
    spec sp = {.k = K_ALL_REDUCE, .op = DSRT_REDUCE_SUM};
    spec_fill(&one, &sp, DSRT_F32, 3, 3);
    run_ok(&one, M_THREADS, &sp);
    void *h = download(&one, 0, &sp.recv[0]);
    for (int i = 0; i < 3; i++) expect_eq(DSRT_F32, h, i, val(DSRT_F32, 0, i), "clique of one", 0, M_THREADS);
    free(h);
    spec_free(&one, &sp);
    dsrt_stream_release(s);
    dsrt_comm_release(c[0]);
    /* where MPI is built in, init_all refuses it (one rank per process); elsewhere it is unknown */
    dsrt_status st = dsrt_comm_init_all("mpi", d, 2, c);
    ck_assert(st != DSRT_OK);
    ck_assert(dsrt_status_code(st) == DSRT_CODE_UNIMPLEMENTED || dsrt_status_code(st) == DSRT_CODE_NOT_FOUND);
    dsrt_status_free(st);
    dsrt_comm_release(NULL);
    dsrt_device_release(d[0]);
    dsrt_device_release(d[1]);
}
END_TEST

/* ---- MPI: one rank of `mpirun -np 2 test_comm --mpi` ---- */

static dsrt_device *mpi_dev;
static dsrt_stream *mpi_s;

static dsrt_tensor mpi_tensor(dsrt_dtype dt, int64_t numel, const void *host)
{
    clique one = {.n = 1};
    one.dev[0] = mpi_dev;
    one.s[0] = mpi_s;
    return dev_tensor(&one, 0, dt, numel, host);
}

static void *mpi_download(const dsrt_tensor *t)
{
    clique one = {.n = 1};
    one.dev[0] = mpi_dev;
    one.s[0] = mpi_s;
    return download(&one, 0, t);
}

static void mpi_checks(dsrt_comm *c)
{
    int me = dsrt_comm_rank(c), n = dsrt_comm_size(c);
    ck_assert_int_ge(n, 2);
    ck_assert_str_eq(dsrt_comm_impl(c), "mpi");
    for (int d = 0; d < NDT; d++) {
        dsrt_dtype dt = test_dtypes[d];
        const int64_t count = 19;
        void *h = malloc((size_t)count * n * 4);
        for (int64_t i = 0; i < count * n; i++) put(dt, h, i, val(dt, me, i));
        dsrt_tensor send = mpi_tensor(dt, count, h), recv = mpi_tensor(dt, count, NULL);
        dsrt_tensor big = mpi_tensor(dt, count * n, NULL), sendn = mpi_tensor(dt, count * n, h);
        free(h);

        ck_ok(dsrt_all_reduce(c, &send, &recv, DSRT_REDUCE_SUM, mpi_s));
        h = mpi_download(&recv);
        for (int64_t i = 0; i < count; i++) expect_eq(dt, h, i, reduce_at(dt, DSRT_REDUCE_SUM, n, i), "mpi all_reduce", me, M_THREADS);
        free(h);

        ck_ok(dsrt_all_reduce(c, &send, &recv, DSRT_REDUCE_MAX, mpi_s));
        h = mpi_download(&recv);
        for (int64_t i = 0; i < count; i++) expect_eq(dt, h, i, reduce_at(dt, DSRT_REDUCE_MAX, n, i), "mpi all_reduce max", me, M_THREADS);
        free(h);

        ck_ok(dsrt_all_gather(c, &send, &big, mpi_s));
        h = mpi_download(&big);
        for (int s = 0; s < n; s++)
            for (int64_t i = 0; i < count; i++) expect_eq(dt, h, s * count + i, val(dt, s, i), "mpi all_gather", me, M_THREADS);
        free(h);

        ck_ok(dsrt_reduce_scatter(c, &sendn, &recv, DSRT_REDUCE_SUM, mpi_s));
        h = mpi_download(&recv);
        for (int64_t i = 0; i < count; i++)
            expect_eq(dt, h, i, reduce_at(dt, DSRT_REDUCE_SUM, n, me * count + i), "mpi reduce_scatter", me, M_THREADS);
        free(h);

        ck_ok(dsrt_all_to_all(c, &sendn, &big, mpi_s));
        h = mpi_download(&big);
        for (int i = 0; i < n; i++)
            for (int64_t e = 0; e < count; e++)
                expect_eq(dt, h, i * count + e, val(dt, i, me * count + e), "mpi all_to_all", me, M_THREADS);
        free(h);

        for (int root = 0; root < n; root++) {
            ck_ok(dsrt_broadcast(c, me == root ? &send : NULL, &recv, root, mpi_s));
            h = mpi_download(&recv);
            for (int64_t i = 0; i < count; i++) expect_eq(dt, h, i, val(dt, root, i), "mpi broadcast", me, M_THREADS);
            free(h);
        }

        /* all_to_allv with the layout of the inproc test (n <= MAXR) */
        if (n <= MAXR) {
            spec sp;
            memset(&sp, 0, sizeof sp);
            int64_t nsend, nrecv;
            allv_layout(n, &sp, &nsend, &nrecv);
            h = malloc((size_t)nsend * 4 + 4);
            for (int64_t i = 0; i < nsend; i++) put(dt, h, i, val(dt, me, i));
            dsrt_tensor vs = mpi_tensor(dt, nsend, h), vr = mpi_tensor(dt, nrecv, NULL);
            free(h);
            void *before = mpi_download(&vr);
            ck_ok(dsrt_all_to_allv(c, &vs, sp.sc[me], sp.sd[me], &vr, sp.rc[me], sp.rd[me], mpi_s));
            h = mpi_download(&vr);
            ck_assert_msg(memcmp(h, before, dsrt_dtype_size(dt)) == 0, "mpi all_to_allv overwrote a gap");
            for (int i = 0; i < n; i++)
                for (int64_t e = 0; e < sp.rc[me][i]; e++)
                    expect_eq(dt, h, sp.rd[me][i] + e, val(dt, i, sp.sd[i][me] + e), "mpi all_to_allv", me, M_THREADS);
            free(h);
            free(before);
            free_tensor(&vs);
            free_tensor(&vr);
        }

        /* send/recv around the ring, grouped so nobody blocks */
        ck_ok(dsrt_comm_group_start(c));
        ck_ok(dsrt_send(c, &send, (me + 1) % n, mpi_s));
        ck_ok(dsrt_recv(c, &recv, (me + n - 1) % n, mpi_s));
        ck_ok(dsrt_comm_group_end(c));
        h = mpi_download(&recv);
        for (int64_t i = 0; i < count; i++) expect_eq(dt, h, i, val(dt, (me + n - 1) % n, i), "mpi send/recv", me, M_THREADS);
        free(h);

        free_tensor(&send);
        free_tensor(&recv);
        free_tensor(&big);
        free_tensor(&sendn);
    }

    /* many receives in flight in one group: the staging pool grows while earlier slots are held */
    enum { NP = 11 };
    dsrt_tensor ps[NP], pr[NP];
    int from = (me + n - 1) % n;
    for (int k = 0; k < NP; k++) {
        int32_t v[3] = {me * 100 + k, k, -k};
        ps[k] = mpi_tensor(DSRT_I32, 3, v);
        pr[k] = mpi_tensor(DSRT_I32, 3, NULL);
    }
    ck_ok(dsrt_comm_group_start(c));
    for (int k = 0; k < NP; k++) {
        ck_ok(dsrt_send(c, &ps[k], (me + 1) % n, mpi_s));
        ck_ok(dsrt_recv(c, &pr[k], from, mpi_s));
    }
    ck_ok(dsrt_comm_group_end(c));
    for (int k = 0; k < NP; k++) {
        int32_t *hv = mpi_download(&pr[k]);
        ck_assert_msg(hv[0] == from * 100 + k && hv[1] == k && hv[2] == -k, "mpi grouped recv %d: %d %d %d", k, hv[0],
                      hv[1], hv[2]);
        free(hv);
        free_tensor(&ps[k]);
        free_tensor(&pr[k]);
    }

    /* errors: sizes that differ between ranks fail everywhere, a rejected call is heard by the peer,
     * and the communicator keeps working */
    dsrt_tensor a = mpi_tensor(DSRT_F32, me == 1 ? 6 : 8, NULL);
    ck_fails(dsrt_all_reduce(c, &a, &a, DSRT_REDUCE_SUM, mpi_s), DSRT_CODE_INVALID_ARGUMENT,
             "the ranks pass different element counts (from 6 to 8)");
    if (me == 1) {
        dsrt_stream *other;
        dsrt_device *d2;
        ck_ok(dsrt_device_open(dsrt_device_backend(mpi_dev), 0, &d2));
        ck_ok(dsrt_stream_create(d2, &other));
        ck_fails(dsrt_all_reduce(c, &a, &a, DSRT_REDUCE_SUM, other), DSRT_CODE_INVALID_ARGUMENT, "stream belongs to another");
        dsrt_stream_release(other);
        dsrt_device_release(d2);
    } else {
        ck_fails(dsrt_all_reduce(c, &a, &a, DSRT_REDUCE_SUM, mpi_s), DSRT_CODE_INVALID_ARGUMENT, "rank 1 did not take part");
    }
    dsrt_status_free(dsrt_stream_sync(mpi_s));
    free_tensor(&a);

    /* point to point between ranks 0 and 1: a send rejected on its rank reaches the receiver as a
     * failure, a size mismatch fails the receiver, and later pairs still match */
    if (me <= 1) {
        int32_t v4[4] = {1, 2, 3, 4};
        dsrt_tensor t4 = mpi_tensor(DSRT_I32, 4, v4), r3 = mpi_tensor(DSRT_I32, 3, NULL), r4 = mpi_tensor(DSRT_I32, 4, NULL);
        if (me == 1) {
            ck_fails(dsrt_send(c, &t4, 0, NULL), DSRT_CODE_INVALID_ARGUMENT, "stream is NULL");
            ck_ok(dsrt_send(c, &t4, 0, mpi_s));
            ck_ok(dsrt_send(c, &t4, 0, mpi_s));
        } else {
            ck_fails(dsrt_recv(c, &r4, 1, mpi_s), DSRT_CODE_INVALID_ARGUMENT, "rank 1 did not take part");
            ck_fails(dsrt_recv(c, &r3, 1, mpi_s), DSRT_CODE_INVALID_ARGUMENT, "rank 1 sent more than the 12 bytes");
            ck_ok(dsrt_recv(c, &r4, 1, mpi_s));
            int32_t *hv = mpi_download(&r4);
            for (int i = 0; i < 4; i++) ck_assert_int_eq(hv[i], i + 1);
            free(hv);
        }
        dsrt_status_free(dsrt_stream_sync(mpi_s));
        free_tensor(&t4);
        free_tensor(&r3);
        free_tensor(&r4);
    }
    int32_t one = me + 1;
    dsrt_tensor x = mpi_tensor(DSRT_I32, 1, &one);
    ck_ok(dsrt_all_reduce(c, &x, &x, DSRT_REDUCE_SUM, mpi_s));
    int32_t *hx = mpi_download(&x);
    ck_assert_int_eq(hx[0], n * (n + 1) / 2);
    free(hx);
    free_tensor(&x);
}

START_TEST(test_mpi)
{
    dsrt_backend *cpu;
    ck_ok(dsrt_backend_find("cpu", &cpu));
    ck_ok(dsrt_device_open(cpu, 0, &mpi_dev));
    ck_ok(dsrt_stream_create(mpi_dev, &mpi_s));
    dsrt_comm *world;
    ck_ok(dsrt_comm_init_mpi(mpi_dev, &world));
    mpi_checks(world);

    /* The unique-id bootstrap, with the id broadcast over the world communicator itself. */
    dsrt_comm_unique_id id;
    memset(&id, 0, sizeof id);
    if (dsrt_comm_rank(world) == 0) ck_ok(dsrt_comm_get_unique_id("mpi", &id));
    dsrt_tensor idt = mpi_tensor(DSRT_U8, sizeof id, &id);
    ck_ok(dsrt_broadcast(world, &idt, &idt, 0, mpi_s));
    void *hid = mpi_download(&idt);
    memcpy(&id, hid, sizeof id);
    free(hid);
    free_tensor(&idt);
    dsrt_comm *byid;
    ck_ok(dsrt_comm_init_rank(NULL, mpi_dev, dsrt_comm_size(world), &id, dsrt_comm_rank(world), &byid));
    ck_assert_int_eq(dsrt_comm_rank(byid), dsrt_comm_rank(world));
    mpi_checks(byid);
    dsrt_comm_release(byid);

    dsrt_comm_release(world);
    dsrt_stream_release(mpi_s);
    dsrt_device_release(mpi_dev);
}
END_TEST

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--mpi") == 0) {
        /* No fork: an MPI rank must stay the process mpirun started. */
        Suite *s = suite_create("comm_mpi");
        TCase *tc = tcase_create("mpi");
        tcase_set_timeout(tc, 120);
        tcase_add_test(tc, test_mpi);
        suite_add_tcase(s, tc);
        SRunner *sr = srunner_create(s);
        srunner_set_fork_status(sr, CK_NOFORK);
        srunner_run_all(sr, CK_NORMAL);
        int failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed ? EXIT_FAILURE : EXIT_SUCCESS;
    }
    Suite *s = suite_create("comm");
    TCase *tc = tcase_create("inproc");
    tcase_set_timeout(tc, 120);
    /* _i = 0, 1, 2: cliques of 2, 3 and 4 ranks */
    tcase_add_loop_test(tc, test_all_reduce, 0, 3);
    tcase_add_loop_test(tc, test_all_reduce_in_place_large, 0, 3);
    tcase_add_test(tc, test_all_reduce_rounds_once);
    tcase_add_loop_test(tc, test_all_gather, 0, 3);
    tcase_add_loop_test(tc, test_reduce_scatter, 0, 3);
    tcase_add_loop_test(tc, test_all_to_all, 0, 3);
    tcase_add_loop_test(tc, test_all_to_allv, 0, 3);
    tcase_add_loop_test(tc, test_broadcast, 0, 3);
    tcase_add_loop_test(tc, test_send_recv_ring, 0, 3);
    tcase_add_test(tc, test_send_recv_pairs);
    tcase_add_test(tc, test_stream_ordering);
    tcase_add_test(tc, test_group_of_several);
    tcase_add_loop_test(tc, test_mixed_backends, 0, 3);
    tcase_add_loop_test(tc, test_error_mismatched_sizes, 0, 3);
    tcase_add_loop_test(tc, test_error_wrong_device_stream, 0, 3);
    tcase_add_loop_test(tc, test_error_rank_out_of_range, 0, 3);
    tcase_add_test(tc, test_error_arguments);
    tcase_add_test(tc, test_init_errors);
    suite_add_tcase(s, tc);
    return dsrt_run_suite(s);
}
