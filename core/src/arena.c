/* Per-device workspace for activations: bump allocation in chunks, reset after each forward. */
#include <stdlib.h>
#include <string.h>

#include "model_internal.h"

#define DSRT_ARENA_ALIGN 256
#define DSRT_ARENA_MIN_CHUNK (16u << 20)

void dsrt_arena_init(dsrt_arena *a, dsrt_device *dev)
{
    memset(a, 0, sizeof *a);
    a->dev = dev;
}

void dsrt_arena_destroy(dsrt_arena *a)
{
    for (int i = 0; i < a->n; i++) dsrt_buffer_release(a->chunks[i]);
    free(a->chunks);
    free(a->sizes);
    memset(a, 0, sizeof *a);
}

/* After a forward that needed several chunks, one chunk of the high-water size replaces them. */
void dsrt_arena_reset(dsrt_arena *a)
{
    if (a->n > 1) {
        size_t want = a->high_water + a->high_water / 4;
        for (int i = 0; i < a->n; i++) dsrt_buffer_release(a->chunks[i]);
        a->n = 0;
        a->generation++;
        dsrt_buffer *b = NULL;
        if (dsrt_buffer_alloc(a->dev, want, &b) == DSRT_OK) {
            a->chunks[0] = b;
            a->sizes[0] = want;
            a->n = 1;
        } /* else: chunks come back on demand */
    }
    a->cur = 0;
    a->off = 0;
    a->used_total = 0;
}

static dsrt_status arena_alloc(dsrt_arena *a, size_t bytes, dsrt_buffer **buf, size_t *off)
{
    bytes = (bytes + DSRT_ARENA_ALIGN - 1) & ~(size_t)(DSRT_ARENA_ALIGN - 1);
    if (bytes == 0) bytes = DSRT_ARENA_ALIGN;
    while (a->cur < a->n) {
        if (a->off + bytes <= a->sizes[a->cur]) {
            *buf = a->chunks[a->cur];
            *off = a->off;
            a->off += bytes;
            a->used_total += bytes;
            if (a->used_total > a->high_water) a->high_water = a->used_total;
            return DSRT_OK;
        }
        a->cur++;
        a->off = 0;
    }
    size_t size = bytes > DSRT_ARENA_MIN_CHUNK ? bytes : DSRT_ARENA_MIN_CHUNK;
    dsrt_buffer **c = realloc(a->chunks, sizeof *c * (size_t)(a->n + 1));
    if (!c) return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "out of host memory for the workspace");
    a->chunks = c;
    size_t *s = realloc(a->sizes, sizeof *s * (size_t)(a->n + 1));
    if (!s) return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "out of host memory for the workspace");
    a->sizes = s;
    DSRT_TRY(dsrt_status_wrap(dsrt_buffer_alloc(a->dev, size, &a->chunks[a->n]), "workspace on %s", dsrt_device_label(a->dev)));
    a->sizes[a->n] = size;
    a->cur = a->n++;
    a->generation++;
    a->off = 0;
    return arena_alloc(a, bytes, buf, off);
}

dsrt_status dsrt_arena_tensor(dsrt_arena *a, dsrt_dtype dt, int ndim, const int64_t *shape, dsrt_tensor *out)
{
    size_t n = dsrt_dtype_size(dt);
    for (int i = 0; i < ndim; i++) n *= (size_t)(shape[i] > 0 ? shape[i] : 1);
    dsrt_buffer *b = NULL;
    size_t off = 0;
    DSRT_TRY(arena_alloc(a, n, &b, &off));
    return dsrt_tensor_make(b, off, dt, ndim, shape, out);
}

dsrt_status dsrt_arena_tensor_scaled(dsrt_arena *a, dsrt_dtype dt, int ndim, const int64_t *shape, dsrt_dtype sdt,
                                     dsrt_tensor *out)
{
    DSRT_TRY(dsrt_arena_tensor(a, dt, ndim, shape, out));
    int64_t rows = 1;
    for (int i = 0; i < ndim - 1; i++) rows *= shape[i];
    size_t n = (size_t)rows * (size_t)((shape[ndim - 1] + 127) / 128) * dsrt_dtype_size(sdt);
    dsrt_buffer *b = NULL;
    size_t off = 0;
    DSRT_TRY(arena_alloc(a, n, &b, &off));
    return dsrt_tensor_set_scale(out, b, off, sdt, 1, 128);
}

dsrt_arena_mark dsrt_arena_save(const dsrt_arena *a) { return (dsrt_arena_mark){a->cur, a->off, a->used_total}; }

void dsrt_arena_restore(dsrt_arena *a, dsrt_arena_mark m)
{
    a->cur = m.cur;
    a->off = m.off;
    a->used_total = m.used_total;
}
