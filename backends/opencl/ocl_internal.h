/* Private types of the OpenCL backend: devices found at init, opened devices (context, program),
 * buffers, streams (in-order command queues) and events, and the kernel table. */
#ifndef DSRT_OCL_INTERNAL_H
#define DSRT_OCL_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __APPLE__
#include <OpenCL/cl.h>
#else
#include <CL/cl.h>
#endif

#include "dsrt/backend_impl.h"

/* Every kernel of kernels/opencl, by name. Streams create their cl_kernel objects lazily from this
 * list: a cl_kernel's arguments are per object, so each stream owns its own and no lock is needed. */
#define DSRT_OCL_KERNEL_LIST(X) \
    X(convert) \
    X(embed) \
    X(rms_norm) \
    X(layer_norm) \
    X(rope) \
    X(swiglu) \
    X(add) \
    X(act_quant) \
    X(hadamard) \
    X(cache_write) \
    X(gemv_f32) \
    X(gemv_bf16) \
    X(gemv_f16) \
    X(gemv_e4m3) \
    X(gemv_e4m3_lut) \
    X(gemm_tiled) \
    X(gemv_cols) \
    X(splitk_reduce) \
    X(group_compact) \
    X(prep_rows) \
    X(attn_positions) \
    X(attn_slots) \
    X(mla_decode_scores) \
    X(attn_softmax) \
    X(attn_softmax_dense) \
    X(mla_decode_pv) \
    X(mla_decode_reduce) \
    X(mla_prefill_scores) \
    X(mla_prefill_pv) \
    X(indexer_scores) \
    X(topk) \
    X(moe_gate) \
    X(moe_dispatch_index) \
    X(moe_dispatch_copy) \
    X(moe_combine) \
    X(sample_prep) \
    X(sample)

#define DSRT_OCL_KERNEL_ENUM(name) DSRT_OCL_K_##name,
typedef enum { DSRT_OCL_KERNEL_LIST(DSRT_OCL_KERNEL_ENUM) DSRT_OCL_K_COUNT } dsrt_ocl_kernel_id;
#undef DSRT_OCL_KERNEL_ENUM

extern const char *const dsrt_ocl_kernel_names[DSRT_OCL_K_COUNT];

/* One device as found at init (across all platforms), with its capabilities. */
typedef struct dsrt_ocl_devinfo {
    cl_platform_id platform;
    cl_device_id device;
    dsrt_device_caps caps;
    char platform_name[128];
    char platform_version[128];
    char device_version[128];
    char extensions[4096]; /* truncated: only the names we test for matter */
    cl_uint addr_align_bits;
    bool denorms;     /* single precision denormals: the arithmetic FP8 decode needs them */
    bool exact_div;   /* -cl-fp32-correctly-rounded-divide-sqrt is available */
    bool fp64;
    bool subgroups;   /* cl_khr_subgroups */
    size_t pref_wg_multiple;
} dsrt_ocl_devinfo;

typedef struct dsrt_ocl_backend {
    dsrt_ocl_devinfo *devs;
    int ndevs;
    char why[256];
} dsrt_ocl_backend;

/* Tunables fixed per opened device (from its capabilities) and compiled into the program. */
typedef struct dsrt_ocl_config {
    int wg;          /* work-group size of the row kernels (norms, reductions): power of two; the
                      * program is built for the device maximum (DSRT_WG), launches may use less */
    bool tiled;      /* gemm_tiled can run its 16x16 groups */
    bool prefill_lists; /* MLA prefill without indices through the per-row list kernels (DSRT_OPENCL_PREFILL=lists)
                         * instead of the dense GEMM path; for testing and comparison */
    int gemv_rows;   /* weight rows per GEMV work group */
    bool fp8_arith;  /* decode e4m3 with integer ops (needs denormals) instead of the local table */
    bool clblast;    /* large f32 GEMMs through CLBlast (when built with it; DSRT_OPENCL_CLBLAST=0 turns it off) */
    bool hgemm;      /* f16 GEMMs through CLBlast's HGEMM: needs cl_khr_fp16 and DSRT_OPENCL_HGEMM=1, since
                      * HGEMM accumulates in half precision where ops.h promises fp32 */
    size_t local_mem;
} dsrt_ocl_config;

typedef struct dsrt_ocl_device {
    const dsrt_ocl_devinfo *info;
    cl_context ctx;
    cl_program program;
    dsrt_ocl_config cfg;
    double build_seconds;  /* time to get the program ready at open (measured for the cache) */
    bool from_cache;       /* the program came from the on-disk binary cache */
    char cache_path[1024]; /* "" when caching is off */
} dsrt_ocl_device;

