/* Collectives: the public entry points. Each call is validated here (so implementations only move
 * data and every implementation reports bad arguments with the same words), turned into a
 * dsrt_comm_call and handed to the communicator's implementation. Also the helpers host-staged
 * implementations share: fp32 reductions and the output staging pool. */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm_impl.h"
#include "dsrt/half.h"
#include "hal_internal.h"

/* Implementations in the order init_all(NULL, ...) asks them: vendor libraries first (they are
 * faster where they apply), inproc last (it accepts any devices). */
static const dsrt_comm_vtable *const dsrt_comm_impls[] = {
#ifdef DSRT_HAVE_NCCL
    &dsrt_comm_impl_nccl,
#endif
#ifdef DSRT_HAVE_RCCL
    &dsrt_comm_impl_rccl,
#endif
#ifdef DSRT_HAVE_MPI
    &dsrt_comm_impl_mpi,
#endif
    &dsrt_comm_impl_inproc,
};
#define DSRT_COMM_NIMPLS ((int)(sizeof dsrt_comm_impls / sizeof dsrt_comm_impls[0]))

static dsrt_status dsrt_comm_find_impl(const char *name, const dsrt_comm_vtable **out)
{
    char known[160] = "";
    size_t len = 0;
    for (int i = 0; i < DSRT_COMM_NIMPLS; i++) {
        if (strcmp(dsrt_comm_impls[i]->name, name) == 0) {
            *out = dsrt_comm_impls[i];
            return DSRT_OK;
        }
        int w = snprintf(known + len, sizeof known - len, "%s%s", i ? ", " : "", dsrt_comm_impls[i]->name);
        if (w > 0 && (size_t)w < sizeof known - len) len += (size_t)w;
    }
    return dsrt_error(DSRT_CODE_NOT_FOUND, "no collectives implementation '%s' in this build (built in: %s)", name,
                      known);
}

/* ---- names ---- */

const char *dsrt_comm_kind_name(dsrt_comm_kind k)
{
    switch (k) {
    case DSRT_COMM_ALL_REDUCE: return "all_reduce";
    case DSRT_COMM_ALL_GATHER: return "all_gather";
    case DSRT_COMM_REDUCE_SCATTER: return "reduce_scatter";
    case DSRT_COMM_ALL_TO_ALL: return "all_to_all";
    case DSRT_COMM_ALL_TO_ALLV: return "all_to_allv";
    case DSRT_COMM_BROADCAST: return "broadcast";
    case DSRT_COMM_SEND: return "send";
    case DSRT_COMM_RECV: return "recv";
    default: return "unknown collective";
    }
}

const char *dsrt_reduce_op_name(dsrt_reduce_op op)
{
    switch (op) {
    case DSRT_REDUCE_SUM: return "sum";
    case DSRT_REDUCE_PROD: return "prod";
    case DSRT_REDUCE_MAX: return "max";
    case DSRT_REDUCE_MIN: return "min";
    }
    return "unknown reduction";
}

/* ---- communicator lifetime ---- */

static dsrt_comm *dsrt_comm_new(const dsrt_comm_vtable *impl, dsrt_device *dev, int rank, int size)
{
    dsrt_comm *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->impl = impl;
    c->dev = dev;
    c->rank = rank;
    c->size = size;
    dsrt_device_retain(dev);
    return c;
}

static void dsrt_comm_free_shell(dsrt_comm *c)
{
    if (!c) return;
    dsrt_device_release(c->dev);
    free(c);
}

dsrt_status dsrt_comm_init_all(const char *impl, dsrt_device *const *devices, int n, dsrt_comm **comms)
{
    if (!comms) return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "comm init_all: output array is NULL");
    if (n < 1) return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "comm init_all: %d devices (need at least 1)", n);
    for (int i = 0; i < n; i++) comms[i] = NULL;
    if (!devices) return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "comm init_all: device array is NULL");
    for (int i = 0; i < n; i++)
        if (!devices[i]) return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "comm init_all: device %d is NULL", i);

    const dsrt_comm_vtable *im = NULL;
    char why[256] = "";
    if (impl) {
        DSRT_TRY(dsrt_comm_find_impl(impl, &im));
        if (!im->init_all)
            return dsrt_error(DSRT_CODE_UNIMPLEMENTED,
                              "the '%s' collectives create one rank per call: use dsrt_comm_init_rank%s", im->name,
                              strcmp(im->name, "mpi") == 0 ? " or dsrt_comm_init_mpi" : "");
        if (im->accepts && !im->accepts(devices, n, why, sizeof why))
            return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "the '%s' collectives cannot connect these devices: %s",
                              im->name, why);
    } else {
        for (int i = 0; i < DSRT_COMM_NIMPLS && !im; i++) {
            const dsrt_comm_vtable *cand = dsrt_comm_impls[i];
            if (cand->init_all && (!cand->accepts || cand->accepts(devices, n, why, sizeof why))) im = cand;
        }
        if (!im) return dsrt_error(DSRT_CODE_INTERNAL, "no collectives implementation accepts the devices");
    }

    for (int i = 0; i < n; i++) {
        comms[i] = dsrt_comm_new(im, devices[i], i, n);
        if (!comms[i]) {
            for (int j = 0; j < i; j++) dsrt_comm_free_shell(comms[j]), comms[j] = NULL;
            return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "out of memory for %d communicators", n);
        }
    }
    dsrt_status st = im->init_all(comms, n);
    if (st) {
        for (int i = 0; i < n; i++) dsrt_comm_free_shell(comms[i]), comms[i] = NULL;
        return dsrt_status_wrap(st, "creating %d '%s' communicators", n, im->name);
    }
    return DSRT_OK;
}

