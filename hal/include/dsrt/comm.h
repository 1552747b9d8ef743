/* Collectives, shaped like NCCL: a communicator per rank, collectives ordered on a stream.
 *
 * Implementations: "inproc" (devices of any backends in one process, staged through host memory;
 * this is how mixed-vendor deployments exchange data), "mpi" (one rank per process, across
 * processes and nodes, host-staged) when built with MPI, and those a backend provides (NCCL, RCCL)
 * when compiled in. docs/collectives.md describes each.
 *
 * Buffers are contiguous tensors on the communicator's device, without block scales; send and recv
 * of one call have the same dtype. Reductions (f32, bf16, f16, i32, i64, u8) compute in fp32 for the
 * float dtypes and round once to the dtype; integer reductions are exact (sums and products wrap).
 *
 * Ordering: a call takes the stream of the communicator's device; work enqueued on that stream
 * afterwards sees the result, and the call reads its input after the work enqueued before it.
 * Calls match across ranks by order: every rank issues the same collectives in the same order; the
 * k-th send from a to b matches the k-th recv at b from a.
 *
 * Threads: with one host thread per rank, each call returns once every rank joined it. A single
 * thread driving several ranks brackets their calls with dsrt_comm_group_start / dsrt_comm_group_end
 * (as with ncclGroupStart/End): the calls between are collected and run at the outermost group end.
 * Send/recv pairs a rank would otherwise block on also belong in a group. A communicator is used by
 * one thread at a time.
 *
 * Errors: a call whose arguments are wrong returns the error on its rank; the inproc and mpi
 * implementations also tell the peers, whose matching calls then fail naming that rank (rather than
 * waiting forever), and the communicators stay usable. A mismatch between ranks (sizes, dtypes,
 * kinds, roots) fails the call on every rank with a message naming the ranks and values. */
#ifndef DSRT_COMM_H
#define DSRT_COMM_H

#include "dsrt/handles.h"
#include "dsrt/status.h"
#include "dsrt/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum dsrt_reduce_op {
    DSRT_REDUCE_SUM = 0,
    DSRT_REDUCE_PROD,
    DSRT_REDUCE_MAX,
    DSRT_REDUCE_MIN
} dsrt_reduce_op;

typedef struct dsrt_comm_unique_id {
    unsigned char bytes[128];
} dsrt_comm_unique_id;

/* One communicator per device, ranks in array order, all created by this call. `impl` names the
 * implementation ("inproc", "nccl", ...) or is NULL for the default: the first compiled-in
 * implementation that accepts all the devices (e.g. NCCL for CUDA devices only), else "inproc". */
dsrt_status dsrt_comm_init_all(const char *impl, dsrt_device *const *devices, int n, dsrt_comm **comms);

/* Bootstrap across processes, as ncclGetUniqueId / ncclCommInitRank: one process makes an id and
 * hands it to the others (through MPI, a file, a socket); each of the `nranks` ranks then calls
 * dsrt_comm_init_rank with that id and its own rank. The id records its implementation; `impl` may
 * be NULL in init_rank to take it from the id. For "mpi", every process of MPI_COMM_WORLD calls
 * init_rank at the same time (processes holding the same id form one communicator). */
dsrt_status dsrt_comm_get_unique_id(const char *impl, dsrt_comm_unique_id *id);
dsrt_status dsrt_comm_init_rank(const char *impl, dsrt_device *device, int nranks,
                                const dsrt_comm_unique_id *id, int rank, dsrt_comm **out);
/* The MPI shortcut: a communicator over MPI_COMM_WORLD, rank and size as MPI numbers them, the
 * calling process's rank on `device`. MPI is initialized when the application has not done so
 * (then dsrt finalizes it at process exit). UNAVAILABLE when dsrt was built without MPI. */
dsrt_status dsrt_comm_init_mpi(dsrt_device *device, dsrt_comm **out);

/* Waits for the communicator's outstanding work, then frees it. */
void dsrt_comm_release(dsrt_comm *c);
int dsrt_comm_rank(const dsrt_comm *c);
int dsrt_comm_size(const dsrt_comm *c);
const char *dsrt_comm_impl(const dsrt_comm *c);
dsrt_device *dsrt_comm_device(const dsrt_comm *c);

/* Groups nest. A group opened by a thread through any communicator collects that thread's calls on
 * every communicator created together with it (one dsrt_comm_init_all, or one id); the outermost
 * group end runs them and returns the first failure among them. Within a group a call must not
 * read what an earlier call of the same group writes. */
dsrt_status dsrt_comm_group_start(dsrt_comm *c);
dsrt_status dsrt_comm_group_end(dsrt_comm *c);

/* recv = reduce over ranks of send (same number of elements; recv may be send). */
dsrt_status dsrt_all_reduce(dsrt_comm *c, const dsrt_tensor *send, const dsrt_tensor *recv,
                            dsrt_reduce_op op, dsrt_stream *s);
/* recv [n*size] = concatenation of every rank's send [n], in rank order. */
dsrt_status dsrt_all_gather(dsrt_comm *c, const dsrt_tensor *send, const dsrt_tensor *recv,
                            dsrt_stream *s);
/* recv [n] = reduction of every rank's send block `rank` (send holds size blocks of n). */
dsrt_status dsrt_reduce_scatter(dsrt_comm *c, const dsrt_tensor *send, const dsrt_tensor *recv,
                                dsrt_reduce_op op, dsrt_stream *s);
/* send holds size blocks of n; block j goes to rank j; recv block i comes from rank i. */
dsrt_status dsrt_all_to_all(dsrt_comm *c, const dsrt_tensor *send, const dsrt_tensor *recv,
                            dsrt_stream *s);
/* As all_to_all with per-peer element counts and offsets (host arrays of size entries): rank i's
 * send[send_displs[j] ..+ send_counts[j]] lands in rank j's recv[recv_displs[i] ..+ recv_counts[i]],
 * so recv_counts[i] on rank j must equal send_counts[j] on rank i. Parts of recv no segment covers
 * keep their contents; recv segments must not overlap. */
dsrt_status dsrt_all_to_allv(dsrt_comm *c, const dsrt_tensor *send, const int64_t *send_counts,
                             const int64_t *send_displs, const dsrt_tensor *recv,
                             const int64_t *recv_counts, const int64_t *recv_displs, dsrt_stream *s);
/* recv on every rank = send of `root` (send is read on root only and may be NULL elsewhere). */
dsrt_status dsrt_broadcast(dsrt_comm *c, const dsrt_tensor *send, const dsrt_tensor *recv, int root,
                           dsrt_stream *s);
/* Point to point: t of the sender lands in t of the receiver (same dtype and element count). */
dsrt_status dsrt_send(dsrt_comm *c, const dsrt_tensor *t, int peer, dsrt_stream *s);
dsrt_status dsrt_recv(dsrt_comm *c, const dsrt_tensor *t, int peer, dsrt_stream *s);

#ifdef __cplusplus
}
#endif
#endif
