/* The "nccl" collectives implementation of the comm dispatch (hal/src/comm_impl.h), over the NCCL
 * function table of cuda_nccl.c: used for communicators whose devices are all CUDA devices, when NCCL
 * can be loaded. The HIP build of this file is the "rccl" implementation for HIP devices (RCCL keeps
 * NCCL's API; cuda_nccl.h renames the table). */
#include <stdio.h>
#include <string.h>

#include "comm_impl.h"
#include "cuda/cuda_nccl.h"

#ifdef DSRT_GPU_HIP
#define COMM_BACKEND "hip"
#define COMM_NAME "rccl"
#define COMM_VTABLE dsrt_comm_impl_rccl
#else
#define COMM_BACKEND "cuda"
#define COMM_NAME "nccl"
#define COMM_VTABLE dsrt_comm_impl_nccl
#endif

static bool nccl_accepts(dsrt_device *const *devices, int n, char *why, size_t why_len)
{
    for (int i = 0; i < n; i++)
        if (strcmp(dsrt_backend_name(dsrt_device_backend(devices[i])), COMM_BACKEND) != 0) {
            snprintf(why, why_len, "device %s is not a %s device", dsrt_device_label(devices[i]), COMM_BACKEND);
            return false;
        }
    return dsrt_cuda_nccl_api()->available(why, why_len);
}

static dsrt_status nccl_init_all(dsrt_comm *const *comms, int n)
{
    dsrt_device *devs[64];
    dsrt_nccl_comm *nc[64];
    if (n > 64) return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, COMM_NAME ": at most 64 ranks in one process (got %d)", n);
    for (int i = 0; i < n; i++) devs[i] = comms[i]->dev;
    DSRT_TRY(dsrt_cuda_nccl_api()->init_all(devs, n, nc));
    for (int i = 0; i < n; i++) comms[i]->ctx = nc[i];
    return DSRT_OK;
}

/* NCCL's id is 128 bytes; the dispatch keeps 16 for the implementation's name, so the last 16 must be
 * zero (NCCL fills only the start of its id). */
static dsrt_status nccl_get_unique_id(unsigned char *payload)
{
    dsrt_comm_unique_id id;
    memset(&id, 0, sizeof id);
    DSRT_TRY(dsrt_cuda_nccl_api()->unique_id(&id));
    for (size_t i = DSRT_COMM_ID_PAYLOAD_BYTES; i < sizeof id.bytes; i++)
        if (id.bytes[i])
            return dsrt_error(DSRT_CODE_INCOMPATIBLE, COMM_NAME ": the library's unique id uses all %zu bytes; dsrt carries %zu",
                              sizeof id.bytes, (size_t)DSRT_COMM_ID_PAYLOAD_BYTES);
    memcpy(payload, id.bytes, DSRT_COMM_ID_PAYLOAD_BYTES);
    return DSRT_OK;
}

static dsrt_status nccl_init_rank(dsrt_comm *c, const unsigned char *payload)
{
    dsrt_comm_unique_id id;
    memset(&id, 0, sizeof id);
    memcpy(id.bytes, payload, DSRT_COMM_ID_PAYLOAD_BYTES);
    dsrt_nccl_comm *nc = NULL;
    DSRT_TRY(dsrt_cuda_nccl_api()->init_rank(c->dev, c->size, &id, c->rank, &nc));
    c->ctx = nc;
    return DSRT_OK;
}

static void nccl_release(dsrt_comm *c) { dsrt_cuda_nccl_api()->destroy(c->ctx); }
static dsrt_status nccl_group_start(dsrt_comm *c) { return dsrt_cuda_nccl_api()->group_start(); }
static dsrt_status nccl_group_end(dsrt_comm *c) { return dsrt_cuda_nccl_api()->group_end(); }

static dsrt_status nccl_submit(dsrt_comm *c, const dsrt_comm_call *k)
{
    const dsrt_nccl_api *a = dsrt_cuda_nccl_api();
    dsrt_nccl_comm *nc = c->ctx;
    switch (k->kind) {
    case DSRT_COMM_ALL_REDUCE: return a->all_reduce(nc, k->send, k->recv, k->op, k->stream);
    case DSRT_COMM_ALL_GATHER: return a->all_gather(nc, k->send, k->recv, k->stream);
    case DSRT_COMM_REDUCE_SCATTER: return a->reduce_scatter(nc, k->send, k->recv, k->op, k->stream);
    case DSRT_COMM_ALL_TO_ALL: return a->all_to_all(nc, k->send, k->recv, k->stream);
    case DSRT_COMM_ALL_TO_ALLV:
        return a->all_to_allv(nc, k->send, k->send_counts, k->send_displs, k->recv, k->recv_counts, k->recv_displs, k->stream);
    case DSRT_COMM_BROADCAST: return a->broadcast(nc, k->send, k->recv, k->root, k->stream);
    case DSRT_COMM_SEND: return a->send(nc, k->send, k->peer, k->stream);
    case DSRT_COMM_RECV: return a->recv(nc, k->recv, k->peer, k->stream);
    default: break;
    }
    return dsrt_error(DSRT_CODE_INTERNAL, COMM_NAME ": unknown collective %d", (int)k->kind);
}

const dsrt_comm_vtable COMM_VTABLE = {
    .name = COMM_NAME,
    .accepts = nccl_accepts,
    .init_all = nccl_init_all,
    .get_unique_id = nccl_get_unique_id,
    .init_rank = nccl_init_rank,
    .release = nccl_release,
    .group_start = nccl_group_start,
    .group_end = nccl_group_end,
    .submit = nccl_submit,
};
