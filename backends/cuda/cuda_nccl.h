/* NCCL collectives for CUDA devices, loaded at run time (dlopen of libnccl.so.2), so libdsrt loads and
 * runs on machines without NCCL; the comm dispatch (hal, comm.h) calls these for the "nccl"
 * implementation. The HIP build of cuda_nccl.c is the same for HIP devices through RCCL
 * (librccl.so.1 or $DSRT_RCCL_LIBRARY; implementation "rccl"; dsrt_hip_rccl_api()), RCCL keeping
 * NCCL's API. Every function validates its arguments and returns a status; none aborts.
 *
 * Contract for the caller (the comm dispatch):
 *  - Tensors are contiguous and live on the communicator's CUDA device; the stream is a stream of
 *    that device. Work is enqueued on the stream and ordered with the stream's other work.
 *  - Counts are element counts of the tensors' dtypes. send/recv shapes follow comm.h.
 *  - Reductions of bf16/f16 with SUM or PROD are computed in fp32 (the tensors are upcast into a
 *    scratch buffer the communicator keeps, reduced, and rounded once), as comm.h promises; MAX/MIN
 *    and f32 reduce in place natively. FP8 and integer types move but do not reduce (except i32/i64).
 *  - Single-threaded use of several ranks brackets the ranks' calls with group_start/group_end
 *    (ncclGroupStart/End); a thread per rank needs no group. */
#ifndef DSRT_CUDA_NCCL_H
#define DSRT_CUDA_NCCL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dsrt/comm.h"
#include "dsrt/device.h"
#include "dsrt/stream.h"
#include "dsrt/tensor.h"

/* The HIP build's table has its own name, so both builds link into one libdsrt. */
#ifdef DSRT_GPU_HIP
#define dsrt_cuda_nccl_api dsrt_hip_rccl_api
#endif

typedef struct dsrt_nccl_comm dsrt_nccl_comm;

/* The NCCL implementation as a function table (what the comm dispatch stores per implementation). */
typedef struct dsrt_nccl_api {
    const char *name; /* "nccl" ("rccl" in the HIP build) */
    /* Loads NCCL once; false with a one-line reason when it is missing or too old. */
    bool (*available)(char *why, size_t why_len);
    dsrt_status (*unique_id)(dsrt_comm_unique_id *id);
    /* One rank of an n-rank communicator on `dev` (ranks may be in other processes: they share id). */
    dsrt_status (*init_rank)(dsrt_device *dev, int nranks, const dsrt_comm_unique_id *id, int rank,
                             dsrt_nccl_comm **out);
    /* Every rank in this process: comms[i] on devices[i], rank i. */
    dsrt_status (*init_all)(dsrt_device *const *devices, int n, dsrt_nccl_comm **comms);
    void (*destroy)(dsrt_nccl_comm *c);
    int (*rank)(const dsrt_nccl_comm *c);
    int (*size)(const dsrt_nccl_comm *c);
    dsrt_status (*group_start)(void);
    dsrt_status (*group_end)(void);
    dsrt_status (*all_reduce)(dsrt_nccl_comm *c, const dsrt_tensor *send, const dsrt_tensor *recv, dsrt_reduce_op op,
                              dsrt_stream *s);
    dsrt_status (*all_gather)(dsrt_nccl_comm *c, const dsrt_tensor *send, const dsrt_tensor *recv, dsrt_stream *s);
    dsrt_status (*reduce_scatter)(dsrt_nccl_comm *c, const dsrt_tensor *send, const dsrt_tensor *recv,
                                  dsrt_reduce_op op, dsrt_stream *s);
    dsrt_status (*all_to_all)(dsrt_nccl_comm *c, const dsrt_tensor *send, const dsrt_tensor *recv, dsrt_stream *s);
    dsrt_status (*all_to_allv)(dsrt_nccl_comm *c, const dsrt_tensor *send, const int64_t *send_counts,
                               const int64_t *send_displs, const dsrt_tensor *recv, const int64_t *recv_counts,
                               const int64_t *recv_displs, dsrt_stream *s);
    dsrt_status (*broadcast)(dsrt_nccl_comm *c, const dsrt_tensor *send, const dsrt_tensor *recv, int root,
                             dsrt_stream *s);
    dsrt_status (*send)(dsrt_nccl_comm *c, const dsrt_tensor *t, int peer, dsrt_stream *s);
    dsrt_status (*recv)(dsrt_nccl_comm *c, const dsrt_tensor *t, int peer, dsrt_stream *s);
} dsrt_nccl_api;

/* The table; present in every build with the CUDA backend (NCCL itself is found at run time), and as
 * dsrt_hip_rccl_api() in builds with the HIP backend. */
const dsrt_nccl_api *dsrt_cuda_nccl_api(void);

#endif
