/* Devices: opening, reference counts, capabilities. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hal_internal.h"

const char *dsrt_device_type_name(dsrt_device_type t)
{
    switch (t) {
    case DSRT_DEVICE_CPU: return "cpu";
    case DSRT_DEVICE_GPU: return "gpu";
    case DSRT_DEVICE_ACCELERATOR: return "accelerator";
    default: return "other";
    }
}

dsrt_status dsrt_device_open(dsrt_backend *b, int index, dsrt_device **out)
{
    if (!b || !out) return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "backend or output is NULL");
    *out = NULL;
    DSRT_TRY(dsrt_backend_ensure_init(b));
    if (b->device_count == 0)
        return dsrt_error(DSRT_CODE_UNAVAILABLE, "backend '%s' has no device: %s", b->vt->name, b->why);
    if (index < 0 || index >= b->device_count)
        return dsrt_error(DSRT_CODE_OUT_OF_RANGE,
                          "device index %d is out of range: backend '%s' has %d device(s) (0..%d)", index,
                          b->vt->name, b->device_count, b->device_count - 1);
    dsrt_device *d = calloc(1, sizeof *d);
    if (!d) return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "out of memory opening %s:%d", b->vt->name, index);
    d->backend = b;
    d->index = index;
    atomic_init(&d->refs, 1);
    snprintf(d->label, sizeof d->label, "%s:%d", b->vt->name, index);
    d->caps.numa_node = -1;
    dsrt_status st = b->vt->device_caps(b->bctx, index, &d->caps);
    if (!st) st = b->vt->device_open(b->bctx, index, &d->dctx);
    if (st) {
        free(d);
        return dsrt_status_wrap(st, "opening device %s:%d", b->vt->name, index);
    }
    *out = d;
    return DSRT_OK;
}

dsrt_status dsrt_device_open_by_name(const char *spec, dsrt_device **out)
{
    if (!spec || !out) return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "device name is NULL");
    char name[64];
    int index = 0;
    const char *colon = strchr(spec, ':');
    size_t n = colon ? (size_t)(colon - spec) : strlen(spec);
    if (n == 0 || n >= sizeof name)
        return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "bad device name '%s' (expected BACKEND or BACKEND:INDEX)", spec);
    memcpy(name, spec, n);
    name[n] = 0;
    if (colon) {
        char *end = NULL;
        long v = strtol(colon + 1, &end, 10);
        if (!colon[1] || *end || v < 0 || v > 1 << 20)
            return dsrt_error(DSRT_CODE_INVALID_ARGUMENT, "bad device index in '%s' (expected BACKEND:INDEX)", spec);
        index = (int)v;
    }
    dsrt_backend *b;
    DSRT_TRY(dsrt_backend_find(name, &b));
    return dsrt_device_open(b, index, out);
}

void dsrt_device_retain(dsrt_device *d)
{
    if (d) atomic_fetch_add(&d->refs, 1);
}

void dsrt_device_release(dsrt_device *d)
{
    if (!d) return;
    if (atomic_fetch_sub(&d->refs, 1) != 1) return;
    if (d->backend->vt->device_close) d->backend->vt->device_close(d->dctx);
    free(d);
}

const dsrt_device_caps *dsrt_device_get_caps(const dsrt_device *d) { return d ? &d->caps : NULL; }
dsrt_backend *dsrt_device_backend(const dsrt_device *d) { return d ? d->backend : NULL; }
int dsrt_device_index(const dsrt_device *d) { return d ? d->index : -1; }
const char *dsrt_device_label(const dsrt_device *d) { return d ? d->label : "(no device)"; }