dsrt_status dsrt_comm_get_unique_id(const char *impl, dsrt_comm_unique_id *id)
{
    if (!impl || !id) return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "comm get_unique_id: implementation or id is NULL");
    const dsrt_comm_vtable *im;
    DSRT_TRY(dsrt_comm_find_impl(impl, &im));
    if (!im->get_unique_id)
        return dsrt_error(DSRT_CODE_UNIMPLEMENTED, "the '%s' collectives have no unique-id bootstrap%s", im->name,
                          im->init_all ? " (create its communicators together with dsrt_comm_init_all)" : "");
    memset(id, 0, sizeof *id);
    size_t len = strlen(im->name);
    memcpy(id->bytes, im->name, len < DSRT_COMM_ID_NAME_BYTES - 1 ? len : DSRT_COMM_ID_NAME_BYTES - 1);
    return im->get_unique_id(id->bytes + DSRT_COMM_ID_NAME_BYTES);
}

dsrt_status dsrt_comm_init_rank(const char *impl, dsrt_device *device, int nranks, const dsrt_comm_unique_id *id,
                                int rank, dsrt_comm **out)
{
    if (!out) return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "comm init_rank: output is NULL");
    *out = NULL;
    if (!device || !id) return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "comm init_rank: device or id is NULL");
    if (nranks < 1 || rank < 0 || rank >= nranks)
        return dsrt_error(DSRT_CODE_OUT_OF_RANGE, "comm init_rank: rank %d is outside 0..%d (nranks %d)", rank,
                          nranks - 1, nranks);
    char idname[DSRT_COMM_ID_NAME_BYTES];
    memcpy(idname, id->bytes, sizeof idname);
    idname[sizeof idname - 1] = 0;
    if (!idname[0])
        return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "comm init_rank: the id was not made by dsrt_comm_get_unique_id");
    if (impl && strcmp(impl, idname) != 0)
        return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "comm init_rank: the id was made for '%s', not '%s'", idname, impl);
    const dsrt_comm_vtable *im;
    DSRT_TRY(dsrt_comm_find_impl(idname, &im));
    if (!im->init_rank)
        return dsrt_error(DSRT_CODE_UNIMPLEMENTED, "the '%s' collectives have no unique-id bootstrap", im->name);
    dsrt_comm *c = dsrt_comm_new(im, device, rank, nranks);
    if (!c) return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "out of memory for a communicator");
    dsrt_status st = im->init_rank(c, id->bytes + DSRT_COMM_ID_NAME_BYTES);
    if (st) {
        dsrt_comm_free_shell(c);
        return dsrt_status_wrap(st, "creating rank %d of %d ('%s') on %s", rank, nranks, im->name, device->label);
    }
    *out = c;
    return DSRT_OK;
}

dsrt_status dsrt_comm_init_mpi(dsrt_device *device, dsrt_comm **out)
{
    if (!out) return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "comm init_mpi: output is NULL");
    *out = NULL;
    if (!device) return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "comm init_mpi: device is NULL");
#ifdef DSRT_HAVE_MPI
    return dsrt_comm_mpi_init_world(device, out);
#else
    return dsrt_error(DSRT_CODE_UNAVAILABLE,
                      "dsrt was built without MPI (configure with Open MPI installed, DSRT_MPI=AUTO or ON)");
#endif
}

dsrt_comm *dsrt_comm_shell_new(const dsrt_comm_vtable *impl, dsrt_device *dev, int rank, int size)
{
    return dsrt_comm_new(impl, dev, rank, size);
}
void dsrt_comm_shell_free(dsrt_comm *c) { dsrt_comm_free_shell(c); }

