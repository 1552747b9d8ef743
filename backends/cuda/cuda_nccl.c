/* NCCL collectives, dlopen'ed at run time (see cuda_nccl.h for the contract). The few NCCL types used
 * are declared here (their layout is NCCL's stable ABI), so no NCCL header is needed to build. The HIP
 * build of this file drives RCCL, which keeps NCCL's API and ABI (the same function names, ids and
 * enum values), on HIP devices. */

#include "cuda_nccl.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_backend.h"
#include "dsrt/buffer.h"
#include "dsrt/ops.h"
#include "hal_internal.h"

#ifdef DSRT_GPU_HIP
#include "hip_rocblas.h" /* dsrt_hip_runtimes_differ */
#define CCL "rccl"        /* the implementation's name, message prefix */
#define CCL_TITLE "RCCL"
#define CCL_ENV "DSRT_RCCL_LIBRARY"
#define CCL_SONAME "librccl.so.1"
#define CCL_SO "librccl.so"
#else
#define CCL "nccl"
#define CCL_TITLE "NCCL"
#define CCL_ENV "DSRT_NCCL_LIBRARY"
#define CCL_SONAME "libnccl.so.2"
#define CCL_SO "libnccl.so"
#endif

typedef struct {
    char internal[128];
} nccl_uid;
typedef void *nccl_comm_t;
typedef int nccl_result;
enum { NCCL_INT32 = 2, NCCL_INT64 = 4, NCCL_UINT8 = 1, NCCL_F16 = 6, NCCL_F32 = 7, NCCL_BF16 = 9 };
enum { NCCL_SUM = 0, NCCL_PROD = 1, NCCL_MAX = 2, NCCL_MIN = 3 };

typedef struct nccl_fns {
    void *lib;
    nccl_result (*get_unique_id)(nccl_uid *);
    nccl_result (*comm_init_rank)(nccl_comm_t *, int, nccl_uid, int);
    nccl_result (*comm_init_all)(nccl_comm_t *, int, const int *);
    nccl_result (*comm_destroy)(nccl_comm_t);
    nccl_result (*all_reduce)(const void *, void *, size_t, int, int, nccl_comm_t, gpuStream_t);
    nccl_result (*all_gather)(const void *, void *, size_t, int, nccl_comm_t, gpuStream_t);
    nccl_result (*reduce_scatter)(const void *, void *, size_t, int, int, nccl_comm_t, gpuStream_t);
    nccl_result (*broadcast)(const void *, void *, size_t, int, int, nccl_comm_t, gpuStream_t);
    nccl_result (*send)(const void *, size_t, int, int, nccl_comm_t, gpuStream_t);
    nccl_result (*recv)(void *, size_t, int, int, nccl_comm_t, gpuStream_t);
    nccl_result (*group_start)(void);
    nccl_result (*group_end)(void);
    const char *(*error_string)(nccl_result);
    char why[200];
} nccl_fns;

/* Loaded once for the process; read-only afterwards. */
static nccl_fns dsrt_nccl;
static pthread_once_t dsrt_nccl_once = PTHREAD_ONCE_INIT;

