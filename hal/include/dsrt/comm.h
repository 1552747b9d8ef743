/* Collectives, shaped like NCCL: a communicator per rank, collectives ordered on a stream.
 *
 * Implementations: "inproc" (devices of any backends in one process, staged through host memory;
 * this is how mixed-vendor deployments exchange data), and those a backend provides (NCCL, RCCL, MPI)
 * when compiled in. Buffers are contiguous tensors; reductions compute in fp32 for float dtypes.
 *
 * Single-threaded use of several ranks must bracket the ranks' calls with dsrt_comm_group_start /
 * dsrt_comm_group_end (as with ncclGroupStart/End); with one thread per rank no group is needed. */
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

/* One communicator per device, ranks in array order ("inproc", or NULL for the default). */
dsrt_status dsrt_comm_init_all(const char *impl, dsrt_device *const *devices, int n, dsrt_comm **comms);
void dsrt_comm_release(dsrt_comm *c);
int dsrt_comm_rank(const dsrt_comm *c);
int dsrt_comm_size(const dsrt_comm *c);
const char *dsrt_comm_impl(const dsrt_comm *c);

dsrt_status dsrt_comm_group_start(dsrt_comm *c);
dsrt_status dsrt_comm_group_end(dsrt_comm *c);

/* recv = reduce over ranks of send (same shape). */
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
/* As all_to_all with per-peer element counts and offsets (host arrays of size entries). */
dsrt_status dsrt_all_to_allv(dsrt_comm *c, const dsrt_tensor *send, const int64_t *send_counts,
                             const int64_t *send_displs, const dsrt_tensor *recv,
                             const int64_t *recv_counts, const int64_t *recv_displs, dsrt_stream *s);
/* recv on every rank = send of `root` (send is read on root only). */
dsrt_status dsrt_broadcast(dsrt_comm *c, const dsrt_tensor *send, const dsrt_tensor *recv, int root,
                           dsrt_stream *s);
dsrt_status dsrt_send(dsrt_comm *c, const dsrt_tensor *t, int peer, dsrt_stream *s);
dsrt_status dsrt_recv(dsrt_comm *c, const dsrt_tensor *t, int peer, dsrt_stream *s);

#ifdef __cplusplus
}
#endif
#endif