void dsrt_comm_release(dsrt_comm *c)
{
    if (!c) return;
    c->impl->release(c);
    dsrt_comm_free_shell(c);
}

int dsrt_comm_rank(const dsrt_comm *c) { return c ? c->rank : -1; }
int dsrt_comm_size(const dsrt_comm *c) { return c ? c->size : 0; }
const char *dsrt_comm_impl(const dsrt_comm *c) { return c ? c->impl->name : "(no communicator)"; }
dsrt_device *dsrt_comm_device(const dsrt_comm *c) { return c ? c->dev : NULL; }

dsrt_status dsrt_comm_group_start(dsrt_comm *c)
{
    if (!c) return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "comm group_start: communicator is NULL");
    return c->impl->group_start(c);
}

dsrt_status dsrt_comm_group_end(dsrt_comm *c)
{
    if (!c) return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "comm group_end: communicator is NULL");
    return c->impl->group_end(c);
}

/* ---- validation ---- */

/* "all_reduce on rank 1 of 4 (cpu:1)": the start of every validation message. */
static dsrt_status dsrt_comm_bad(const dsrt_comm *c, dsrt_comm_kind k, dsrt_code code, const char *fmt, ...)
    DSRT_PRINTF(4, 5);
static dsrt_status dsrt_comm_bad(const dsrt_comm *c, dsrt_comm_kind k, dsrt_code code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return dsrt_error(code, "%s on rank %d of %d (%s, %s): %s", dsrt_comm_kind_name(k), c->rank, c->size,
                      c->dev->label, c->impl->name, msg);
}

/* "cpu:1, not on the communicator's device cpu:0"; the same label twice means the device was opened
 * more than once (each opening is its own device), which the message then says. */
static const char *dsrt_comm_other_device(const dsrt_device *other, const dsrt_device *mine, char *buf, size_t len)
{
    if (strcmp(other->label, mine->label) == 0)
        snprintf(buf, len, "another opened instance of %s, not the communicator's own", other->label);
    else
        snprintf(buf, len, "%s, not the communicator's device %s", other->label, mine->label);
    return buf;
}

static dsrt_status dsrt_comm_check_stream(const dsrt_comm *c, dsrt_comm_kind k, dsrt_stream *s)
{
    if (!s) return dsrt_comm_bad(c, k, DSRT_CODE_INVALID_ARGUMENT, "stream is NULL");
    if (s->dev != c->dev) {
        char where[256];
        return dsrt_comm_bad(c, k, DSRT_CODE_INVALID_ARGUMENT, "the stream belongs to %s",
                             dsrt_comm_other_device(s->dev, c->dev, where, sizeof where));
    }
    return DSRT_OK;
}

/* A send or recv tensor: present, contiguous, no scales, fits its buffer, on the communicator's
 * device; `written` ones must not be read-only. */
static dsrt_status dsrt_comm_check_tensor(const dsrt_comm *c, dsrt_comm_kind k, const dsrt_tensor *t,
                                          const char *role, bool written)
{
    if (!t || !t->buf) return dsrt_comm_bad(c, k, DSRT_CODE_INVALID_ARGUMENT, "%s tensor is absent", role);
    char d[128];
    if (!dsrt_dtype_valid(t->dtype) || t->ndim < 1 || t->ndim > DSRT_MAX_DIMS)
        return dsrt_comm_bad(c, k, DSRT_CODE_INVALID_ARGUMENT, "%s tensor has dtype %d and rank %d", role,
                             (int)t->dtype, t->ndim);
    dsrt_tensor_describe(t, d, sizeof d);
    for (int i = 0; i < t->ndim; i++)
        if (t->shape[i] < 0) return dsrt_comm_bad(c, k, DSRT_CODE_INVALID_ARGUMENT, "%s %s has a negative dim", role, d);
    if (!dsrt_tensor_is_contiguous(t))
        return dsrt_comm_bad(c, k, DSRT_CODE_INVALID_ARGUMENT, "%s %s is not contiguous (collectives move whole "
                             "contiguous tensors; copy a strided view first)", role, d);
    if (t->scale.buf)
        return dsrt_comm_bad(c, k, DSRT_CODE_INVALID_ARGUMENT,
                             "%s %s carries block scales, which collectives do not move (send the scale "
                             "tensor with its own call)", role, d);
    if (t->buf->dev != c->dev) {
        char where[256];
        return dsrt_comm_bad(c, k, DSRT_CODE_INVALID_ARGUMENT, "%s %s lives on %s", role, d,
                             dsrt_comm_other_device(t->buf->dev, c->dev, where, sizeof where));
    }
    size_t bytes = dsrt_tensor_nbytes(t);
    if (t->offset > t->buf->size || bytes > t->buf->size - t->offset)
        return dsrt_comm_bad(c, k, DSRT_CODE_OUT_OF_RANGE, "%s %s at byte offset %zu overruns its %zu-byte buffer",
                             role, d, t->offset, t->buf->size);
    if (written && t->buf->readonly)
        return dsrt_comm_bad(c, k, DSRT_CODE_INVALID_ARGUMENT, "%s %s is in a read-only buffer", role, d);
    return DSRT_OK;
}