typedef struct dsrt_ocl_buffer {
    cl_mem mem;
    size_t size;
} dsrt_ocl_buffer;

#define DSRT_OCL_SCRATCH_SLOTS 4

typedef struct dsrt_ocl_stream {
    dsrt_ocl_device *dev;
    cl_command_queue q;
    cl_kernel kernels[DSRT_OCL_K_COUNT];
    /* Per-op temporaries, one buffer per use within an op; grown on demand. Ops run in queue order, so
     * the next op may reuse them; a replaced cl_mem lives until the work that uses it has ended. */
    cl_mem scratch[DSRT_OCL_SCRATCH_SLOTS];
    size_t scratch_size[DSRT_OCL_SCRATCH_SLOTS];
    cl_mem staging; /* for copies within one buffer whose ranges overlap */
    size_t staging_size;
    /* DSRT_OPENCL_PROFILE=1: each kernel's device time from its event, summed per kernel and printed
     * to stderr when the stream is released (which kernel is slow on a new device) */
    bool profile;
    bool trace; /* DSRT_OPENCL_TRACE=1: each launch printed (and flushed) to stderr before it is enqueued */
    cl_event *prof_ev;
    dsrt_ocl_kernel_id *prof_id;
    int prof_n, prof_cap;
    double prof_ns[DSRT_OCL_K_COUNT];
    long prof_calls[DSRT_OCL_K_COUNT];
} dsrt_ocl_stream;

/* Keeps a launched kernel's event for the profile (takes ownership of ev). */
dsrt_status dsrt_ocl_profile_add(dsrt_ocl_stream *s, dsrt_ocl_kernel_id id, cl_event ev);

typedef struct dsrt_ocl_event {
    dsrt_ocl_device *dev;
    cl_event ev; /* NULL until recorded */
} dsrt_ocl_event;

/* Errors */
const char *dsrt_ocl_error_name(cl_int err);
dsrt_status dsrt_ocl_fail(cl_int err, const char *fmt, ...) DSRT_PRINTF(2, 3);

/* Program build with the on-disk binary cache (ocl_program.c). */
dsrt_status dsrt_ocl_build_program(dsrt_ocl_device *d);
/* Builds `source` with `options` for the device (no cache); the error carries the build log. */
dsrt_status dsrt_ocl_build_source(dsrt_ocl_device *d, const char *source, const char *options, cl_program *out);
uint64_t dsrt_ocl_hash(const void *data, size_t n, uint64_t h);

/* Streams and transfers (ocl_stream.c). */
dsrt_status dsrt_ocl_stream_create(void *dctx, void **sctx);
void dsrt_ocl_stream_destroy(void *sctx);
dsrt_status dsrt_ocl_stream_sync(void *sctx);
dsrt_status dsrt_ocl_write(void *sctx, void *dst, size_t off, const void *src, size_t bytes);
dsrt_status dsrt_ocl_read(void *sctx, void *src, size_t off, void *dst, size_t bytes);
dsrt_status dsrt_ocl_copy(void *sctx, void *src, size_t soff, void *dst, size_t doff, size_t bytes);
dsrt_status dsrt_ocl_fill(void *sctx, void *dst, size_t off, size_t bytes, const void *pattern, size_t psize);
dsrt_status dsrt_ocl_event_create(void *dctx, void **ectx);
void dsrt_ocl_event_destroy(void *ectx);
dsrt_status dsrt_ocl_event_record(void *ectx, void *sctx);
dsrt_status dsrt_ocl_stream_wait_event(void *sctx, void *ectx);
dsrt_status dsrt_ocl_event_sync(void *ectx);
dsrt_status dsrt_ocl_event_query(void *ectx, bool *done);

/* Per-stream helpers for the ops. */
dsrt_status dsrt_ocl_kernel(dsrt_ocl_stream *s, dsrt_ocl_kernel_id id, cl_kernel *out);
/* Scratch buffer `slot` of the stream, at least `bytes` long. */
dsrt_status dsrt_ocl_scratch(dsrt_ocl_stream *s, int slot, size_t bytes, cl_mem *out);

/* Ops (ocl_ops*.c). */
bool dsrt_ocl_supports_op(void *dctx, const dsrt_op *op, char *why, size_t why_len);
dsrt_status dsrt_ocl_enqueue_op(void *sctx, const dsrt_op *op);

#endif
