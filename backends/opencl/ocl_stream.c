/* Streams are in-order command queues; transfers and fills are the queue's own commands; events are
 * markers, and a wait is a barrier on the marker. Everything is enqueued without blocking: host memory
 * given to write/read must stay valid until the stream is synced (the HAL's contract). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ocl_internal.h"

static cl_mem dsrt_mem(void *handle) { return ((dsrt_ocl_buffer *)handle)->mem; }

dsrt_status dsrt_ocl_stream_create(void *dctx, void **sctx)
{
    dsrt_ocl_device *d = dctx;
    dsrt_ocl_stream *s = calloc(1, sizeof *s);
    if (!s) return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "out of memory for an OpenCL stream");
    s->dev = d;
    cl_int err;
    const char *prof = getenv("DSRT_OPENCL_PROFILE");
    s->profile = prof && strcmp(prof, "1") == 0;
    const char *trace = getenv("DSRT_OPENCL_TRACE");
    s->trace = trace && strcmp(trace, "1") == 0;
    s->q = clCreateCommandQueue(d->ctx, d->info->device, s->profile ? CL_QUEUE_PROFILING_ENABLE : 0, &err);
    if (!s->q) {
        free(s);
        return dsrt_ocl_fail(err, "creating a command queue on '%s'", d->info->caps.name);
    }
    *sctx = s;
    return DSRT_OK;
}

/* Adds the finished profiled kernels' times to the per-kernel sums. */
static void profile_harvest(dsrt_ocl_stream *s)
{
    if (s->prof_n) clWaitForEvents((cl_uint)s->prof_n, s->prof_ev);
    for (int i = 0; i < s->prof_n; i++) {
        cl_ulong t0 = 0, t1 = 0;
        if (clGetEventProfilingInfo(s->prof_ev[i], CL_PROFILING_COMMAND_START, sizeof t0, &t0, NULL) == CL_SUCCESS &&
            clGetEventProfilingInfo(s->prof_ev[i], CL_PROFILING_COMMAND_END, sizeof t1, &t1, NULL) == CL_SUCCESS &&
            t1 >= t0) {
            s->prof_ns[s->prof_id[i]] += (double)(t1 - t0);
            s->prof_calls[s->prof_id[i]]++;
        }
        clReleaseEvent(s->prof_ev[i]);
    }
    s->prof_n = 0;
}

dsrt_status dsrt_ocl_profile_add(dsrt_ocl_stream *s, dsrt_ocl_kernel_id id, cl_event ev)
{
    if (s->prof_n == s->prof_cap) {
        if (s->prof_cap >= 4096) profile_harvest(s);
        else {
            int cap = s->prof_cap ? 2 * s->prof_cap : 256;
            cl_event *e = realloc(s->prof_ev, sizeof *e * (size_t)cap);
            if (e) s->prof_ev = e;
            dsrt_ocl_kernel_id *k = e ? realloc(s->prof_id, sizeof *k * (size_t)cap) : NULL;
            if (k) s->prof_id = k;
            if (!e || !k) {
                clReleaseEvent(ev);
                return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "out of memory for the OpenCL profile");
            }
            s->prof_cap = cap;
        }
    }
    s->prof_ev[s->prof_n] = ev;
    s->prof_id[s->prof_n++] = id;
    return DSRT_OK;
}

static void profile_print(dsrt_ocl_stream *s)
{
    profile_harvest(s);
    int order[DSRT_OCL_K_COUNT], n = 0;
    double total = 0;
    for (int i = 0; i < DSRT_OCL_K_COUNT; i++)
        if (s->prof_calls[i]) {
            order[n++] = i;
            total += s->prof_ns[i];
        }
    if (!n) return;
    for (int j = 1; j < n; j++) /* longest first */
        for (int k = j; k > 0 && s->prof_ns[order[k]] > s->prof_ns[order[k - 1]]; k--) {
            int t = order[k];
            order[k] = order[k - 1];
            order[k - 1] = t;
        }
    fprintf(stderr, "opencl profile of a stream on '%s': %.3f ms of kernel time\n", s->dev->info->caps.name, total / 1e6);
    fprintf(stderr, "  %-28s %8s %12s %10s %6s\n", "kernel", "calls", "total ms", "mean us", "share");
    for (int j = 0; j < n; j++) {
        int i = order[j];
        fprintf(stderr, "  %-28s %8ld %12.3f %10.1f %5.1f%%\n", dsrt_ocl_kernel_names[i], s->prof_calls[i], s->prof_ns[i] / 1e6,
                s->prof_ns[i] / 1e3 / (double)s->prof_calls[i], 100.0 * s->prof_ns[i] / total);
    }
}