static dsrt_status dsrt_comm_check_pair(const dsrt_comm *c, dsrt_comm_kind k, const dsrt_tensor *send,
                                        const dsrt_tensor *recv)
{
    DSRT_TRY(dsrt_comm_check_tensor(c, k, send, "send", false));
    DSRT_TRY(dsrt_comm_check_tensor(c, k, recv, "recv", true));
    if (send->dtype != recv->dtype)
        return dsrt_comm_bad(c, k, DSRT_CODE_INVALID_ARGUMENT, "send is %s but recv is %s (collectives do not convert)",
                             dsrt_dtype_name(send->dtype), dsrt_dtype_name(recv->dtype));
    return DSRT_OK;
}

bool dsrt_comm_reducible(dsrt_dtype dt)
{
    return dt == DSRT_F32 || dt == DSRT_BF16 || dt == DSRT_F16 || dt == DSRT_I32 || dt == DSRT_I64 || dt == DSRT_U8;
}

static dsrt_status dsrt_comm_check_reduce(const dsrt_comm *c, dsrt_comm_kind k, dsrt_dtype dt, dsrt_reduce_op op)
{
    if ((unsigned)op > (unsigned)DSRT_REDUCE_MIN)
        return dsrt_comm_bad(c, k, DSRT_CODE_INVALID_ARGUMENT, "reduction %d is not sum, prod, max or min", (int)op);
    if (!dsrt_comm_reducible(dt))
        return dsrt_comm_bad(c, k, DSRT_CODE_UNIMPLEMENTED,
                             "%s cannot be reduced (reductions take f32, bf16, f16, i32, i64 or u8; reduce fp8 "
                             "data after converting it)", dsrt_dtype_name(dt));
    return DSRT_OK;
}

/* Hands a validated call to the implementation, or tells it (and through it the peers) that this
 * rank rejected the call. */
static dsrt_status dsrt_comm_dispatch(dsrt_comm *c, dsrt_comm_call *call, dsrt_status invalid)
{
    if (invalid) {
        if (c->impl->abandon) c->impl->abandon(c, call, invalid);
        return invalid;
    }
    return c->impl->submit(c, call);
}

#define DSRT_COMM_CHECK_NULL(c, k)                                                                                 \
    do {                                                                                                           \
        if (!(c)) return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "%s: communicator is NULL", dsrt_comm_kind_name(k)); \
    } while (0)

static dsrt_status dsrt_comm_validate_reduce(dsrt_comm *c, dsrt_comm_call *call, const dsrt_tensor *send,
                                             const dsrt_tensor *recv, dsrt_reduce_op op, dsrt_stream *s)
{
    dsrt_comm_kind k = call->kind;
    DSRT_TRY(dsrt_comm_check_stream(c, k, s));
    call->stream = s;
    DSRT_TRY(dsrt_comm_check_pair(c, k, send, recv));
    DSRT_TRY(dsrt_comm_check_reduce(c, k, send->dtype, op));
    int64_t ns = dsrt_tensor_numel(send), nr = dsrt_tensor_numel(recv);
    if (k == DSRT_COMM_ALL_REDUCE && ns != nr)
        return dsrt_comm_bad(c, k, DSRT_CODE_INVALID_ARGUMENT, "send has %lld elements but recv %lld (they must match)",
                             (long long)ns, (long long)nr);
    if (k == DSRT_COMM_REDUCE_SCATTER && ns != nr * c->size)
        return dsrt_comm_bad(c, k, DSRT_CODE_INVALID_ARGUMENT,
                             "send has %lld elements but must hold %d blocks of recv's %lld", (long long)ns, c->size,
                             (long long)nr);
    call->send = send;
    call->recv = recv;
    call->dtype = send->dtype;
    call->op = op;
    call->count = nr;
    return DSRT_OK;
}

dsrt_status dsrt_all_reduce(dsrt_comm *c, const dsrt_tensor *send, const dsrt_tensor *recv, dsrt_reduce_op op,
                            dsrt_stream *s)
{
    DSRT_COMM_CHECK_NULL(c, DSRT_COMM_ALL_REDUCE);
    dsrt_comm_call call = {.kind = DSRT_COMM_ALL_REDUCE};
    return dsrt_comm_dispatch(c, &call, dsrt_comm_validate_reduce(c, &call, send, recv, op, s));
}

