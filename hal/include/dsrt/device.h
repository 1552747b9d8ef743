/* Backends and their devices: discovery, capabilities as data, opening.
 *
 * Backends are registered by name in the registry (registry.h). Each enumerates its devices; a
 * backend compiled in that finds no device reports zero devices and a one-line reason. */
#ifndef DSRT_DEVICE_H
#define DSRT_DEVICE_H

#include <stdbool.h>
#include <stdint.h>

#include "dsrt/handles.h"
#include "dsrt/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum dsrt_device_type {
    DSRT_DEVICE_CPU = 0,
    DSRT_DEVICE_GPU,
    DSRT_DEVICE_ACCELERATOR,
    DSRT_DEVICE_OTHER
} dsrt_device_type;

/* What a device is and can do. Placement, kernel selection and conformance skips read these fields;
 * nothing else decides by backend or vendor name. Zero means unknown where a number is unknown. */
typedef struct dsrt_device_caps {
    char name[128];
    char vendor[64];
    char driver[64];          /* driver or runtime version as the platform reports it */
    dsrt_device_type type;
    uint64_t memory_bytes;    /* total device memory (CPU: physical memory) */
    uint64_t max_alloc_bytes; /* largest single buffer */
    uint64_t local_mem_bytes; /* fast on-chip memory per work group / block (CPU: L2 per core) */
    int compute_units;        /* SMs, CUs, cores */
    int max_work_group;       /* largest work group (CPU: 1) */
    int subgroup_size;        /* warp / wave / SIMD width; 0 unknown */
    int numa_node;            /* NUMA node the device is attached to; -1 unknown or none */
    int numa_nodes;           /* CPU: number of NUMA nodes the process may use */
    bool native_fp8;          /* hardware FP8 arithmetic (e.g. Hopper tensor cores) */
    bool native_bf16;
    bool native_fp16;
    bool unified_memory;      /* host can address device buffers directly */
    /* Work on two streams of the device can run at once, and a stream that waits on an event recorded
     * in a capturing stream joins that capture: the model then runs independent chains (the indexer,
     * the shared expert) on a second stream. */
    bool concurrent_streams;
    double peak_mem_gbs;      /* memory bandwidth for rooflines, GB/s; 0 unknown */
    double peak_tflops_bf16;  /* dense bf16 peak, TFLOP/s; 0 unknown */
    double peak_tflops_fp8;   /* dense fp8 peak, TFLOP/s; 0 unknown */
} dsrt_device_caps;

const char *dsrt_device_type_name(dsrt_device_type t);

/* Backends known to the registry (built in, then plugins in load order). */
int dsrt_backend_count(void);
dsrt_backend *dsrt_backend_at(int index);
dsrt_status dsrt_backend_find(const char *name, dsrt_backend **out);
const char *dsrt_backend_name(const dsrt_backend *b);
/* Number of devices. A backend whose driver or hardware is absent returns 0 devices and DSRT_OK;
 * dsrt_backend_unavailable_reason then says why in one line (otherwise it returns ""). */
dsrt_status dsrt_backend_device_count(dsrt_backend *b, int *count);
const char *dsrt_backend_unavailable_reason(dsrt_backend *b);
dsrt_status dsrt_backend_device_caps(dsrt_backend *b, int index, dsrt_device_caps *caps);

/* Opens device `index` of backend `b`. The device is ref-counted: buffers and streams retain it. */
dsrt_status dsrt_device_open(dsrt_backend *b, int index, dsrt_device **out);
/* Opens by "name" or "name:index" (e.g. "cpu", "cuda:1"). */
dsrt_status dsrt_device_open_by_name(const char *spec, dsrt_device **out);
void dsrt_device_retain(dsrt_device *d);
void dsrt_device_release(dsrt_device *d);
const dsrt_device_caps *dsrt_device_get_caps(const dsrt_device *d);
dsrt_backend *dsrt_device_backend(const dsrt_device *d);
int dsrt_device_index(const dsrt_device *d);
/* "cpu:0" style label for messages. */
const char *dsrt_device_label(const dsrt_device *d);

#ifdef __cplusplus
}
#endif
#endif