static void dsrt_nccl_load(void)
{
    nccl_fns *f = &dsrt_nccl;
    const char *name = getenv(CCL_ENV);
    f->lib = dlopen(name ? name : CCL_SONAME, RTLD_NOW | RTLD_LOCAL);
    if (!f->lib && !name) f->lib = dlopen(CCL_SO, RTLD_NOW | RTLD_LOCAL);
    if (!f->lib) {
        snprintf(f->why, sizeof f->why, CCL_TITLE " not found (%s)", dlerror());
        return;
    }
#ifdef DSRT_GPU_HIP
    /* RCCL of another ROCm release brings its own HIP runtime, whose memory and streams are not ours */
    char rt[160];
    if (dsrt_hip_runtimes_differ(rt, sizeof rt)) {
        snprintf(f->why, sizeof f->why, "RCCL not used: %.150s", rt);
        dlclose(f->lib);
        f->lib = NULL;
        return;
    }
#endif
#define SYM(field, sym)                                                                                             \
    do {                                                                                                            \
        *(void **)&f->field = dlsym(f->lib, sym);                                                                   \
        if (!f->field) {                                                                                            \
            snprintf(f->why, sizeof f->why, CCL_TITLE " library lacks %s (too old?)", sym);                               \
            dlclose(f->lib);                                                                                        \
            f->lib = NULL;                                                                                          \
            return;                                                                                                 \
        }                                                                                                           \
    } while (0)
    SYM(get_unique_id, "ncclGetUniqueId");
    SYM(comm_init_rank, "ncclCommInitRank");
    SYM(comm_init_all, "ncclCommInitAll");
    SYM(comm_destroy, "ncclCommDestroy");
    SYM(all_reduce, "ncclAllReduce");
    SYM(all_gather, "ncclAllGather");
    SYM(reduce_scatter, "ncclReduceScatter");
    SYM(broadcast, "ncclBroadcast");
    SYM(send, "ncclSend");
    SYM(recv, "ncclRecv");
    SYM(group_start, "ncclGroupStart");
    SYM(group_end, "ncclGroupEnd");
    SYM(error_string, "ncclGetErrorString");
#undef SYM
}

static bool nccl_available(char *why, size_t why_len)
{
    pthread_once(&dsrt_nccl_once, dsrt_nccl_load);
    if (!dsrt_nccl.lib && why) snprintf(why, why_len, "%s", dsrt_nccl.why);
    return dsrt_nccl.lib != NULL;
}

static dsrt_status nccl_ready(void)
{
    char why[200];
    if (!nccl_available(why, sizeof why)) return dsrt_error(DSRT_CODE_UNAVAILABLE, CCL ": %s", why);
    return DSRT_OK;
}

static dsrt_status nccl_check(nccl_result r, const char *what)
{
    if (r == 0) return DSRT_OK;
    return dsrt_error(DSRT_CODE_DEVICE, CCL ": %s failed: %s", what, dsrt_nccl.error_string(r));
}

struct dsrt_nccl_comm {
    nccl_comm_t comm;
    dsrt_device *dev;
    int rank, size, cuda_index;
    dsrt_buffer *tmp; /* fp32 staging for bf16/f16 sums */
};

/* Whether d belongs to this backend (CUDA for NCCL, HIP for RCCL). */
static bool is_ours(const dsrt_device *d) { return d && strcmp(d->backend->vt->name, DSRT_GPU_RT_NAME) == 0; }

static dsrt_status nccl_unique_id(dsrt_comm_unique_id *id)
{
    DSRT_TRY(nccl_ready());
    nccl_uid u;
    DSRT_TRY(nccl_check(dsrt_nccl.get_unique_id(&u), "ncclGetUniqueId"));
    memcpy(id->bytes, u.internal, sizeof id->bytes);
    return DSRT_OK;
}

static dsrt_status nccl_init_rank(dsrt_device *dev, int nranks, const dsrt_comm_unique_id *id, int rank,
                                  dsrt_nccl_comm **out)
{
    DSRT_TRY(nccl_ready());
    if (!is_ours(dev))
        return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, CCL ": %s is not a " DSRT_GPU_RT_TITLE " device",
                          dsrt_device_label(dev));
    if (rank < 0 || rank >= nranks)
        return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, CCL ": rank %d outside 0..%d", rank, nranks - 1);
    dsrt_nccl_comm *c = calloc(1, sizeof *c);
    if (!c) return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, CCL ": out of memory");
    c->dev = dev;
    c->rank = rank;
    c->size = nranks;
    c->cuda_index = dsrt_cuda_device_of(dev->dctx);
    nccl_uid u;
    memcpy(u.internal, id->bytes, sizeof u.internal);
    dsrt_status st = dsrt_cuda_check(gpuSetDevice(c->cuda_index), GPU_API("SetDevice"));
    if (!st) st = nccl_check(dsrt_nccl.comm_init_rank(&c->comm, nranks, u, rank), "ncclCommInitRank");
    if (st) {
        free(c);
        return st;
    }
    dsrt_device_retain(dev);
    *out = c;
    return DSRT_OK;
}