void dsrt_ocl_stream_destroy(void *sctx)
{
    dsrt_ocl_stream *s = sctx;
    if (!s) return;
    clFinish(s->q);
    if (s->profile) profile_print(s);
    free(s->prof_ev);
    free(s->prof_id);
    for (int i = 0; i < DSRT_OCL_K_COUNT; i++)
        if (s->kernels[i]) clReleaseKernel(s->kernels[i]);
    for (int i = 0; i < DSRT_OCL_SCRATCH_SLOTS; i++)
        if (s->scratch[i]) clReleaseMemObject(s->scratch[i]);
    if (s->staging) clReleaseMemObject(s->staging);
    clReleaseCommandQueue(s->q);
    free(s);
}

dsrt_status dsrt_ocl_stream_sync(void *sctx)
{
    dsrt_ocl_stream *s = sctx;
    cl_int err = clFinish(s->q);
    if (err != CL_SUCCESS) return dsrt_ocl_fail(err, "running work on '%s'", s->dev->info->caps.name);
    return DSRT_OK;
}

dsrt_status dsrt_ocl_kernel(dsrt_ocl_stream *s, dsrt_ocl_kernel_id id, cl_kernel *out)
{
    if (!s->kernels[id]) {
        cl_int err;
        s->kernels[id] = clCreateKernel(s->dev->program, dsrt_ocl_kernel_names[id], &err);
        if (!s->kernels[id]) return dsrt_ocl_fail(err, "creating kernel '%s'", dsrt_ocl_kernel_names[id]);
    }
    *out = s->kernels[id];
    return DSRT_OK;
}

static dsrt_status dsrt_grow(dsrt_ocl_stream *s, cl_mem *mem, size_t *have, size_t bytes, const char *what)
{
    if (*mem && *have >= bytes) return DSRT_OK;
    /* Grow geometrically so a run of slightly larger ops does not reallocate every time. */
    size_t want = *have ? *have : 1 << 20;
    while (want < bytes) want *= 2;
    if (s->dev->info->caps.max_alloc_bytes && want > s->dev->info->caps.max_alloc_bytes)
        want = bytes > s->dev->info->caps.max_alloc_bytes ? bytes : s->dev->info->caps.max_alloc_bytes;
    if (s->dev->info->caps.max_alloc_bytes && bytes > s->dev->info->caps.max_alloc_bytes)
        return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED,
                          "opencl: %s of %zu bytes exceeds CL_DEVICE_MAX_MEM_ALLOC_SIZE (%llu) of '%s'", what, bytes,
                          (unsigned long long)s->dev->info->caps.max_alloc_bytes, s->dev->info->caps.name);
    cl_int err;
    cl_mem m = clCreateBuffer(s->dev->ctx, CL_MEM_READ_WRITE, want, NULL, &err);
    if (!m) return dsrt_ocl_fail(err, "allocating %zu bytes of %s on '%s'", want, what, s->dev->info->caps.name);
    /* Work already enqueued keeps the old buffer alive until it completes. */
    if (*mem) clReleaseMemObject(*mem);
    *mem = m;
    *have = want;
    return DSRT_OK;
}

dsrt_status dsrt_ocl_scratch(dsrt_ocl_stream *s, int slot, size_t bytes, cl_mem *out)
{
    DSRT_TRY(dsrt_grow(s, &s->scratch[slot], &s->scratch_size[slot], bytes ? bytes : 1, "scratch space"));
    *out = s->scratch[slot];
    return DSRT_OK;
}

dsrt_status dsrt_ocl_write(void *sctx, void *dst, size_t off, const void *src, size_t bytes)
{
    dsrt_ocl_stream *s = sctx;
    cl_int err = clEnqueueWriteBuffer(s->q, dsrt_mem(dst), CL_FALSE, off, bytes, src, 0, NULL, NULL);
    if (err != CL_SUCCESS) return dsrt_ocl_fail(err, "writing %zu bytes at offset %zu", bytes, off);
    return DSRT_OK;
}

dsrt_status dsrt_ocl_read(void *sctx, void *src, size_t off, void *dst, size_t bytes)
{
    dsrt_ocl_stream *s = sctx;
    cl_int err = clEnqueueReadBuffer(s->q, dsrt_mem(src), CL_FALSE, off, bytes, dst, 0, NULL, NULL);
    if (err != CL_SUCCESS) return dsrt_ocl_fail(err, "reading %zu bytes at offset %zu", bytes, off);
    return DSRT_OK;
}