dsrt_status dsrt_reduce_scatter(dsrt_comm *c, const dsrt_tensor *send, const dsrt_tensor *recv, dsrt_reduce_op op,
                                dsrt_stream *s)
{
    DSRT_COMM_CHECK_NULL(c, DSRT_COMM_REDUCE_SCATTER);
    dsrt_comm_call call = {.kind = DSRT_COMM_REDUCE_SCATTER};
    return dsrt_comm_dispatch(c, &call, dsrt_comm_validate_reduce(c, &call, send, recv, op, s));
}

static dsrt_status dsrt_comm_validate_gather(dsrt_comm *c, dsrt_comm_call *call, const dsrt_tensor *send,
                                             const dsrt_tensor *recv, dsrt_stream *s)
{
    dsrt_comm_kind k = call->kind;
    DSRT_TRY(dsrt_comm_check_stream(c, k, s));
    call->stream = s;
    DSRT_TRY(dsrt_comm_check_pair(c, k, send, recv));
    int64_t ns = dsrt_tensor_numel(send), nr = dsrt_tensor_numel(recv);
    if (k == DSRT_COMM_ALL_GATHER) {
        if (nr != ns * c->size)
            return dsrt_comm_bad(c, k, DSRT_CODE_INVALID_ARGUMENT,
                                 "recv has %lld elements but must hold %d blocks of send's %lld", (long long)nr, c->size,
                                 (long long)ns);
        call->count = ns;
    } else {
        if (ns != nr || ns % c->size)
            return dsrt_comm_bad(c, k, DSRT_CODE_INVALID_ARGUMENT,
                                 "send has %lld and recv %lld elements: both must hold %d equal blocks", (long long)ns,
                                 (long long)nr, c->size);
        call->count = ns / c->size;
    }
    call->send = send;
    call->recv = recv;
    call->dtype = send->dtype;
    return DSRT_OK;
}

dsrt_status dsrt_all_gather(dsrt_comm *c, const dsrt_tensor *send, const dsrt_tensor *recv, dsrt_stream *s)
{
    DSRT_COMM_CHECK_NULL(c, DSRT_COMM_ALL_GATHER);
    dsrt_comm_call call = {.kind = DSRT_COMM_ALL_GATHER};
    return dsrt_comm_dispatch(c, &call, dsrt_comm_validate_gather(c, &call, send, recv, s));
}

dsrt_status dsrt_all_to_all(dsrt_comm *c, const dsrt_tensor *send, const dsrt_tensor *recv, dsrt_stream *s)
{
    DSRT_COMM_CHECK_NULL(c, DSRT_COMM_ALL_TO_ALL);
    dsrt_comm_call call = {.kind = DSRT_COMM_ALL_TO_ALL};
    return dsrt_comm_dispatch(c, &call, dsrt_comm_validate_gather(c, &call, send, recv, s));
}

/* Every segment [displs[i], displs[i] + counts[i]) must lie inside the tensor's `numel` elements. */
static dsrt_status dsrt_comm_check_segments(const dsrt_comm *c, const int64_t *counts, const int64_t *displs,
                                            int64_t numel, const char *role)
{
    if (!counts || !displs)
        return dsrt_comm_bad(c, DSRT_COMM_ALL_TO_ALLV, DSRT_CODE_INVALID_ARGUMENT, "%s counts or displacements are NULL",
                             role);
    for (int i = 0; i < c->size; i++) {
        if (counts[i] < 0 || displs[i] < 0)
            return dsrt_comm_bad(c, DSRT_COMM_ALL_TO_ALLV, DSRT_CODE_INVALID_ARGUMENT,
                                 "%s count %lld or displacement %lld for rank %d is negative", role,
                                 (long long)counts[i], (long long)displs[i], i);
        if (counts[i] > numel || displs[i] > numel - counts[i])
            return dsrt_comm_bad(c, DSRT_COMM_ALL_TO_ALLV, DSRT_CODE_OUT_OF_RANGE,
                                 "%s segment for rank %d, elements [%lld, %lld), is outside the %lld-element %s tensor",
                                 role, i, (long long)displs[i], (long long)(displs[i] + counts[i]), (long long)numel,
                                 role);
    }
    return DSRT_OK;
}