static dsrt_status nccl_init_all(dsrt_device *const *devs, int n, dsrt_nccl_comm **comms)
{
    DSRT_TRY(nccl_ready());
    if (n < 1) return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, CCL ": no devices");
    int *list = calloc((size_t)n, sizeof *list);
    nccl_comm_t *raw = calloc((size_t)n, sizeof *raw);
    if (!list || !raw) {
        free(list);
        free(raw);
        return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, CCL ": out of memory");
    }
    dsrt_status st = DSRT_OK;
    for (int i = 0; i < n && !st; i++) {
        if (!is_ours(devs[i]))
            st = dsrt_error(DSRT_CODE_INVALID_ARGUMENT, CCL ": %s is not a " DSRT_GPU_RT_TITLE " device",
                            dsrt_device_label(devs[i]));
        else list[i] = dsrt_cuda_device_of(devs[i]->dctx);
    }
    if (!st) st = nccl_check(dsrt_nccl.comm_init_all(raw, n, list), "ncclCommInitAll");
    for (int i = 0; i < n && !st; i++) {
        comms[i] = calloc(1, sizeof **comms);
        if (!comms[i]) {
            st = dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, CCL ": out of memory");
            for (int j = 0; j < i; j++) {
                dsrt_device_release(comms[j]->dev);
                free(comms[j]);
            }
            for (int j = 0; j < n; j++) dsrt_nccl.comm_destroy(raw[j]);
            break;
        }
        comms[i]->comm = raw[i];
        comms[i]->dev = devs[i];
        comms[i]->rank = i;
        comms[i]->size = n;
        comms[i]->cuda_index = list[i];
        dsrt_device_retain(devs[i]);
    }
    free(list);
    free(raw);
    return st;
}

static void nccl_destroy(dsrt_nccl_comm *c)
{
    if (!c) return;
    if (dsrt_nccl.lib) dsrt_nccl.comm_destroy(c->comm);
    dsrt_buffer_release(c->tmp);
    dsrt_device_release(c->dev);
    free(c);
}

static int nccl_rank(const dsrt_nccl_comm *c) { return c ? c->rank : -1; }
static int nccl_size(const dsrt_nccl_comm *c) { return c ? c->size : 0; }

static dsrt_status nccl_group_start(void)
{
    DSRT_TRY(nccl_ready());
    return nccl_check(dsrt_nccl.group_start(), "ncclGroupStart");
}

static dsrt_status nccl_group_end(void)
{
    DSRT_TRY(nccl_ready());
    return nccl_check(dsrt_nccl.group_end(), "ncclGroupEnd");
}

/* ---- argument checks ---- */

static bool nccl_dtype(dsrt_dtype t, int *out, bool *reducible)
{
    *reducible = true;
    switch (t) {
    case DSRT_F32: *out = NCCL_F32; return true;
    case DSRT_BF16: *out = NCCL_BF16; return true;
    case DSRT_F16: *out = NCCL_F16; return true;
    case DSRT_I32: *out = NCCL_INT32; return true;
    case DSRT_I64: *out = NCCL_INT64; return true;
    case DSRT_E4M3:
    case DSRT_E5M2:
    case DSRT_UE8M0:
    case DSRT_U8: *out = NCCL_UINT8; *reducible = false; return true;
    default: return false;
    }
}

