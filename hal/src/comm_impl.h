/* The internal interface between the collectives dispatch (comm.c) and its implementations.
 *
 * comm.c owns the public entry points. It validates every call (tensors present, contiguous, without
 * scales, on the communicator's device; the stream on that device; dtypes, element counts and ranks)
 * and turns it into a dsrt_comm_call, so an implementation only moves data. It allocates the
 * dsrt_comm objects, retains their devices and frees them; an implementation keeps its own state in
 * dsrt_comm.ctx.
 *
 * Adding an implementation (NCCL, RCCL, a vendor's library):
 *   1. Define `const dsrt_comm_vtable dsrt_comm_impl_<name>` with the entries below (those marked
 *      optional may be NULL).
 *   2. Compile it into the dsrt target and define DSRT_HAVE_<NAME> on it; comm.c lists it under that
 *      macro (DSRT_HAVE_NCCL -> dsrt_comm_impl_nccl, DSRT_HAVE_RCCL -> dsrt_comm_impl_rccl).
 * The table order in comm.c is also the order in which dsrt_comm_init_all(NULL, ...) asks each
 * implementation whether it `accepts` the devices; "inproc" accepts everything and comes last.
 *
 * Semantics every implementation keeps (comm.h says them to users): calls are ordered on the given
 * stream (the input is read after earlier work on it, later work sees the output); calls match across
 * ranks by order; reductions of f32/bf16/f16 accumulate in fp32 and round once; between group_start
 * and group_end a thread's calls are collected and run at the outermost group_end. */
#ifndef DSRT_COMM_IMPL_H
#define DSRT_COMM_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dsrt/comm.h"
#include "dsrt/stream.h"
#include "dsrt/tensor.h"

/* Bytes [0, 16) of a dsrt_comm_unique_id hold the implementation's name (NUL padded), written and
 * checked by comm.c; the implementation owns the rest. */
#define DSRT_COMM_ID_NAME_BYTES 16
#define DSRT_COMM_ID_PAYLOAD_BYTES (sizeof(dsrt_comm_unique_id) - DSRT_COMM_ID_NAME_BYTES)

typedef struct dsrt_comm_vtable dsrt_comm_vtable;

/* One rank's communicator. Filled by comm.c except ctx. */
struct dsrt_comm {
    const dsrt_comm_vtable *impl;
    dsrt_device *dev; /* retained by comm.c */
    int rank;
    int size;
    void *ctx;        /* the implementation's per-rank state */
};

typedef enum dsrt_comm_kind {
    DSRT_COMM_ALL_REDUCE = 0,
    DSRT_COMM_ALL_GATHER,
    DSRT_COMM_REDUCE_SCATTER,
    DSRT_COMM_ALL_TO_ALL,
    DSRT_COMM_ALL_TO_ALLV,
    DSRT_COMM_BROADCAST,
    DSRT_COMM_SEND,
    DSRT_COMM_RECV,
    DSRT_COMM_KIND_COUNT
} dsrt_comm_kind;

/* A validated call on one rank. The pointers are the caller's and live only during submit (and
 * abandon): an implementation that defers the work (groups) copies what it needs. */
typedef struct dsrt_comm_call {
    dsrt_comm_kind kind;
    const dsrt_tensor *send; /* the data read; NULL for recv and for broadcast off the root */
    const dsrt_tensor *recv; /* the data written; NULL for send. For recv, the tensor received into */
    dsrt_dtype dtype;        /* of send and recv (equal) */
    /* Elements per rank block: all_reduce, broadcast, send, recv: the tensor's elements;
     * all_gather: send's elements (recv holds size * count); reduce_scatter: recv's elements (send
     * holds size * count); all_to_all: elements of one block (each tensor holds size * count);
     * all_to_allv: 0 (see the arrays). */
    int64_t count;
    dsrt_reduce_op op;       /* all_reduce, reduce_scatter */
    int root;                /* broadcast */
    int peer;                /* send, recv */
    /* all_to_allv only: `size` entries each, in elements, checked against the tensors. */
    const int64_t *send_counts, *send_displs, *recv_counts, *recv_displs;
    dsrt_stream *stream;     /* on the communicator's device */
} dsrt_comm_call;

struct dsrt_comm_vtable {
    const char *name; /* "inproc", "mpi", "nccl", ...: at most 15 characters */

    /* optional: whether this implementation can connect these devices; explains a refusal in `why`.
     * NULL means it accepts any devices init_all is given. */
    bool (*accepts)(dsrt_device *const *devices, int n, char *why, size_t why_len);
    /* optional (NULL: UNIMPLEMENTED): fills ctx of comms[0..n-1], whose dev, rank and size comm.c
     * set. On failure nothing is left allocated. */
    dsrt_status (*init_all)(dsrt_comm *const *comms, int n);
    /* optional (NULL: UNIMPLEMENTED): writes `payload` (DSRT_COMM_ID_PAYLOAD_BYTES bytes). */
    dsrt_status (*get_unique_id)(unsigned char *payload);
    /* optional (NULL: UNIMPLEMENTED): fills c->ctx for rank c->rank of c->size, from the payload. */
    dsrt_status (*init_rank)(dsrt_comm *c, const unsigned char *payload);
    /* Waits for the rank's outstanding work and frees ctx. */
    void (*release)(dsrt_comm *c);