static dsrt_status dsrt_comm_validate_allv(dsrt_comm *c, dsrt_comm_call *call, const dsrt_tensor *send,
                                           const int64_t *send_counts, const int64_t *send_displs,
                                           const dsrt_tensor *recv, const int64_t *recv_counts,
                                           const int64_t *recv_displs, dsrt_stream *s)
{
    dsrt_comm_kind k = call->kind;
    DSRT_TRY(dsrt_comm_check_stream(c, k, s));
    call->stream = s;
    DSRT_TRY(dsrt_comm_check_pair(c, k, send, recv));
    DSRT_TRY(dsrt_comm_check_segments(c, send_counts, send_displs, dsrt_tensor_numel(send), "send"));
    DSRT_TRY(dsrt_comm_check_segments(c, recv_counts, recv_displs, dsrt_tensor_numel(recv), "recv"));
    call->send = send;
    call->recv = recv;
    call->dtype = send->dtype;
    call->send_counts = send_counts;
    call->send_displs = send_displs;
    call->recv_counts = recv_counts;
    call->recv_displs = recv_displs;
    return DSRT_OK;
}

dsrt_status dsrt_all_to_allv(dsrt_comm *c, const dsrt_tensor *send, const int64_t *send_counts,
                             const int64_t *send_displs, const dsrt_tensor *recv, const int64_t *recv_counts,
                             const int64_t *recv_displs, dsrt_stream *s)
{
    DSRT_COMM_CHECK_NULL(c, DSRT_COMM_ALL_TO_ALLV);
    dsrt_comm_call call = {.kind = DSRT_COMM_ALL_TO_ALLV};
    return dsrt_comm_dispatch(c, &call, dsrt_comm_validate_allv(c, &call, send, send_counts, send_displs, recv,
                                                                 recv_counts, recv_displs, s));
}

static dsrt_status dsrt_comm_validate_bcast(dsrt_comm *c, dsrt_comm_call *call, const dsrt_tensor *send,
                                            const dsrt_tensor *recv, int root, dsrt_stream *s)
{
    dsrt_comm_kind k = call->kind;
    if (root < 0 || root >= c->size)
        return dsrt_comm_bad(c, k, DSRT_CODE_OUT_OF_RANGE, "root %d is outside ranks 0..%d", root, c->size - 1);
    call->root = root;
    DSRT_TRY(dsrt_comm_check_stream(c, k, s));
    call->stream = s;
    if (c->rank == root) {
        DSRT_TRY(dsrt_comm_check_pair(c, k, send, recv));
        if (dsrt_tensor_numel(send) != dsrt_tensor_numel(recv))
            return dsrt_comm_bad(c, k, DSRT_CODE_INVALID_ARGUMENT, "send has %lld elements but recv %lld",
                                 (long long)dsrt_tensor_numel(send), (long long)dsrt_tensor_numel(recv));
        call->send = send;
    } else {
        DSRT_TRY(dsrt_comm_check_tensor(c, k, recv, "recv", true));
    }
    call->recv = recv;
    call->dtype = recv->dtype;
    call->count = dsrt_tensor_numel(recv);
    return DSRT_OK;
}

dsrt_status dsrt_broadcast(dsrt_comm *c, const dsrt_tensor *send, const dsrt_tensor *recv, int root, dsrt_stream *s)
{
    DSRT_COMM_CHECK_NULL(c, DSRT_COMM_BROADCAST);
    dsrt_comm_call call = {.kind = DSRT_COMM_BROADCAST};
    return dsrt_comm_dispatch(c, &call, dsrt_comm_validate_bcast(c, &call, send, recv, root, s));
}

static dsrt_status dsrt_comm_p2p(dsrt_comm *c, dsrt_comm_kind k, const dsrt_tensor *t, int peer, dsrt_stream *s)
{
    DSRT_COMM_CHECK_NULL(c, k);
    /* Without a valid peer the call cannot be matched with anything: nobody to tell. */
    if (peer < 0 || peer >= c->size)
        return dsrt_comm_bad(c, k, DSRT_CODE_OUT_OF_RANGE, "peer %d is outside ranks 0..%d", peer, c->size - 1);
    dsrt_comm_call call = {.kind = k, .peer = peer};
    dsrt_status st = dsrt_comm_check_stream(c, k, s);
    if (!st) {
        call.stream = s;
        st = dsrt_comm_check_tensor(c, k, t, k == DSRT_COMM_SEND ? "send" : "recv", k == DSRT_COMM_RECV);
    }
    if (!st) {
        if (k == DSRT_COMM_SEND) call.send = t;
        else call.recv = t;
        call.dtype = t->dtype;
        call.count = dsrt_tensor_numel(t);
    }
    return dsrt_comm_dispatch(c, &call, st);
}

dsrt_status dsrt_send(dsrt_comm *c, const dsrt_tensor *t, int peer, dsrt_stream *s)
{
    return dsrt_comm_p2p(c, DSRT_COMM_SEND, t, peer, s);
}