static dsrt_status nccl_tensor(const dsrt_nccl_comm *c, const dsrt_tensor *t, const char *what, const char *name)
{
    if (!c) return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, CCL " %s: communicator is NULL", what);
    if (!t || !t->buf) return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, CCL " %s: %s tensor is missing", what, name);
    if (dsrt_buffer_device(t->buf) != c->dev)
        return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, CCL " %s: %s lives on %s, the communicator on %s", what, name,
                          dsrt_device_label(dsrt_buffer_device(t->buf)), dsrt_device_label(c->dev));
    if (!dsrt_tensor_is_contiguous(t))
        return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, CCL " %s: %s must be contiguous", what, name);
    return DSRT_OK;
}

static dsrt_status nccl_stream(const dsrt_nccl_comm *c, dsrt_stream *s, const char *what, gpuStream_t *out)
{
    if (!s || s->dev != c->dev)
        return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, CCL " %s: the stream is not on %s", what, dsrt_device_label(c->dev));
    *out = dsrt_cuda_stream_of(s->sctx);
    if (gpuSetDevice(c->cuda_index) == gpuSuccess) return DSRT_OK;
    gpuGetLastError();
    return dsrt_error(DSRT_CODE_DEVICE, CCL " %s: " GPU_API("SetDevice") " failed", what);
}

static void *tptr(const dsrt_tensor *t) { return (char *)dsrt_buffer_native(t->buf) + t->offset; }

static bool nccl_redop(dsrt_reduce_op op, int *out)
{
    switch (op) {
    case DSRT_REDUCE_SUM: *out = NCCL_SUM; return true;
    case DSRT_REDUCE_PROD: *out = NCCL_PROD; return true;
    case DSRT_REDUCE_MAX: *out = NCCL_MAX; return true;
    case DSRT_REDUCE_MIN: *out = NCCL_MIN; return true;
    default: return false;
    }
}

/* A view of the communicator's fp32 staging buffer with n elements at element offset `at`. */
static dsrt_status nccl_tmp(dsrt_nccl_comm *c, int64_t total, int64_t at, int64_t n, dsrt_tensor *out)
{
    size_t need = sizeof(float) * (size_t)total;
    if (!c->tmp || dsrt_buffer_size(c->tmp) < need) {
        dsrt_buffer_release(c->tmp);
        c->tmp = NULL;
        DSRT_TRY(dsrt_buffer_alloc(c->dev, need, &c->tmp));
    }
    int64_t shape[1] = {n};
    return dsrt_tensor_make(c->tmp, sizeof(float) * (size_t)at, DSRT_F32, 1, shape, out);
}

static dsrt_status flat(const dsrt_tensor *t, dsrt_tensor *out)
{
    int64_t n = dsrt_tensor_numel(t);
    return dsrt_tensor_reshape(t, 1, &n, out);
}

/* bf16/f16 SUM and PROD reduce in fp32: upcast, reduce, round once. */
static bool needs_upcast(dsrt_dtype t, dsrt_reduce_op op)
{
    return (t == DSRT_BF16 || t == DSRT_F16) && (op == DSRT_REDUCE_SUM || op == DSRT_REDUCE_PROD);
}

static dsrt_status nccl_all_reduce(dsrt_nccl_comm *c, const dsrt_tensor *send, const dsrt_tensor *recv,
                                   dsrt_reduce_op op, dsrt_stream *s)
{
    DSRT_TRY(nccl_ready());
    DSRT_TRY(nccl_tensor(c, send, "all_reduce", "send"));
    DSRT_TRY(nccl_tensor(c, recv, "all_reduce", "recv"));
    int64_t n = dsrt_tensor_numel(send);
    if (n != dsrt_tensor_numel(recv) || send->dtype != recv->dtype)
        return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, CCL " all_reduce: send and recv differ in size or dtype");
    int dt, ro;
    bool red;
    if (!nccl_dtype(send->dtype, &dt, &red) || !red || !nccl_redop(op, &ro))
        return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, CCL " all_reduce: cannot reduce %s", dsrt_dtype_name(send->dtype));
    gpuStream_t cs = NULL;
    DSRT_TRY(nccl_stream(c, s, "all_reduce", &cs));
    if (!needs_upcast(send->dtype, op))
        return nccl_check(dsrt_nccl.all_reduce(tptr(send), tptr(recv), (size_t)n, dt, ro, c->comm, cs), "ncclAllReduce");
    dsrt_tensor tmp, fs, fr;
    DSRT_TRY(nccl_tmp(c, n, 0, n, &tmp));
    DSRT_TRY(flat(send, &fs));
    DSRT_TRY(flat(recv, &fr));
    DSRT_TRY(dsrt_convert(s, &fs, &tmp));
    DSRT_TRY(dsrt_cuda_check(gpuSetDevice(c->cuda_index), GPU_API("SetDevice")));
    DSRT_TRY(nccl_check(dsrt_nccl.all_reduce(tptr(&tmp), tptr(&tmp), (size_t)n, NCCL_F32, ro, c->comm, cs), "ncclAllReduce"));
    return dsrt_convert(s, &tmp, &fr);
}