dsrt_status dsrt_ocl_copy(void *sctx, void *src, size_t soff, void *dst, size_t doff, size_t bytes)
{
    dsrt_ocl_stream *s = sctx;
    cl_mem sm = dsrt_mem(src), dm = dsrt_mem(dst);
    cl_int err;
    if (sm == dm && soff < doff + bytes && doff < soff + bytes) {
        /* OpenCL refuses overlapping copies in one buffer (the HAL promises memmove): go through a
         * staging buffer. */
        DSRT_TRY(dsrt_grow(s, &s->staging, &s->staging_size, bytes, "copy staging"));
        err = clEnqueueCopyBuffer(s->q, sm, s->staging, soff, 0, bytes, 0, NULL, NULL);
        if (err == CL_SUCCESS) err = clEnqueueCopyBuffer(s->q, s->staging, dm, 0, doff, bytes, 0, NULL, NULL);
    } else {
        err = clEnqueueCopyBuffer(s->q, sm, dm, soff, doff, bytes, 0, NULL, NULL);
    }
    if (err != CL_SUCCESS) return dsrt_ocl_fail(err, "copying %zu bytes", bytes);
    return DSRT_OK;
}

dsrt_status dsrt_ocl_fill(void *sctx, void *dst, size_t off, size_t bytes, const void *pattern, size_t psize)
{
    dsrt_ocl_stream *s = sctx;
    cl_int err = clEnqueueFillBuffer(s->q, dsrt_mem(dst), pattern, psize, off, bytes, 0, NULL, NULL);
    if (err != CL_SUCCESS) return dsrt_ocl_fail(err, "filling %zu bytes", bytes);
    return DSRT_OK;
}

/* ---- events ---- */

dsrt_status dsrt_ocl_event_create(void *dctx, void **ectx)
{
    dsrt_ocl_event *e = calloc(1, sizeof *e);
    if (!e) return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "out of memory for an OpenCL event");
    e->dev = dctx;
    *ectx = e;
    return DSRT_OK;
}

void dsrt_ocl_event_destroy(void *ectx)
{
    dsrt_ocl_event *e = ectx;
    if (!e) return;
    if (e->ev) clReleaseEvent(e->ev); /* queues that wait on it hold their own reference */
    free(e);
}

dsrt_status dsrt_ocl_event_record(void *ectx, void *sctx)
{
    dsrt_ocl_event *e = ectx;
    dsrt_ocl_stream *s = sctx;
    cl_event ev = NULL;
    cl_int err = clEnqueueMarkerWithWaitList(s->q, 0, NULL, &ev);
    if (err != CL_SUCCESS) return dsrt_ocl_fail(err, "recording an event");
    /* Submit now: another queue (or the host) may wait for this marker, and a marker that was never
     * flushed to the device would never complete. */
    clFlush(s->q);
    if (e->ev) clReleaseEvent(e->ev);
    e->ev = ev;
    return DSRT_OK;
}

dsrt_status dsrt_ocl_stream_wait_event(void *sctx, void *ectx)
{
    dsrt_ocl_stream *s = sctx;
    dsrt_ocl_event *e = ectx;
    if (!e->ev) return DSRT_OK;
    cl_int err = clEnqueueBarrierWithWaitList(s->q, 1, &e->ev, NULL);
    if (err != CL_SUCCESS) return dsrt_ocl_fail(err, "waiting for an event");
    return DSRT_OK;
}

dsrt_status dsrt_ocl_event_sync(void *ectx)
{
    dsrt_ocl_event *e = ectx;
    if (!e->ev) return DSRT_OK;
    cl_int err = clWaitForEvents(1, &e->ev);
    if (err != CL_SUCCESS) return dsrt_ocl_fail(err, "waiting for an event");
    return DSRT_OK;
}

dsrt_status dsrt_ocl_event_query(void *ectx, bool *done)
{
    dsrt_ocl_event *e = ectx;
    *done = true;
    if (!e->ev) return DSRT_OK;
    cl_int st = CL_COMPLETE;
    cl_int err = clGetEventInfo(e->ev, CL_EVENT_COMMAND_EXECUTION_STATUS, sizeof st, &st, NULL);
    if (err != CL_SUCCESS) return dsrt_ocl_fail(err, "querying an event");
    if (st < 0) return dsrt_ocl_fail(st, "the work before an event failed");
    *done = st == CL_COMPLETE;
    return DSRT_OK;
}