dsrt_status dsrt_recv(dsrt_comm *c, const dsrt_tensor *t, int peer, dsrt_stream *s)
{
    return dsrt_comm_p2p(c, DSRT_COMM_RECV, t, peer, s);
}

/* ---- host reductions ---- */

#define DSRT_COMM_CHUNK 256

static void dsrt_comm_load_f32(dsrt_dtype dt, const void *src, int64_t m, float *dst)
{
    if (dt == DSRT_F32) {
        memcpy(dst, src, (size_t)m * sizeof(float));
    } else if (dt == DSRT_BF16) {
        const uint16_t *s = src;
        for (int64_t i = 0; i < m; i++) dst[i] = dsrt_bf16_to_f32(s[i]);
    } else {
        const uint16_t *s = src;
        for (int64_t i = 0; i < m; i++) dst[i] = dsrt_f16_to_f32(s[i]);
    }
}

static void dsrt_comm_store_f32(dsrt_dtype dt, const float *src, int64_t m, void *dst)
{
    if (dt == DSRT_F32) {
        memcpy(dst, src, (size_t)m * sizeof(float));
    } else if (dt == DSRT_BF16) {
        uint16_t *d = dst;
        for (int64_t i = 0; i < m; i++) d[i] = dsrt_f32_to_bf16(src[i]);
    } else {
        uint16_t *d = dst;
        for (int64_t i = 0; i < m; i++) d[i] = dsrt_f32_to_f16(src[i]);
    }
}

static void dsrt_comm_combine_f32(dsrt_reduce_op op, float *acc, const float *v, int64_t m)
{
    switch (op) {
    case DSRT_REDUCE_SUM:
        for (int64_t i = 0; i < m; i++) acc[i] += v[i];
        break;
    case DSRT_REDUCE_PROD:
        for (int64_t i = 0; i < m; i++) acc[i] *= v[i];
        break;
    case DSRT_REDUCE_MAX: /* a NaN on either side wins, so it is not silently dropped */
        for (int64_t i = 0; i < m; i++)
            if (isnan(v[i]) || v[i] > acc[i]) acc[i] = isnan(acc[i]) ? acc[i] : v[i];
        break;
    case DSRT_REDUCE_MIN:
        for (int64_t i = 0; i < m; i++)
            if (isnan(v[i]) || v[i] < acc[i]) acc[i] = isnan(acc[i]) ? acc[i] : v[i];
        break;
    }
}

/* Integers combine through the unsigned type of the same width so that sums and products wrap
 * (as on every device) instead of overflowing, which C leaves undefined. */
#define DSRT_COMM_REDUCE_INT(T, UT)                                                                                \
    do {                                                                                                           \
        T *o = out;                                                                                                \
        for (int64_t i = 0; i < count; i++) {                                                                      \
            T a = ((const T *)srcs[0])[i];                                                                         \
            for (int k = 1; k < nsrc; k++) {                                                                       \
                T b = ((const T *)srcs[k])[i];                                                                     \
                switch (op) {                                                                                      \
                case DSRT_REDUCE_SUM: a = (T)((UT)a + (UT)b); break;                                               \
                case DSRT_REDUCE_PROD: a = (T)((UT)a * (UT)b); break;                                              \
                case DSRT_REDUCE_MAX: a = b > a ? b : a; break;                                                    \
                case DSRT_REDUCE_MIN: a = b < a ? b : a; break;                                                    \
                }                                                                                                  \
            }                                                                                                      \
            o[i] = a;                                                                                              \
        }                                                                                                          \
    } while (0)

void dsrt_comm_reduce_host(dsrt_dtype dt, dsrt_reduce_op op, const void *const *srcs, int nsrc, void *out,
                           int64_t count)
{
    if (nsrc < 1 || count <= 0) return;
    switch (dt) {
    case DSRT_I32: DSRT_COMM_REDUCE_INT(int32_t, uint32_t); return;
    case DSRT_I64: DSRT_COMM_REDUCE_INT(int64_t, uint64_t); return;
    case DSRT_U8: DSRT_COMM_REDUCE_INT(uint8_t, unsigned); return;
    default: break;
    }
    size_t es = dsrt_dtype_size(dt);
    float acc[DSRT_COMM_CHUNK], v[DSRT_COMM_CHUNK];
    for (int64_t base = 0; base < count; base += DSRT_COMM_CHUNK) {
        int64_t m = count - base < DSRT_COMM_CHUNK ? count - base : DSRT_COMM_CHUNK;
        size_t off = (size_t)base * es;
        dsrt_comm_load_f32(dt, (const char *)srcs[0] + off, m, acc);
        for (int k = 1; k < nsrc; k++) {
            dsrt_comm_load_f32(dt, (const char *)srcs[k] + off, m, v);
            dsrt_comm_combine_f32(op, acc, v, m);
        }
        dsrt_comm_store_f32(dt, acc, m, (char *)out + off);
    }
}