static dsrt_status nccl_all_gather(dsrt_nccl_comm *c, const dsrt_tensor *send, const dsrt_tensor *recv, dsrt_stream *s)
{
    DSRT_TRY(nccl_ready());
    DSRT_TRY(nccl_tensor(c, send, "all_gather", "send"));
    DSRT_TRY(nccl_tensor(c, recv, "all_gather", "recv"));
    int64_t n = dsrt_tensor_numel(send);
    if (dsrt_tensor_numel(recv) != n * c->size || send->dtype != recv->dtype)
        return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, CCL " all_gather: recv must hold %d x %lld %s", c->size,
                          (long long)n, dsrt_dtype_name(send->dtype));
    int dt;
    bool red;
    if (!nccl_dtype(send->dtype, &dt, &red))
        return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, CCL " all_gather: dtype %s", dsrt_dtype_name(send->dtype));
    gpuStream_t cs = NULL;
    DSRT_TRY(nccl_stream(c, s, "all_gather", &cs));
    return nccl_check(dsrt_nccl.all_gather(tptr(send), tptr(recv), (size_t)n, dt, c->comm, cs), "ncclAllGather");
}

static dsrt_status nccl_reduce_scatter(dsrt_nccl_comm *c, const dsrt_tensor *send, const dsrt_tensor *recv,
                                       dsrt_reduce_op op, dsrt_stream *s)
{
    DSRT_TRY(nccl_ready());
    DSRT_TRY(nccl_tensor(c, send, "reduce_scatter", "send"));
    DSRT_TRY(nccl_tensor(c, recv, "reduce_scatter", "recv"));
    int64_t n = dsrt_tensor_numel(recv);
    if (dsrt_tensor_numel(send) != n * c->size || send->dtype != recv->dtype)
        return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, CCL " reduce_scatter: send must hold %d x %lld %s", c->size,
                          (long long)n, dsrt_dtype_name(recv->dtype));
    int dt, ro;
    bool red;
    if (!nccl_dtype(send->dtype, &dt, &red) || !red || !nccl_redop(op, &ro))
        return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, CCL " reduce_scatter: cannot reduce %s", dsrt_dtype_name(send->dtype));
    gpuStream_t cs = NULL;
    DSRT_TRY(nccl_stream(c, s, "reduce_scatter", &cs));
    if (!needs_upcast(send->dtype, op))
        return nccl_check(dsrt_nccl.reduce_scatter(tptr(send), tptr(recv), (size_t)n, dt, ro, c->comm, cs),
                          "ncclReduceScatter");
    dsrt_tensor ts, tr, fs, fr;
    DSRT_TRY(nccl_tmp(c, n * c->size + n, 0, n * c->size, &ts));
    DSRT_TRY(nccl_tmp(c, n * c->size + n, n * c->size, n, &tr));
    DSRT_TRY(flat(send, &fs));
    DSRT_TRY(flat(recv, &fr));
    DSRT_TRY(dsrt_convert(s, &fs, &ts));
    DSRT_TRY(dsrt_cuda_check(gpuSetDevice(c->cuda_index), GPU_API("SetDevice")));
    DSRT_TRY(nccl_check(dsrt_nccl.reduce_scatter(tptr(&ts), tptr(&tr), (size_t)n, NCCL_F32, ro, c->comm, cs),
                        "ncclReduceScatter"));
    return dsrt_convert(s, &tr, &fr);
}