    dsrt_status (*group_start)(dsrt_comm *c);
    dsrt_status (*group_end)(dsrt_comm *c);
    /* Runs (or, inside a group, records) one validated call. */
    dsrt_status (*submit)(dsrt_comm *c, const dsrt_comm_call *call);
    /* optional: the call failed validation on this rank (`why`, still owned by comm.c, says how);
     * tell the peers so their matching calls fail instead of waiting, and keep the per-rank call
     * order in step. The fields of `call` that validation could not establish are zero; kind, and
     * peer for send/recv, are always valid. NULL: the peers are not told (they wait, as with NCCL). */
    void (*abandon)(dsrt_comm *c, const dsrt_comm_call *call, dsrt_status why);
};

extern const dsrt_comm_vtable dsrt_comm_impl_inproc;
#ifdef DSRT_HAVE_MPI
extern const dsrt_comm_vtable dsrt_comm_impl_mpi;
#endif
#ifdef DSRT_HAVE_NCCL
extern const dsrt_comm_vtable dsrt_comm_impl_nccl;
#endif
#ifdef DSRT_HAVE_RCCL
extern const dsrt_comm_vtable dsrt_comm_impl_rccl;
#endif

/* ---- helpers for implementations (comm.c) ---- */

/* A communicator object as init_rank receives it (device retained), for an implementation's own
 * creation paths (the MPI world shortcut); freed with dsrt_comm_shell_free until it is complete. */
dsrt_comm *dsrt_comm_shell_new(const dsrt_comm_vtable *impl, dsrt_device *dev, int rank, int size);
void dsrt_comm_shell_free(dsrt_comm *c);

#ifdef DSRT_HAVE_MPI
/* comm_mpi.c: the body of dsrt_comm_init_mpi. */
dsrt_status dsrt_comm_mpi_init_world(dsrt_device *device, dsrt_comm **out);
#endif

const char *dsrt_comm_kind_name(dsrt_comm_kind k);   /* "all_reduce", ... */
const char *dsrt_reduce_op_name(dsrt_reduce_op op);  /* "sum", ... */

/* Whether `dt` can be reduced (f32, bf16, f16, i32, i64, u8). */
bool dsrt_comm_reducible(dsrt_dtype dt);

/* out[i] = op over srcs[0..nsrc-1][i] for i < count, combined in source order. f32/bf16/f16 combine
 * in fp32 and round once to `dt`; integers combine exactly (sum and product wrap around). NaN
 * propagates through max and min. `out` may be one of the sources. */
void dsrt_comm_reduce_host(dsrt_dtype dt, dsrt_reduce_op op, const void *const *srcs, int nsrc, void *out,
                           int64_t count);

/* Host staging of one rank's output. A slot's host memory feeds stream writes; an event recorded
 * after them says when it can be reused, so a call returns without waiting for its upload. */
typedef struct dsrt_comm_stage {
    void *host;
    size_t cap;
    dsrt_event *ev; /* created on first use, on the pool's device */
    bool held;      /* between dsrt_comm_stage_get and dsrt_comm_stage_commit/_drop */
} dsrt_comm_stage;

typedef struct dsrt_comm_stage_pool {
    dsrt_device *dev;
    dsrt_comm_stage **slots; /* each allocated alone: a held slot's address survives the pool growing */
    int n, cap;
} dsrt_comm_stage_pool;

/* A free slot of at least `bytes` (reusing one whose upload finished, else growing the pool up to a
 * bound, else waiting for the oldest). */
dsrt_status dsrt_comm_stage_get(dsrt_comm_stage_pool *p, size_t bytes, dsrt_comm_stage **out);
/* Records the slot's event on `s` after the writes that read it. */
dsrt_status dsrt_comm_stage_commit(dsrt_comm_stage_pool *p, dsrt_comm_stage *st, dsrt_stream *s);
/* Gives a slot back unused (after a failure before its writes were enqueued). */
void dsrt_comm_stage_drop(dsrt_comm_stage_pool *p, dsrt_comm_stage *st);
/* Waits for every upload, frees the slots. */
void dsrt_comm_stage_pool_free(dsrt_comm_stage_pool *p);

/* Copies `t` (contiguous, on s's device) into host memory `dst` and waits: the bytes are those the
 * stream's earlier work left there. Fails for a stream capturing a graph. */
dsrt_status dsrt_comm_read_input(dsrt_stream *s, const dsrt_tensor *t, void *dst);

/* malloc that never returns NULL for 0 bytes (so that "no memory" stays a real failure). */
void *dsrt_comm_alloc(size_t bytes);

#endif