/* ---- host staging ---- */

void *dsrt_comm_alloc(size_t bytes) { return malloc(bytes ? bytes : 1); }

dsrt_status dsrt_comm_read_input(dsrt_stream *s, const dsrt_tensor *t, void *dst)
{
    if (s->capturing)
        return dsrt_error(DSRT_CODE_INVALID_ARGUMENT,
                          "the stream on %s is capturing a graph; host-staged collectives cannot be captured",
                          s->dev->label);
    size_t bytes = dsrt_tensor_nbytes(t);
    if (bytes) DSRT_TRY(dsrt_stream_read(s, t->buf, t->offset, dst, bytes));
    /* The sync also waits for the work that produced the data, and reports its failure here. */
    return dsrt_stream_sync(s);
}

/* Beyond this many idle slots a pool waits for an upload instead of growing. */
#define DSRT_COMM_STAGE_IDLE_MAX 8

static bool dsrt_comm_stage_idle(dsrt_comm_stage *st)
{
    if (st->held) return false;
    if (!st->ev) return true;
    bool done = true;
    dsrt_status q = dsrt_event_query(st->ev, &done);
    if (q) {
        /* The stream failed; that failure is the stream's to report. Wait so the memory is free. */
        dsrt_status_free(q);
        dsrt_status_free(dsrt_event_sync(st->ev));
        return true;
    }
    return done;
}

dsrt_status dsrt_comm_stage_get(dsrt_comm_stage_pool *p, size_t bytes, dsrt_comm_stage **out)
{
    *out = NULL;
    if (!bytes) bytes = 1;
    dsrt_comm_stage *pick = NULL;
    for (int i = 0; i < p->n; i++) {
        dsrt_comm_stage *st = p->slots[i];
        if (!dsrt_comm_stage_idle(st)) continue;
        if (!pick || (pick->cap < bytes && st->cap > pick->cap)) pick = st;
    }
    if (!pick && p->n >= DSRT_COMM_STAGE_IDLE_MAX) {
        /* Every slot is uploading: wait for one rather than pile up host memory. */
        for (int i = 0; i < p->n && !pick; i++) {
            if (p->slots[i]->held) continue;
            dsrt_status_free(dsrt_event_sync(p->slots[i]->ev));
            pick = p->slots[i];
        }
    }
    if (!pick) {
        if (p->n == p->cap) {
            int nc = p->cap ? p->cap * 2 : 4;
            dsrt_comm_stage **ns = realloc(p->slots, (size_t)nc * sizeof *ns);
            if (!ns) return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "out of host memory for staging slots");
            p->slots = ns;
            p->cap = nc;
        }
        pick = calloc(1, sizeof *pick);
        if (!pick) return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "out of host memory for a staging slot");
        p->slots[p->n++] = pick;
    }
    if (pick->cap < bytes) {
        void *h = malloc(bytes);
        if (!h)
            return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "out of host memory staging %zu bytes for %s", bytes,
                              p->dev->label);
        free(pick->host);
        pick->host = h;
        pick->cap = bytes;
    }
    if (!pick->ev) DSRT_TRY(dsrt_event_create(p->dev, &pick->ev));
    pick->held = true;
    *out = pick;
    return DSRT_OK;
}

dsrt_status dsrt_comm_stage_commit(dsrt_comm_stage_pool *p, dsrt_comm_stage *st, dsrt_stream *s)
{
    (void)p;
    st->held = false;
    dsrt_status e = dsrt_event_record(st->ev, s);
    if (e) {
        /* Without the event nothing says when the upload is done: wait for it here instead. */
        dsrt_status_free(dsrt_stream_sync(s));
    }
    return e;
}

void dsrt_comm_stage_drop(dsrt_comm_stage_pool *p, dsrt_comm_stage *st)
{
    (void)p;
    if (st) st->held = false;
}

void dsrt_comm_stage_pool_free(dsrt_comm_stage_pool *p)
{
    for (int i = 0; i < p->n; i++) {
        if (p->slots[i]->ev) {
            dsrt_status_free(dsrt_event_sync(p->slots[i]->ev));
            dsrt_event_release(p->slots[i]->ev);
        }
        free(p->slots[i]->host);
        free(p->slots[i]);
    }
    free(p->slots);
    p->slots = NULL;
    p->n = p->cap = 0;
}