static dsrt_status nccl_all_to_allv(dsrt_nccl_comm *c, const dsrt_tensor *send, const int64_t *scount,
                                    const int64_t *sdispl, const dsrt_tensor *recv, const int64_t *rcount,
                                    const int64_t *rdispl, dsrt_stream *s)
{
    DSRT_TRY(nccl_ready());
    DSRT_TRY(nccl_tensor(c, send, "all_to_allv", "send"));
    DSRT_TRY(nccl_tensor(c, recv, "all_to_allv", "recv"));
    if (!scount || !sdispl || !rcount || !rdispl)
        return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, CCL " all_to_allv: counts and displacements are required");
    if (send->dtype != recv->dtype) return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, CCL " all_to_allv: dtypes differ");
    int64_t ns = dsrt_tensor_numel(send), nr = dsrt_tensor_numel(recv);
    for (int p = 0; p < c->size; p++) {
        if (scount[p] < 0 || sdispl[p] < 0 || sdispl[p] + scount[p] > ns)
            return dsrt_error(DSRT_CODE_OUT_OF_RANGE, CCL " all_to_allv: send block %d [%lld, +%lld) outside %lld elements", p,
                              (long long)sdispl[p], (long long)scount[p], (long long)ns);
        if (rcount[p] < 0 || rdispl[p] < 0 || rdispl[p] + rcount[p] > nr)
            return dsrt_error(DSRT_CODE_OUT_OF_RANGE, CCL " all_to_allv: recv block %d [%lld, +%lld) outside %lld elements", p,
                              (long long)rdispl[p], (long long)rcount[p], (long long)nr);
    }
    int dt;
    bool red;
    if (!nccl_dtype(send->dtype, &dt, &red))
        return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, CCL " all_to_allv: dtype %s", dsrt_dtype_name(send->dtype));
    gpuStream_t cs = NULL;
    DSRT_TRY(nccl_stream(c, s, "all_to_allv", &cs));
    size_t es = dsrt_dtype_size(send->dtype);
    DSRT_TRY(nccl_check(dsrt_nccl.group_start(), "ncclGroupStart"));
    dsrt_status st = DSRT_OK;
    for (int p = 0; p < c->size && !st; p++) {
        if (scount[p])
            st = nccl_check(dsrt_nccl.send((char *)tptr(send) + es * (size_t)sdispl[p], (size_t)scount[p], dt, p, c->comm, cs),
                            "ncclSend");
        if (!st && rcount[p])
            st = nccl_check(dsrt_nccl.recv((char *)tptr(recv) + es * (size_t)rdispl[p], (size_t)rcount[p], dt, p, c->comm, cs),
                            "ncclRecv");
    }
    dsrt_status ge = nccl_check(dsrt_nccl.group_end(), "ncclGroupEnd");
    if (st) {
        dsrt_status_free(ge);
        return st;
    }
    return ge;
}

static dsrt_status nccl_all_to_all(dsrt_nccl_comm *c, const dsrt_tensor *send, const dsrt_tensor *recv, dsrt_stream *s)
{
    if (!c) return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, CCL " all_to_all: communicator is NULL");
    DSRT_TRY(nccl_tensor(c, send, "all_to_all", "send"));
    int64_t n = dsrt_tensor_numel(send);
    if (n % c->size || (recv && recv->buf && dsrt_tensor_numel(recv) != n))
        return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, CCL " all_to_all: send and recv must hold %d equal blocks", c->size);
    int64_t *v = calloc((size_t)(2 * c->size), sizeof *v);
    if (!v) return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, CCL " all_to_all: out of memory");
    for (int p = 0; p < c->size; p++) {
        v[p] = n / c->size;
        v[c->size + p] = p * (n / c->size);
    }
    dsrt_status st = nccl_all_to_allv(c, send, v, v + c->size, recv, v, v + c->size, s);
    free(v);
    return st;
}

static dsrt_status nccl_broadcast(dsrt_nccl_comm *c, const dsrt_tensor *send, const dsrt_tensor *recv, int root,
                                  dsrt_stream *s)
{
    DSRT_TRY(nccl_ready());
    DSRT_TRY(nccl_tensor(c, recv, "broadcast", "recv"));
    if (!c || root < 0 || root >= c->size) return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, CCL " broadcast: root %d", root);
    const void *sp = tptr(recv);
    if (c->rank == root) {
        DSRT_TRY(nccl_tensor(c, send, "broadcast", "send"));
        if (dsrt_tensor_numel(send) != dsrt_tensor_numel(recv) || send->dtype != recv->dtype)
            return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, CCL " broadcast: send and recv differ");
        sp = tptr(send);
    }
    int dt;
    bool red;
    if (!nccl_dtype(recv->dtype, &dt, &red))
        return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, CCL " broadcast: dtype %s", dsrt_dtype_name(recv->dtype));
    gpuStream_t cs = NULL;
    DSRT_TRY(nccl_stream(c, s, "broadcast", &cs));
    return nccl_check(dsrt_nccl.broadcast(sp, tptr(recv), (size_t)dsrt_tensor_numel(recv), dt, root, c->comm, cs),
                      "ncclBroadcast");
}

static dsrt_status nccl_p2p(dsrt_nccl_comm *c, const dsrt_tensor *t, int peer, dsrt_stream *s, bool is_send)
{
    const char *what = is_send ? "send" : "recv";
    DSRT_TRY(nccl_ready());
    DSRT_TRY(nccl_tensor(c, t, what, "tensor"));
    if (peer < 0 || peer >= c->size || peer == c->rank)
        return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, CCL " %s: peer %d of %d ranks (self %d)", what, peer, c->size, c->rank);
    int dt;
    bool red;
    if (!nccl_dtype(t->dtype, &dt, &red)) return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, CCL " %s: dtype", what);
    gpuStream_t cs = NULL;
    DSRT_TRY(nccl_stream(c, s, what, &cs));
    size_t n = (size_t)dsrt_tensor_numel(t);
    if (is_send) return nccl_check(dsrt_nccl.send(tptr(t), n, dt, peer, c->comm, cs), "ncclSend");
    return nccl_check(dsrt_nccl.recv(tptr(t), n, dt, peer, c->comm, cs), "ncclRecv");
}

static dsrt_status nccl_send(dsrt_nccl_comm *c, const dsrt_tensor *t, int peer, dsrt_stream *s)
{
    return nccl_p2p(c, t, peer, s, true);
}

static dsrt_status nccl_recv(dsrt_nccl_comm *c, const dsrt_tensor *t, int peer, dsrt_stream *s)
{
    return nccl_p2p(c, t, peer, s, false);
}

static const dsrt_nccl_api dsrt_nccl_api_table = {
    .name = CCL,
    .available = nccl_available,
    .unique_id = nccl_unique_id,
    .init_rank = nccl_init_rank,
    .init_all = nccl_init_all,
    .destroy = nccl_destroy,
    .rank = nccl_rank,
    .size = nccl_size,
    .group_start = nccl_group_start,
    .group_end = nccl_group_end,
    .all_reduce = nccl_all_reduce,
    .all_gather = nccl_all_gather,
    .reduce_scatter = nccl_reduce_scatter,
    .all_to_all = nccl_all_to_all,
    .all_to_allv = nccl_all_to_allv,
    .broadcast = nccl_broadcast,
    .send = nccl_send,
    .recv = nccl_recv,
};

const dsrt_nccl_api *dsrt_cuda_nccl_api(void) { return &dsrt_nccl_api_table; }
