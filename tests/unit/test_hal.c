/* HAL tests: object lifetimes, every error path with its message, streams, events, graphs, cross-device
 * copies and backend plugins. Numerics of the ops are in test_cpu_ops*.c. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"

/* ---- small helpers: every buffer a test makes goes into an arena released at its end ---- */

#define ARENA_MAX 128
typedef struct {
    dsrt_buffer *b[ARENA_MAX];
    int n;
} arena;

static dsrt_device *open_cpu(void)
{
    dsrt_device *d = NULL;
    ck_ok(dsrt_device_open_by_name("cpu", &d));
    ck_assert_ptr_nonnull(d);
    return d;
}

static dsrt_buffer *arena_alloc(arena *a, dsrt_device *d, size_t bytes)
{
    ck_assert_int_lt(a->n, ARENA_MAX);
    dsrt_buffer *b = NULL;
    ck_ok(dsrt_buffer_alloc(d, bytes, &b));
    a->b[a->n++] = b;
    return b;
}

static void arena_free(arena *a)
{
    for (int i = 0; i < a->n; i++) dsrt_buffer_release(a->b[i]);
    a->n = 0;
}

/* A contiguous tensor in a buffer of its own (at least one byte, so empty tensors work too). */
static dsrt_tensor mk(arena *a, dsrt_device *d, dsrt_dtype dt, int nd, int64_t s0, int64_t s1, int64_t s2)
{
    int64_t shape[3] = {s0, s1, s2};
    int64_t n = 1;
    for (int i = 0; i < nd; i++) n *= shape[i];
    size_t bytes = (size_t)n * dsrt_dtype_size(dt);
    dsrt_buffer *b = arena_alloc(a, d, bytes ? bytes : 1);
    dsrt_tensor t;
    ck_ok(dsrt_tensor_make(b, 0, dt, nd, shape, &t));
    return t;
}

/* Attaches a fresh scale companion (blocks br x bc) of dtype sdt to t. */
static void mk_scale(arena *a, dsrt_device *d, dsrt_tensor *t, dsrt_dtype sdt, int br, int bc)
{
    dsrt_tensor tmp = *t;
    tmp.scale.buf = (dsrt_buffer *)1; /* only to ask for the grid size below */
    tmp.scale.block[0] = br;
    tmp.scale.block[1] = bc;
    int64_t n = dsrt_tensor_scale_numel(&tmp);
    dsrt_buffer *sb = arena_alloc(a, d, (size_t)(n ? n : 1) * dsrt_dtype_size(sdt));
    ck_ok(dsrt_tensor_set_scale(t, sb, 0, sdt, br, bc));
}

static dsrt_stream *new_stream(dsrt_device *d)
{
    dsrt_stream *s = NULL;
    ck_ok(dsrt_stream_create(d, &s));
    return s;
}

/* ---- status ---- */

START_TEST(test_status_basics)
{
    ck_assert_int_eq(dsrt_status_code(DSRT_OK), DSRT_CODE_OK);
    ck_assert_str_eq(dsrt_status_message(DSRT_OK), "");
    dsrt_status st = dsrt_error(DSRT_CODE_NOT_FOUND, "tensor '%s' is missing", "w");
    ck_assert_int_eq(dsrt_status_code(st), DSRT_CODE_NOT_FOUND);
    st = dsrt_status_wrap(st, "loading layer %d", 3);
    ck_assert_str_eq(dsrt_status_message(st), "loading layer 3: tensor 'w' is missing");
    ck_assert_int_eq(dsrt_status_consume(st), DSRT_CODE_NOT_FOUND);
    ck_assert_ptr_null(dsrt_status_wrap(DSRT_OK, "nothing"));
    /* An error must never look like success, even when asked for code OK. */
    st = dsrt_error(DSRT_CODE_OK, "odd");
    ck_assert_int_eq(dsrt_status_code(st), DSRT_CODE_INTERNAL);
    dsrt_status_free(st);
    ck_assert_str_eq(dsrt_code_name(DSRT_CODE_INCOMPATIBLE), "incompatible");
    ck_assert_str_eq(dsrt_code_name((dsrt_code)999), "unknown");
}
END_TEST

/* ---- backends and devices ---- */

START_TEST(test_backend_lookup)
{
    ck_assert_int_ge(dsrt_backend_count(), 1);
    ck_assert_ptr_null(dsrt_backend_at(-1));
    ck_assert_ptr_null(dsrt_backend_at(dsrt_backend_count()));
    dsrt_backend *b = NULL;
    ck_ok(dsrt_backend_find("cpu", &b));
    ck_assert_str_eq(dsrt_backend_name(b), "cpu");
    int n = -1;
    ck_ok(dsrt_backend_device_count(b, &n));
    ck_assert_int_eq(n, 1);
    ck_assert_str_eq(dsrt_backend_unavailable_reason(b), "");

    /* Unknown backends: the message names what exists. */
    ck_fails(dsrt_backend_find("warp-drive", &b), DSRT_CODE_NOT_FOUND, "unknown backend 'warp-drive'");
    ck_fails(dsrt_backend_find("warp-drive", &b), DSRT_CODE_NOT_FOUND, "available: cpu");
    dsrt_device *d = NULL;
    ck_fails(dsrt_device_open_by_name("warp-drive:0", &d), DSRT_CODE_NOT_FOUND, "available: cpu");
    ck_assert_ptr_null(d);

    /* Device indices out of range. */
    ck_fails(dsrt_device_open_by_name("cpu:5", &d), DSRT_CODE_OUT_OF_RANGE, "device index 5 is out of range");
    ck_fails(dsrt_device_open_by_name("cpu:5", &d), DSRT_CODE_OUT_OF_RANGE, "has 1 device(s)");
    ck_fails(dsrt_device_open(b, -1, &d), DSRT_CODE_OUT_OF_RANGE, "device index -1");
    dsrt_device_caps caps;
    ck_fails(dsrt_backend_device_caps(b, 3, &caps), DSRT_CODE_OUT_OF_RANGE, "index 3 is out of range");
    ck_fails(dsrt_device_open_by_name("cpu:x", &d), DSRT_CODE_INVALID_ARGUMENT, "bad device index in 'cpu:x'");
    ck_fails(dsrt_device_open_by_name("cpu:", &d), DSRT_CODE_INVALID_ARGUMENT, "bad device index");
    ck_fails(dsrt_device_open_by_name(":1", &d), DSRT_CODE_INVALID_ARGUMENT, "bad device name ':1'");
    ck_fails(dsrt_device_open_by_name(NULL, &d), DSRT_CODE_INVALID_ARGUMENT, "NULL");

    ck_ok(dsrt_device_open_by_name("cpu:0", &d));
    ck_assert_str_eq(dsrt_device_label(d), "cpu:0");
    ck_assert_int_eq(dsrt_device_index(d), 0);
    ck_assert_ptr_eq(dsrt_device_backend(d), b);
    const dsrt_device_caps *c = dsrt_device_get_caps(d);
    ck_assert_int_eq(c->type, DSRT_DEVICE_CPU);
    ck_assert(c->unified_memory);
    ck_assert_uint_gt(c->max_alloc_bytes, 0);
    ck_assert_int_ge(c->compute_units, 1);
    ck_ok(dsrt_backend_device_caps(b, 0, &caps));
    ck_assert_str_eq(caps.name, c->name);
    ck_assert_str_eq(dsrt_device_type_name(DSRT_DEVICE_GPU), "gpu");
    dsrt_device_release(d);
}
END_TEST

/* ---- lifetimes ---- */

START_TEST(test_lifetimes_device_released_first)
{
    dsrt_device *d = open_cpu();
    dsrt_buffer *buf = NULL;
    ck_ok(dsrt_buffer_alloc(d, 256, &buf));
    dsrt_stream *s = new_stream(d);
    dsrt_event *e = NULL;
    ck_ok(dsrt_event_create(d, &e));
    ck_assert_ptr_eq(dsrt_buffer_device(buf), d);
    ck_assert_ptr_eq(dsrt_stream_device(s), d);
    ck_assert_uint_eq(dsrt_buffer_size(buf), 256);
    ck_assert_int_eq(dsrt_buffer_readonly(buf), 0);
    ck_assert_ptr_nonnull(dsrt_buffer_host_ptr(buf));
    ck_assert_ptr_nonnull(dsrt_buffer_native(buf));

    /* The caller's reference goes first: the device must stay alive for its objects. */
    dsrt_device_release(d);
    float in[64], out[64];
    for (int i = 0; i < 64; i++) in[i] = (float)i * 0.5f;
    ck_ok(dsrt_stream_write(s, buf, 0, in, sizeof in));
    ck_ok(dsrt_event_record(e, s));
    ck_ok(dsrt_stream_read(s, buf, 0, out, sizeof out));
    ck_ok(dsrt_event_sync(e));
    ck_ok(dsrt_stream_sync(s));
    ck_assert_mem_eq(in, out, sizeof in);
    ck_assert_str_eq(dsrt_device_label(dsrt_buffer_device(buf)), "cpu:0");

    /* Extra references on a buffer keep it alive past the first release. */
    dsrt_buffer_retain(buf);
    dsrt_buffer_release(buf);
    ck_assert_uint_eq(dsrt_buffer_size(buf), 256);
    dsrt_stream_release(s);
    dsrt_buffer_release(buf);
    dsrt_event_release(e); /* the last holder closes the device */
}
END_TEST

START_TEST(test_lifetimes_any_order)
{
    /* Every permutation of releasing device, buffer, stream, event and graph; the sanitizer build
     * turns any use after free into a failure. */
    static const int orders[][5] = {{0, 1, 2, 3, 4}, {4, 3, 2, 1, 0}, {1, 0, 3, 4, 2}, {2, 4, 0, 3, 1}, {3, 2, 4, 1, 0}};
    for (size_t o = 0; o < sizeof orders / sizeof orders[0]; o++) {
        dsrt_device *d = open_cpu();
        dsrt_buffer *buf = NULL;
        ck_ok(dsrt_buffer_alloc(d, 64, &buf));
        dsrt_stream *s = new_stream(d);
        dsrt_event *e = NULL;
        ck_ok(dsrt_event_create(d, &e));
        uint32_t pat = 0x3f800000u;
        ck_ok(dsrt_stream_begin_capture(s));
        ck_ok(dsrt_stream_fill(s, buf, 0, 64, &pat, 4));
        dsrt_graph *g = NULL;
        ck_ok(dsrt_stream_end_capture(s, &g));
        ck_ok(dsrt_graph_launch(g, s));
        ck_ok(dsrt_event_record(e, s));
        for (int i = 0; i < 5; i++) {
            switch (orders[o][i]) {
            case 0: dsrt_device_release(d); break;
            case 1: dsrt_buffer_release(buf); break;
            case 2: dsrt_stream_release(s); break; /* waits for the queued fill */
            case 3: dsrt_event_release(e); break;
            case 4: dsrt_graph_release(g); break;
            }
        }
    }
}
END_TEST

START_TEST(test_buffers_released_while_queued)
{
    /* The HAL handles of buffers may go while queued work still uses them (as with cudaFree); the
     * work completes on valid memory. The sanitizer build makes any use after free fatal. */
    dsrt_device *d = open_cpu();
    dsrt_stream *s = new_stream(d);
    for (int rep = 0; rep < 3; rep++) {
        const int M = 16, K = 256, N = 128;
        dsrt_buffer *bx = NULL, *bw = NULL, *by = NULL, *bz = NULL;
        ck_ok(dsrt_buffer_alloc(d, (size_t)M * K * 4, &bx));
        ck_ok(dsrt_buffer_alloc(d, (size_t)N * K * 4, &bw));
        ck_ok(dsrt_buffer_alloc(d, (size_t)M * N * 4, &by));
        ck_ok(dsrt_buffer_alloc(d, (size_t)M * N * 4, &bz));
        dsrt_tensor x, w, y, z;
        ck_ok(dsrt_tensor_make(bx, 0, DSRT_F32, 2, (int64_t[]){M, K}, &x));
        ck_ok(dsrt_tensor_make(bw, 0, DSRT_F32, 2, (int64_t[]){N, K}, &w));
        ck_ok(dsrt_tensor_make(by, 0, DSRT_F32, 2, (int64_t[]){M, N}, &y));
        ck_ok(dsrt_tensor_make(bz, 0, DSRT_F32, 2, (int64_t[]){M, N}, &z));
        float half = 0.5f;
        ck_ok(dsrt_stream_fill(s, bx, 0, dsrt_buffer_size(bx), &half, 4));
        ck_ok(dsrt_stream_fill(s, bw, 0, dsrt_buffer_size(bw), &half, 4));
        ck_ok(dsrt_linear(s, &x, &w, false, false, 1.0f, &y));
        ck_ok(dsrt_stream_copy(s, by, 0, bz, 0, dsrt_buffer_size(by)));
        float out[4] = {0};
        ck_ok(dsrt_stream_read(s, bz, 0, out, sizeof out));
        dsrt_buffer_release(bx);
        dsrt_buffer_release(bw);
        dsrt_buffer_release(by);
        dsrt_buffer_release(bz);
        ck_ok(dsrt_stream_sync(s));
        ck_assert(out[0] == 0.25f * K && out[3] == 0.25f * K);
    }
    dsrt_stream_release(s);
    dsrt_device_release(d);
}
END_TEST

START_TEST(test_wrapped_host_buffers)
{
    dsrt_device *d = open_cpu();
    dsrt_stream *s = new_stream(d);
    float host[32] = {0};
    dsrt_buffer *w = NULL;
    ck_ok(dsrt_buffer_wrap_host(d, host, sizeof host, 0, &w));
    ck_assert_ptr_eq(dsrt_buffer_host_ptr(w), host); /* zero copy */
    float v[4] = {1, 2, 3, 4};
    ck_ok(dsrt_stream_write(s, w, 8, v, sizeof v));
    ck_ok(dsrt_stream_sync(s));
    ck_assert(host[2] == 1 && host[5] == 4);

    /* Read-only: every way of writing is refused, reading and op inputs work. */
    float ro_data[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    dsrt_buffer *ro = NULL;
    ck_ok(dsrt_buffer_wrap_host(d, ro_data, sizeof ro_data, 1, &ro));
    ck_assert_int_eq(dsrt_buffer_readonly(ro), 1);
    ck_fails(dsrt_stream_write(s, ro, 0, v, sizeof v), DSRT_CODE_INVALID_ARGUMENT, "read-only");
    uint8_t zero = 0;
    ck_fails(dsrt_stream_fill(s, ro, 0, 4, &zero, 1), DSRT_CODE_INVALID_ARGUMENT, "read-only");
    ck_fails(dsrt_stream_copy(s, w, 0, ro, 0, 16), DSRT_CODE_INVALID_ARGUMENT, "read-only");
    dsrt_tensor tro, tw;
    int64_t shape[1] = {8};
    ck_ok(dsrt_tensor_make(ro, 0, DSRT_F32, 1, shape, &tro));
    ck_ok(dsrt_tensor_make(w, 0, DSRT_F32, 1, shape, &tw));
    ck_fails(dsrt_add(s, &tw, &tw, &tro), DSRT_CODE_INVALID_ARGUMENT, "output 'y' is in a read-only buffer");
    ck_ok(dsrt_add(s, &tro, &tro, &tw));
    float out[8];
    ck_ok(dsrt_stream_read(s, ro, 0, out, sizeof out));
    ck_ok(dsrt_stream_sync(s));
    ck_assert_mem_eq(out, ro_data, sizeof out);
    for (int i = 0; i < 8; i++) ck_assert(host[i] == 2.0f * ro_data[i]);

    dsrt_buffer *bad = NULL;
    ck_fails(dsrt_buffer_wrap_host(d, NULL, 16, 0, &bad), DSRT_CODE_INVALID_ARGUMENT, "NULL");
    ck_fails(dsrt_buffer_wrap_host(d, host, 0, 0, &bad), DSRT_CODE_INVALID_ARGUMENT, "0 bytes");
    ck_assert_ptr_null(bad);
    dsrt_device_release(d);
    dsrt_buffer_release(w);
    dsrt_buffer_release(ro);
    dsrt_stream_release(s);
    /* The wrapped memory belongs to the caller and is still ours to use. */
    host[0] = 42;
    ck_assert(host[0] == 42);
}
END_TEST

START_TEST(test_alloc_errors)
{
    dsrt_device *d = open_cpu();
    dsrt_buffer *b = NULL;
    ck_fails(dsrt_buffer_alloc(d, 0, &b), DSRT_CODE_INVALID_ARGUMENT, "buffer of 0 bytes requested on cpu:0");
    ck_assert_ptr_null(b);
    uint64_t lim = dsrt_device_get_caps(d)->max_alloc_bytes;
    ck_fails(dsrt_buffer_alloc(d, (size_t)lim + 1, &b), DSRT_CODE_RESOURCE_EXHAUSTED, "exceeds the device's largest allocation");
    char want[64];
    snprintf(want, sizeof want, "(%llu bytes)", (unsigned long long)lim);
    ck_fails(dsrt_buffer_alloc(d, (size_t)lim + 1, &b), DSRT_CODE_RESOURCE_EXHAUSTED, want);
    ck_fails(dsrt_buffer_alloc(d, SIZE_MAX, &b), DSRT_CODE_RESOURCE_EXHAUSTED, "cpu:0");
    ck_assert_ptr_null(b);
    ck_fails(dsrt_buffer_alloc(NULL, 16, &b), DSRT_CODE_INVALID_ARGUMENT, "NULL");
    dsrt_device_release(d);
}
END_TEST

/* ---- tensors ---- */

START_TEST(test_tensor_views)
{
    dsrt_device *d = open_cpu();
    arena a = {0};
    dsrt_buffer *b = arena_alloc(&a, d, 1024);
    dsrt_tensor t;
    int64_t s2[2] = {16, 16};
    ck_ok(dsrt_tensor_make(b, 0, DSRT_F32, 2, s2, &t)); /* exactly 1024 bytes */
    ck_assert(dsrt_tensor_is_contiguous(&t));
    ck_assert_int_eq(dsrt_tensor_numel(&t), 256);
    ck_assert_uint_eq(dsrt_tensor_nbytes(&t), 1024);
    ck_assert(dsrt_tensor_present(&t));
    dsrt_tensor absent = {0};
    ck_assert(!dsrt_tensor_present(&absent));

    ck_fails(dsrt_tensor_make(b, 4, DSRT_F32, 2, s2, &t), DSRT_CODE_OUT_OF_RANGE, "needs bytes up to 1028");
    ck_fails(dsrt_tensor_make(b, 4, DSRT_F32, 2, s2, &t), DSRT_CODE_OUT_OF_RANGE, "has 1024");
    ck_fails(dsrt_tensor_make(b, 2000, DSRT_U8, 1, (int64_t[]){0}, &t), DSRT_CODE_OUT_OF_RANGE, "byte offset 2000");
    ck_fails(dsrt_tensor_make(b, 0, DSRT_F32, 2, (int64_t[]){17, 16}, &t), DSRT_CODE_OUT_OF_RANGE, "f32[17,16]");
    ck_fails(dsrt_tensor_make(b, 0, DSRT_F32, 2, (int64_t[]){4, -1}, &t), DSRT_CODE_INVALID_ARGUMENT, "dimension 1 is negative");
    ck_fails(dsrt_tensor_make(b, 0, DSRT_F32, 0, s2, &t), DSRT_CODE_INVALID_ARGUMENT, "rank 0 is outside 1..4");
    ck_fails(dsrt_tensor_make(b, 0, DSRT_F32, 5, (int64_t[]){1, 1, 1, 1, 1}, &t), DSRT_CODE_INVALID_ARGUMENT, "rank 5");
    ck_fails(dsrt_tensor_make(b, 0, DSRT_DTYPE_COUNT, 2, s2, &t), DSRT_CODE_INVALID_ARGUMENT, "invalid dtype");
    ck_fails(dsrt_tensor_make(b, 0, (dsrt_dtype)-3, 2, s2, &t), DSRT_CODE_INVALID_ARGUMENT, "invalid dtype");
    ck_fails(dsrt_tensor_make_strided(b, 0, DSRT_F32, 2, s2, (int64_t[]){-16, 1}, &t), DSRT_CODE_INVALID_ARGUMENT,
             "stride 0 is negative");
    ck_fails(dsrt_tensor_make_strided(b, 0, DSRT_F32, 2, s2, (int64_t[]){17, 1}, &t), DSRT_CODE_OUT_OF_RANGE, "needs bytes");
    /* Sizes whose byte extent overflows 64 bits must not wrap around into a small, "fitting" view. */
    ck_fails(dsrt_tensor_make(b, 0, DSRT_F32, 2, (int64_t[]){(int64_t)1 << 62, 4}, &t), DSRT_CODE_OUT_OF_RANGE, "");
    ck_fails(dsrt_tensor_make(b, 0, DSRT_F32, 1, (int64_t[]){INT64_MAX}, &t), DSRT_CODE_OUT_OF_RANGE, "");
    ck_fails(dsrt_tensor_make_strided(b, 0, DSRT_U8, 2, (int64_t[]){3, 2}, (int64_t[]){INT64_MAX / 2 + 1, 1}, &t),
             DSRT_CODE_OUT_OF_RANGE, "");
    /* An empty view fits anywhere inside the buffer. */
    ck_ok(dsrt_tensor_make(b, 1024, DSRT_F32, 2, (int64_t[]){0, 16}, &t));

    /* Slices: a column slice is a strided view; out-of-range cuts are refused. */
    ck_ok(dsrt_tensor_make(b, 0, DSRT_F32, 2, s2, &t));
    t.name = "w";
    dsrt_tensor c;
    ck_ok(dsrt_tensor_slice(&t, 1, 4, 8, &c));
    ck_assert_uint_eq(c.offset, 16);
    ck_assert_int_eq(c.shape[1], 8);
    ck_assert_int_eq(c.stride[0], 16);
    ck_assert(!dsrt_tensor_is_contiguous(&c));
    ck_fails(dsrt_tensor_slice(&t, 1, 10, 8, &c), DSRT_CODE_OUT_OF_RANGE, "slice [10, 18) of dimension 1 (size 16) of w");
    ck_fails(dsrt_tensor_slice(&t, 0, -1, 2, &c), DSRT_CODE_OUT_OF_RANGE, "slice [-1, 1)");
    ck_fails(dsrt_tensor_slice(&t, 0, 0, -2, &c), DSRT_CODE_OUT_OF_RANGE, "slice");
    ck_fails(dsrt_tensor_slice(&t, 2, 0, 1, &c), DSRT_CODE_INVALID_ARGUMENT, "slice dimension 2 of a rank-2 tensor");
    ck_ok(dsrt_tensor_slice(&t, 0, 16, 0, &c)); /* an empty slice at the end */

    /* Reshapes. */
    dsrt_tensor r;
    ck_ok(dsrt_tensor_reshape(&t, 3, (int64_t[]){4, 4, 16}, &r));
    ck_assert_int_eq(r.stride[0], 64);
    ck_assert_str_eq(r.name, "w");
    ck_fails(dsrt_tensor_reshape(&t, 2, (int64_t[]){8, 8}, &r), DSRT_CODE_INVALID_ARGUMENT, "to 64 elements");
    ck_ok(dsrt_tensor_slice(&t, 1, 4, 8, &c));
    ck_fails(dsrt_tensor_reshape(&c, 1, (int64_t[]){128}, &r), DSRT_CODE_INVALID_ARGUMENT, "non-contiguous");

    char desc[64];
    ck_assert_str_eq(dsrt_tensor_describe(&t, desc, sizeof desc), "w f32[16,16]");
    arena_free(&a);
    dsrt_device_release(d);
}
END_TEST

START_TEST(test_tensor_scales)
{
    dsrt_device *d = open_cpu();
    arena a = {0};
    dsrt_buffer *wb = arena_alloc(&a, d, 300 * 200);
    dsrt_tensor w;
    ck_ok(dsrt_tensor_make(wb, 0, DSRT_E4M3, 2, (int64_t[]){300, 200}, &w));
    dsrt_buffer *sb = arena_alloc(&a, d, 6 * 4);
    ck_fails(dsrt_tensor_set_scale(&w, sb, 0, DSRT_BF16, 128, 128), DSRT_CODE_INVALID_ARGUMENT, "ue8m0 or f32, not bf16");
    ck_fails(dsrt_tensor_set_scale(&w, sb, 0, DSRT_F32, 0, 128), DSRT_CODE_INVALID_ARGUMENT, "0x128 must be positive");
    ck_fails(dsrt_tensor_set_scale(&w, NULL, 0, DSRT_F32, 128, 128), DSRT_CODE_INVALID_ARGUMENT, "scale buffer is NULL");
    /* 3 x 2 f32 scales need 24 bytes: at offset 4 they do not fit. */
    ck_fails(dsrt_tensor_set_scale(&w, sb, 4, DSRT_F32, 128, 128), DSRT_CODE_OUT_OF_RANGE, "scale grid");
    ck_fails(dsrt_tensor_set_scale(&w, sb, 0, DSRT_F32, 64, 128), DSRT_CODE_OUT_OF_RANGE, "scale grid");
    ck_assert_ptr_null(w.scale.buf); /* failures leave the tensor unchanged */
    ck_ok(dsrt_tensor_set_scale(&w, sb, 0, DSRT_F32, 128, 128));
    int64_t gr, gc;
    dsrt_tensor_scale_grid(&w, &gr, &gc);
    ck_assert(gr == 3 && gc == 2);
    ck_assert_int_eq(dsrt_tensor_scale_numel(&w), 6);
    ck_ok(dsrt_tensor_set_scale(&w, sb, 18, DSRT_UE8M0, 128, 128)); /* 6 bytes of ue8m0 at 18 fit */

    /* Slices carry the scales only when the cut is block-aligned. */
    ck_ok(dsrt_tensor_set_scale(&w, sb, 0, DSRT_F32, 128, 128));
    dsrt_tensor c;
    ck_ok(dsrt_tensor_slice(&w, 1, 128, 72, &c));
    ck_assert_ptr_eq(c.scale.buf, sb);
    ck_assert_uint_eq(c.scale.offset, 4);
    ck_ok(dsrt_tensor_slice(&w, 0, 256, 44, &c));
    ck_assert_ptr_eq(c.scale.buf, sb);
    ck_assert_uint_eq(c.scale.offset, 16);
    ck_ok(dsrt_tensor_slice(&w, 1, 100, 50, &c));
    ck_assert_ptr_null(c.scale.buf);

    /* A stacked [E, N, K] weight has scales [E, ceil(N/128), ceil(K/128)]. */
    dsrt_buffer *eb = arena_alloc(&a, d, 3 * 130 * 129);
    dsrt_tensor e3;
    ck_ok(dsrt_tensor_make(eb, 0, DSRT_E4M3, 3, (int64_t[]){3, 130, 129}, &e3));
    dsrt_buffer *esb = arena_alloc(&a, d, 12);
    ck_ok(dsrt_tensor_set_scale(&e3, esb, 0, DSRT_UE8M0, 128, 128));
    ck_assert_int_eq(dsrt_tensor_scale_numel(&e3), 12);
    ck_assert_int_eq(e3.scale.stride[0], 4);
    ck_fails(dsrt_tensor_set_scale(&e3, esb, 1, DSRT_UE8M0, 128, 128), DSRT_CODE_OUT_OF_RANGE, "scale grid");
    arena_free(&a);
    dsrt_device_release(d);
}
END_TEST

/* ---- transfers ---- */

START_TEST(test_transfers)
{
    dsrt_device *d = open_cpu();
    dsrt_stream *s = new_stream(d);
    arena a = {0};
    dsrt_buffer *b = arena_alloc(&a, d, 64), *b2 = arena_alloc(&a, d, 64);
    uint8_t host[128];
    memset(host, 7, sizeof host);
    ck_fails(dsrt_stream_write(s, b, 60, host, 10), DSRT_CODE_OUT_OF_RANGE, "write: range [60, 70) is outside the 64-byte buffer on cpu:0");
    ck_fails(dsrt_stream_write(s, b, 65, host, 0), DSRT_CODE_OUT_OF_RANGE, "write");
    ck_fails(dsrt_stream_write(s, b, SIZE_MAX, host, 2), DSRT_CODE_OUT_OF_RANGE, "write");
    ck_fails(dsrt_stream_write(s, b, 0, NULL, 2), DSRT_CODE_INVALID_ARGUMENT, "source pointer is NULL");
    ck_fails(dsrt_stream_read(s, b, 1, host, 64), DSRT_CODE_OUT_OF_RANGE, "read: range [1, 65)");
    ck_fails(dsrt_stream_read(s, b, 0, NULL, 4), DSRT_CODE_INVALID_ARGUMENT, "destination pointer is NULL");
    ck_fails(dsrt_stream_copy(s, b, 32, b2, 0, 33), DSRT_CODE_OUT_OF_RANGE, "copy source");
    ck_fails(dsrt_stream_copy(s, b, 0, b2, 40, 32), DSRT_CODE_OUT_OF_RANGE, "copy destination");
    ck_fails(dsrt_stream_copy(s, NULL, 0, b2, 0, 4), DSRT_CODE_INVALID_ARGUMENT, "buffer is NULL");
    ck_fails(dsrt_stream_write(NULL, b, 0, host, 4), DSRT_CODE_INVALID_ARGUMENT, "stream is NULL");

    /* Fill patterns: 1, 2 or 4 bytes, aligned ranges. */
    uint32_t p4 = 0xdeadbeefu;
    uint16_t p2 = 0x1234;
    uint8_t p1 = 0xab;
    ck_fails(dsrt_stream_fill(s, b, 0, 12, &p4, 3), DSRT_CODE_INVALID_ARGUMENT, "pattern must be 1, 2 or 4 bytes (got 3)");
    ck_fails(dsrt_stream_fill(s, b, 0, 12, &p4, 8), DSRT_CODE_INVALID_ARGUMENT, "(got 8)");
    ck_fails(dsrt_stream_fill(s, b, 0, 12, NULL, 4), DSRT_CODE_INVALID_ARGUMENT, "pattern");
    ck_fails(dsrt_stream_fill(s, b, 2, 12, &p4, 4), DSRT_CODE_INVALID_ARGUMENT, "multiples of the 4-byte pattern");
    ck_fails(dsrt_stream_fill(s, b, 0, 7, &p2, 2), DSRT_CODE_INVALID_ARGUMENT, "multiples of the 2-byte pattern");
    ck_fails(dsrt_stream_fill(s, b, 60, 8, &p4, 4), DSRT_CODE_OUT_OF_RANGE, "fill: range [60, 68)");
    ck_ok(dsrt_stream_fill(s, b, 0, 64, &p1, 1));
    ck_ok(dsrt_stream_fill(s, b, 4, 8, &p2, 2));
    ck_ok(dsrt_stream_fill(s, b, 16, 8, &p4, 4));
    ck_ok(dsrt_stream_fill(s, b, 24, 0, &p4, 4));
    uint8_t out[64];
    ck_ok(dsrt_stream_read(s, b, 0, out, 64));
    ck_ok(dsrt_stream_sync(s));
    for (int i = 0; i < 64; i++) {
        uint8_t want = p1;
        if (i >= 4 && i < 12) want = ((const uint8_t *)&p2)[i % 2];
        if (i >= 16 && i < 24) want = ((const uint8_t *)&p4)[i % 4];
        ck_assert_msg(out[i] == want, "byte %d: %02x, expected %02x", i, out[i], want);
    }

    /* Same-device copy, overlapping ranges included (memmove semantics on the CPU). */
    for (int i = 0; i < 64; i++) host[i] = (uint8_t)i;
    ck_ok(dsrt_stream_write(s, b, 0, host, 64));
    ck_ok(dsrt_stream_copy(s, b, 8, b2, 0, 16));
    ck_ok(dsrt_stream_copy(s, b, 0, b2, 0, 0));
    ck_ok(dsrt_stream_read(s, b2, 0, out, 16));
    ck_ok(dsrt_stream_sync(s));
    for (int i = 0; i < 16; i++) ck_assert_int_eq(out[i], i + 8);

    /* Buffers of another (separately opened) device are not this stream's. */
    dsrt_device *d2 = open_cpu();
    dsrt_buffer *o = arena_alloc(&a, d2, 64);
    ck_fails(dsrt_stream_write(s, o, 0, host, 4), DSRT_CODE_INVALID_ARGUMENT, "write: buffer lives on cpu:0 but the stream on cpu:0");
    ck_fails(dsrt_stream_read(s, o, 0, host, 4), DSRT_CODE_INVALID_ARGUMENT, "read: buffer lives on");
    ck_fails(dsrt_stream_fill(s, o, 0, 4, &p1, 1), DSRT_CODE_INVALID_ARGUMENT, "fill: buffer lives on");
    dsrt_buffer *o2 = arena_alloc(&a, d2, 64);
    ck_fails(dsrt_stream_copy(s, o, 0, o2, 0, 4), DSRT_CODE_INVALID_ARGUMENT, "copy: neither");
    arena_free(&a);
    dsrt_stream_release(s);
    dsrt_device_release(d);
    dsrt_device_release(d2);
}
END_TEST

START_TEST(test_cross_device_copy)
{
    dsrt_device *d1 = open_cpu(), *d2 = open_cpu();
    ck_assert_ptr_ne(d1, d2);
    dsrt_stream *s1 = new_stream(d1), *s2 = new_stream(d2);
    arena a = {0};
    dsrt_buffer *b1 = arena_alloc(&a, d1, 4096), *b2 = arena_alloc(&a, d2, 4096);
    uint32_t in[1024], out[1024];
    for (int i = 0; i < 1024; i++) in[i] = 0x9e3779b9u * (uint32_t)i;
    memset(out, 0, sizeof out);
    ck_ok(dsrt_stream_write(s1, b1, 0, in, sizeof in));
    /* Stream of the source device, then of the destination device; the HAL stages through the host
     * and returns when done. */
    ck_ok(dsrt_stream_copy(s1, b1, 0, b2, 0, 2048));
    ck_ok(dsrt_stream_copy(s2, b1, 2048, b2, 2048, 2048));
    ck_ok(dsrt_stream_read(s2, b2, 0, out, sizeof out));
    ck_ok(dsrt_stream_sync(s2));
    ck_assert_mem_eq(in, out, sizeof in);
    /* Not while capturing: a staged copy cannot be replayed. */
    ck_ok(dsrt_stream_begin_capture(s1));
    ck_fails(dsrt_stream_copy(s1, b1, 0, b2, 0, 16), DSRT_CODE_INVALID_ARGUMENT, "cannot be captured");
    dsrt_graph *g = NULL;
    ck_ok(dsrt_stream_end_capture(s1, &g));
    dsrt_graph_release(g);
    arena_free(&a);
    dsrt_stream_release(s1);
    dsrt_stream_release(s2);
    dsrt_device_release(d1);
    dsrt_device_release(d2);
}
END_TEST

/* ---- op validation: every op kind ---- */

/* Each block builds a valid op, checks it passes, then breaks one thing at a time. */
START_TEST(test_op_validation_elementwise)
{
    dsrt_device *d = open_cpu();
    dsrt_stream *s = new_stream(d);
    arena a = {0};
    dsrt_tensor x = mk(&a, d, DSRT_F32, 2, 4, 64, 0), y = mk(&a, d, DSRT_BF16, 2, 4, 64, 0);
    dsrt_tensor bad_shape = mk(&a, d, DSRT_F32, 2, 4, 65, 0), xi = mk(&a, d, DSRT_I32, 2, 4, 64, 0);
    dsrt_tensor w = mk(&a, d, DSRT_F32, 1, 64, 0, 0), w65 = mk(&a, d, DSRT_F32, 1, 65, 0, 0);
    dsrt_tensor absent = {0};

    /* convert */
    ck_ok(dsrt_convert(s, &x, &y));
    ck_fails(dsrt_convert(s, &x, &bad_shape), DSRT_CODE_INVALID_ARGUMENT, "convert: x and y shapes differ");
    ck_fails(dsrt_convert(s, &xi, &x), DSRT_CODE_INVALID_ARGUMENT, "integer data converts only to its own dtype (i32 to f32)");
    ck_fails(dsrt_convert(s, &x, NULL), DSRT_CODE_INVALID_ARGUMENT, "convert: required output 'y' is missing");
    ck_fails(dsrt_convert(s, NULL, &y), DSRT_CODE_INVALID_ARGUMENT, "convert: required input 'x' is missing");
    dsrt_op op = dsrt_op_init(DSRT_OP_CONVERT);
    op.in[0] = x;
    op.out[0] = y;
    ck_ok(dsrt_op_validate(&op));
    op.in[1] = x;
    ck_fails(dsrt_enqueue(s, &op), DSRT_CODE_INVALID_ARGUMENT, "convert takes 1 inputs; input 1 is set");
    op.in[1] = absent;
    op.out[2] = y;
    ck_fails(dsrt_enqueue(s, &op), DSRT_CODE_INVALID_ARGUMENT, "convert takes 1 outputs; output 2 is set");

    /* embed */
    dsrt_tensor table = mk(&a, d, DSRT_BF16, 2, 10, 64, 0), ids = mk(&a, d, DSRT_I32, 1, 4, 0, 0);
    dsrt_tensor idsf = mk(&a, d, DSRT_F32, 1, 4, 0, 0);
    ck_ok(dsrt_op_validate(&(dsrt_op){.kind = DSRT_OP_EMBED, .in = {table, ids}, .out = {x}}));
    ck_fails(dsrt_embed(s, &table, &idsf, &x), DSRT_CODE_INVALID_ARGUMENT, "embed: 'ids' has dtype f32, expected i32");
    ck_fails(dsrt_embed(s, &table, &ids, &bad_shape), DSRT_CODE_INVALID_ARGUMENT, "embed: 'y' is f32[4,65], expected shape [4,64]");
    ck_fails(dsrt_embed(s, &xi, &ids, &x), DSRT_CODE_INVALID_ARGUMENT, "'table' has dtype i32, expected f32/bf16/f16");

    /* rms_norm, layer_norm */
    dsrt_tensor res = mk(&a, d, DSRT_F32, 2, 4, 64, 0), ro = mk(&a, d, DSRT_BF16, 2, 4, 64, 0);
    ck_ok(dsrt_rms_norm(s, &x, &w, NULL, 1e-6f, &y, NULL));
    ck_ok(dsrt_rms_norm(s, &x, &w, &res, 1e-6f, &y, &ro));
    ck_fails(dsrt_rms_norm(s, &x, &w, &res, 1e-6f, &y, NULL), DSRT_CODE_INVALID_ARGUMENT, "'residual' and 'residual_out' must be given together");
    ck_fails(dsrt_rms_norm(s, &x, &w, NULL, 1e-6f, &y, &ro), DSRT_CODE_INVALID_ARGUMENT, "must be given together");
    ck_fails(dsrt_rms_norm(s, &x, &w65, NULL, 1e-6f, &y, NULL), DSRT_CODE_INVALID_ARGUMENT, "rms_norm: 'weight' is f32[65], expected shape [64]");
    ck_fails(dsrt_rms_norm(s, &x, &w, &bad_shape, 1e-6f, &y, &ro), DSRT_CODE_INVALID_ARGUMENT, "'residual' is f32[4,65], expected shape [4,64]");
    ck_fails(dsrt_rms_norm(s, &x, &w, NULL, NAN, &y, NULL), DSRT_CODE_INVALID_ARGUMENT, "eps nan must be finite");
    ck_fails(dsrt_rms_norm(s, &x, &w, NULL, -1.0f, &y, NULL), DSRT_CODE_INVALID_ARGUMENT, "eps -1");
    dsrt_tensor x3 = mk(&a, d, DSRT_F32, 3, 2, 2, 64);
    ck_fails(dsrt_rms_norm(s, &x3, &w, NULL, 1e-6f, &y, NULL), DSRT_CODE_INVALID_ARGUMENT, "rms_norm: 'x' has rank 3, expected 2");
    ck_ok(dsrt_layer_norm(s, &x, &w, &w, 1e-6f, &y));
    ck_fails(dsrt_layer_norm(s, &x, &w, NULL, 1e-6f, &y), DSRT_CODE_INVALID_ARGUMENT, "layer_norm: required input 'bias' is missing");
    ck_fails(dsrt_layer_norm(s, &x, &w, &w65, 1e-6f, &y), DSRT_CODE_INVALID_ARGUMENT, "'bias' is f32[65], expected shape [64]");

    /* rope */
    dsrt_tensor q = mk(&a, d, DSRT_BF16, 3, 4, 2, 64), pos = mk(&a, d, DSRT_I32, 1, 4, 0, 0);
    dsrt_tensor cs = mk(&a, d, DSRT_F32, 3, 16, 32, 2), cs_bad = mk(&a, d, DSRT_F32, 3, 16, 33, 2);
    dsrt_tensor cs_bf = mk(&a, d, DSRT_BF16, 3, 16, 32, 2), odd = mk(&a, d, DSRT_F32, 2, 4, 63, 0);
    ck_ok(dsrt_rope(s, &q, &pos, &cs, true, &q));
    ck_fails(dsrt_rope(s, &odd, &pos, &cs, true, &odd), DSRT_CODE_INVALID_ARGUMENT, "rope: rotary width 63 must be even");
    ck_fails(dsrt_rope(s, &q, &pos, &cs_bad, true, &q), DSRT_CODE_INVALID_ARGUMENT, "'cos_sin' is f32[16,33,2], expected shape [*,32,2]");
    ck_fails(dsrt_rope(s, &q, &pos, &cs_bf, true, &q), DSRT_CODE_INVALID_ARGUMENT, "'cos_sin' has dtype bf16, expected f32");
    ck_fails(dsrt_rope(s, &q, &idsf, &cs, true, &q), DSRT_CODE_INVALID_ARGUMENT, "'positions' has dtype f32, expected i32");
    ck_fails(dsrt_rope(s, &q, &pos, &cs, true, &x), DSRT_CODE_INVALID_ARGUMENT, "rope: x and y shapes differ");

    /* swiglu, add */
    ck_ok(dsrt_swiglu(s, &x, &x, &y));
    ck_fails(dsrt_swiglu(s, &x, &bad_shape, &y), DSRT_CODE_INVALID_ARGUMENT, "swiglu: 'up' is f32[4,65], expected shape [4,64]");
    ck_fails(dsrt_swiglu(s, &x, &x, &bad_shape), DSRT_CODE_INVALID_ARGUMENT, "'y' is f32[4,65]");
    ck_ok(dsrt_add(s, &x, &x, &y));
    ck_fails(dsrt_add(s, &x, &bad_shape, &y), DSRT_CODE_INVALID_ARGUMENT, "add: a, b and y must have the same shape");
    ck_fails(dsrt_add(s, &x, &xi, &y), DSRT_CODE_INVALID_ARGUMENT, "add: 'b' has dtype i32");

    /* act_quant, hadamard */
    dsrt_tensor q8 = mk(&a, d, DSRT_E4M3, 2, 4, 64, 0);
    ck_fails(dsrt_act_quant(s, &x, true, &q8), DSRT_CODE_INVALID_ARGUMENT, "act_quant: 'q' needs a scale companion");
    mk_scale(&a, d, &q8, DSRT_UE8M0, 1, 128);
    ck_ok(dsrt_act_quant(s, &x, true, &q8));
    ck_fails(dsrt_act_quant(s, &x, false, &q8), DSRT_CODE_INVALID_ARGUMENT, "ue8m0 scales need scale_pow2");
    dsrt_tensor q8b = mk(&a, d, DSRT_E4M3, 2, 4, 64, 0);
    mk_scale(&a, d, &q8b, DSRT_F32, 2, 128);
    ck_fails(dsrt_act_quant(s, &x, false, &q8b), DSRT_CODE_INVALID_ARGUMENT, "scale blocks must be 1 x N rows (found 2x128)");
    ck_fails(dsrt_act_quant(s, &x, true, &y), DSRT_CODE_INVALID_ARGUMENT, "act_quant: 'q' has dtype bf16, expected e4m3");
    dsrt_tensor x96 = mk(&a, d, DSRT_F32, 2, 4, 96, 0);
    ck_ok(dsrt_hadamard(s, &x, &y));
    ck_fails(dsrt_hadamard(s, &x96, &x96), DSRT_CODE_INVALID_ARGUMENT, "hadamard: width 96 is not a power of two");
    ck_fails(dsrt_hadamard(s, &x, &bad_shape), DSRT_CODE_INVALID_ARGUMENT, "'y' is f32[4,65], expected shape [4,64]");

    /* Views that do not fit, and non-contiguous rows. */
    dsrt_tensor over = x;
    over.offset = 8;
    ck_fails(dsrt_add(s, &over, &x, &y), DSRT_CODE_OUT_OF_RANGE, "add: 'a' f32[4,64] at byte 8 reaches byte 1032 of a 1024-byte buffer");
    dsrt_tensor huge = x; /* built by hand: the extent overflows 64 bits */
    huge.shape[0] = (int64_t)1 << 62;
    ck_fails(dsrt_add(s, &huge, &huge, &huge), DSRT_CODE_OUT_OF_RANGE, "add: 'a'");
    dsrt_tensor strided = x;
    strided.stride[1] = 2;
    strided.shape[1] = 32;
    ck_fails(dsrt_convert(s, &strided, &strided), DSRT_CODE_INVALID_ARGUMENT, "innermost dimension must be contiguous (stride 1, found 2)");
    ck_ok(dsrt_stream_sync(s));
    arena_free(&a);
    dsrt_stream_release(s);
    dsrt_device_release(d);
}
END_TEST

START_TEST(test_op_validation_linear)
{
    dsrt_device *d = open_cpu();
    dsrt_stream *s = new_stream(d);
    arena a = {0};
    dsrt_tensor x = mk(&a, d, DSRT_BF16, 2, 3, 256, 0), y = mk(&a, d, DSRT_F32, 2, 3, 40, 0);
    dsrt_tensor wf = mk(&a, d, DSRT_BF16, 2, 40, 256, 0), w8 = mk(&a, d, DSRT_E4M3, 2, 40, 256, 0);
    dsrt_tensor wk = mk(&a, d, DSRT_F32, 2, 40, 200, 0);
    ck_ok(dsrt_linear(s, &x, &wf, false, false, 1.0f, &y));
    ck_fails(dsrt_linear(s, &x, &w8, false, false, 1.0f, &y), DSRT_CODE_INVALID_ARGUMENT, "linear: 'weight' is e4m3 but has no block scales");
    mk_scale(&a, d, &w8, DSRT_UE8M0, 128, 128);
    ck_ok(dsrt_linear(s, &x, &w8, true, true, 1.0f, &y));
    ck_fails(dsrt_linear(s, &x, &wk, false, false, 1.0f, &y), DSRT_CODE_INVALID_ARGUMENT, "x has 256 columns but the weight has K = 200");
    ck_fails(dsrt_linear(s, &x, &wf, true, true, 1.0f, &y), DSRT_CODE_INVALID_ARGUMENT, "act_quant needs an e4m3 weight, found bf16");
    dsrt_tensor x200 = mk(&a, d, DSRT_BF16, 2, 3, 200, 0), w200 = mk(&a, d, DSRT_E4M3, 2, 40, 200, 0);
    mk_scale(&a, d, &w200, DSRT_F32, 128, 128);
    ck_ok(dsrt_linear(s, &x200, &w200, false, false, 1.0f, &y));
    ck_fails(dsrt_linear(s, &x200, &w200, true, false, 1.0f, &y), DSRT_CODE_INVALID_ARGUMENT, "act_quant needs K to be a multiple of 128, found 200");
    ck_fails(dsrt_linear(s, &x, &wf, false, false, INFINITY, &y), DSRT_CODE_INVALID_ARGUMENT, "alpha is not finite");
    dsrt_tensor y41 = mk(&a, d, DSRT_F32, 2, 3, 41, 0), yi = mk(&a, d, DSRT_I32, 2, 3, 40, 0);
    ck_fails(dsrt_linear(s, &x, &wf, false, false, 1.0f, &y41), DSRT_CODE_INVALID_ARGUMENT, "linear: 'y' is f32[3,41], expected shape [3,40]");
    ck_fails(dsrt_linear(s, &x, &wf, false, false, 1.0f, &yi), DSRT_CODE_INVALID_ARGUMENT, "'y' has dtype i32, expected f32/bf16/f16");
    dsrt_tensor x8 = mk(&a, d, DSRT_E4M3, 2, 3, 256, 0);
    ck_fails(dsrt_linear(s, &x8, &wf, false, false, 1.0f, &y), DSRT_CODE_INVALID_ARGUMENT, "'x' has dtype e4m3");
    /* act_quant blocks are 1x128: weight scale blocks narrower than 128 columns cannot be applied per
     * activation block. */
    dsrt_tensor w64 = mk(&a, d, DSRT_E4M3, 2, 40, 256, 0);
    mk_scale(&a, d, &w64, DSRT_F32, 128, 64);
    ck_ok(dsrt_linear(s, &x, &w64, false, false, 1.0f, &y));
    ck_fails(dsrt_linear(s, &x, &w64, true, false, 1.0f, &y), DSRT_CODE_INVALID_ARGUMENT,
             "act_quant needs weight scale blocks whose width is a multiple of 128, found 128x64");
    dsrt_tensor w256 = mk(&a, d, DSRT_E4M3, 2, 40, 256, 0);
    mk_scale(&a, d, &w256, DSRT_F32, 128, 256);
    ck_ok(dsrt_linear(s, &x, &w256, true, false, 1.0f, &y));
    /* Only e4m3 weights carry scales. */
    dsrt_tensor wfs = wf;
    mk_scale(&a, d, &wfs, DSRT_F32, 128, 128);
    wfs.name = "q_a_proj";
    ck_fails(dsrt_linear(s, &x, &wfs, false, false, 1.0f, &y), DSRT_CODE_INVALID_ARGUMENT,
             "linear: 'weight' q_a_proj is bf16 and must not carry block scales");

    /* grouped */
    dsrt_tensor wg = mk(&a, d, DSRT_E4M3, 3, 4, 40, 256), off = mk(&a, d, DSRT_I32, 1, 5, 0, 0);
    dsrt_tensor off4 = mk(&a, d, DSRT_I32, 1, 4, 0, 0);
    mk_scale(&a, d, &wg, DSRT_UE8M0, 128, 128);
    ck_assert_int_eq(dsrt_tensor_scale_numel(&wg), 4 * 1 * 2);
    int32_t offs[5] = {0, 1, 1, 3, 3};
    ck_ok(dsrt_stream_write(s, off.buf, 0, offs, sizeof offs));
    ck_ok(dsrt_linear_grouped(s, &x, &wg, &off, true, true, &y));
    ck_fails(dsrt_linear_grouped(s, &x, &wg, &off4, true, true, &y), DSRT_CODE_INVALID_ARGUMENT, "linear_grouped: 'offsets' is i32[4], expected shape [5]");
    ck_fails(dsrt_linear_grouped(s, &x, &wf, &off, false, false, &y), DSRT_CODE_INVALID_ARGUMENT, "linear_grouped: 'weight' has rank 2, expected 3");
    ck_fails(dsrt_linear_grouped(s, &x, &wg, NULL, false, false, &y), DSRT_CODE_INVALID_ARGUMENT, "required input 'offsets' is missing");

    /* head_linear */
    dsrt_tensor hx = mk(&a, d, DSRT_BF16, 3, 2, 4, 16), hw = mk(&a, d, DSRT_BF16, 3, 4, 8, 16);
    dsrt_tensor hwt = mk(&a, d, DSRT_BF16, 3, 4, 16, 8), hy = mk(&a, d, DSRT_F32, 3, 2, 4, 8);
    ck_ok(dsrt_head_linear(s, &hx, &hw, false, &hy));
    ck_ok(dsrt_head_linear(s, &hx, &hwt, true, &hy));
    ck_fails(dsrt_head_linear(s, &hx, &hwt, false, &hy), DSRT_CODE_INVALID_ARGUMENT, "head_linear: 'weight' is bf16[4,16,8], expected shape [4,*,16]");
    ck_fails(dsrt_head_linear(s, &hx, &hw, true, &hy), DSRT_CODE_INVALID_ARGUMENT, "expected shape [4,16,*]");
    dsrt_tensor hy9 = mk(&a, d, DSRT_F32, 3, 2, 4, 9);
    ck_fails(dsrt_head_linear(s, &hx, &hw, false, &hy9), DSRT_CODE_INVALID_ARGUMENT, "'y' is f32[2,4,9], expected shape [2,4,8]");
    dsrt_tensor hw8 = mk(&a, d, DSRT_E4M3, 3, 4, 8, 16);
    ck_fails(dsrt_head_linear(s, &hx, &hw8, false, &hy), DSRT_CODE_INVALID_ARGUMENT, "'weight' has dtype e4m3");
    ck_ok(dsrt_stream_sync(s));
    arena_free(&a);
    dsrt_stream_release(s);
    dsrt_device_release(d);
}
END_TEST

START_TEST(test_op_validation_attention)
{
    dsrt_device *d = open_cpu();
    dsrt_stream *s = new_stream(d);
    arena a = {0};
    const int T = 3, Hh = 2, Dn = 16, Dr = 8, Dv = 16, L = 10;
    dsrt_tensor src = mk(&a, d, DSRT_BF16, 2, T, 512, 0), src2 = mk(&a, d, DSRT_BF16, 2, T, 64, 0);
    dsrt_tensor slots = mk(&a, d, DSRT_I32, 1, T, 0, 0), slots4 = mk(&a, d, DSRT_I32, 1, T + 1, 0, 0);
    dsrt_tensor cplain = mk(&a, d, DSRT_BF16, 2, 8, 576, 0), c8 = mk(&a, d, DSRT_U8, 2, 8, 656, 0);
    dsrt_tensor c8bad = mk(&a, d, DSRT_U8, 2, 8, 640, 0), cf = mk(&a, d, DSRT_F32, 2, 8, 656, 0);
    /* cache_write */
    ck_ok(dsrt_cache_write(s, &src, &slots, &src2, DSRT_CACHE_PLAIN, false, &cplain));
    ck_ok(dsrt_cache_write(s, &src, &slots, &src2, DSRT_CACHE_FP8, true, &c8));
    ck_fails(dsrt_cache_write(s, &src, &slots, NULL, DSRT_CACHE_PLAIN, false, &cplain), DSRT_CODE_INVALID_ARGUMENT,
             "cache_write: 'cache' is bf16[8,576], expected shape [*,512]");
    ck_fails(dsrt_cache_write(s, &src, &slots, &src2, DSRT_CACHE_FP8, true, &c8bad), DSRT_CODE_INVALID_ARGUMENT,
             "'cache' is u8[8,640], expected shape [*,656]");
    ck_fails(dsrt_cache_write(s, &src, &slots, &src2, DSRT_CACHE_FP8, true, &cf), DSRT_CODE_INVALID_ARGUMENT, "'cache' has dtype f32, expected u8");
    ck_fails(dsrt_cache_write(s, &src, &slots4, &src2, DSRT_CACHE_PLAIN, false, &cplain), DSRT_CODE_INVALID_ARGUMENT,
             "'slots' is i32[4], expected shape [3]");
    ck_fails(dsrt_cache_write(s, &src, &slots, &src2, (dsrt_cache_format)7, false, &cplain), DSRT_CODE_INVALID_ARGUMENT,
             "unknown cache format 7");

    /* mla_prefill */
    dsrt_tensor q = mk(&a, d, DSRT_BF16, 3, T, Hh, Dn + Dr), kn = mk(&a, d, DSRT_BF16, 3, L, Hh, Dn);
    dsrt_tensor kp = mk(&a, d, DSRT_BF16, 2, L, Dr, 0), v = mk(&a, d, DSRT_BF16, 3, L, Hh, Dv);
    dsrt_tensor ks = mk(&a, d, DSRT_I32, 1, T, 0, 0), kl = mk(&a, d, DSRT_I32, 1, T, 0, 0);
    dsrt_tensor idx = mk(&a, d, DSRT_I32, 2, T, 4, 0), o = mk(&a, d, DSRT_BF16, 3, T, Hh, Dv);
    dsrt_tensor q_bad = mk(&a, d, DSRT_BF16, 3, T, Hh, Dn + Dr + 1), kl4 = mk(&a, d, DSRT_I32, 1, T + 1, 0, 0);
    int32_t zeros[8] = {0};
    ck_ok(dsrt_stream_write(s, ks.buf, 0, zeros, sizeof(int32_t) * (size_t)T));
    ck_ok(dsrt_stream_write(s, kl.buf, 0, zeros, sizeof(int32_t) * (size_t)T));
    ck_ok(dsrt_mla_prefill(s, &q, &kn, &kp, &v, &ks, &kl, NULL, 0.1f, &o));
    ck_ok(dsrt_mla_prefill(s, &q, &kn, &kp, &v, &ks, &kl, &idx, 0.1f, &o));
    ck_fails(dsrt_mla_prefill(s, &q_bad, &kn, &kp, &v, &ks, &kl, NULL, 0.1f, &o), DSRT_CODE_INVALID_ARGUMENT,
             "mla_prefill: q head width 25 != k_nope 16 + k_pe 8");
    ck_fails(dsrt_mla_prefill(s, &q, &kn, &kp, &v, &ks, &kl4, NULL, 0.1f, &o), DSRT_CODE_INVALID_ARGUMENT,
             "'kv_len' is i32[4], expected shape [3]");
    ck_fails(dsrt_mla_prefill(s, &q, &kn, &kp, &v, &ks, &kl, &ks, 0.1f, &o), DSRT_CODE_INVALID_ARGUMENT,
             "'indices' has rank 1, expected 2");
    ck_fails(dsrt_mla_prefill(s, &q, &kn, &kp, &v, &ks, &kl, NULL, NAN, &o), DSRT_CODE_INVALID_ARGUMENT, "scale is not finite");
    ck_fails(dsrt_mla_prefill(s, &q, &kn, &kp, &v, NULL, &kl, NULL, 0.1f, &o), DSRT_CODE_INVALID_ARGUMENT,
             "required input 'kv_start' is missing");
    ck_fails(dsrt_mla_prefill(s, &q, &kn, &kp, &kn, &ks, &kl, NULL, 0.1f, &q), DSRT_CODE_INVALID_ARGUMENT,
             "'o' is bf16[3,2,24], expected shape [3,2,16]");

    /* mla_decode over a paged cache of 4-slot pages */
    const int Dc = 512;
    dsrt_tensor ql = mk(&a, d, DSRT_BF16, 3, T, Hh, Dc), qp = mk(&a, d, DSRT_BF16, 3, T, Hh, 64);
    dsrt_tensor bt = mk(&a, d, DSRT_I32, 2, 2, 2, 0), rs = mk(&a, d, DSRT_I32, 1, T, 0, 0);
    dsrt_tensor od = mk(&a, d, DSRT_BF16, 3, T, Hh, Dc);
    int32_t bt_v[4] = {0, 1, -1, -1};
    ck_ok(dsrt_stream_write(s, bt.buf, 0, bt_v, sizeof bt_v));
    ck_ok(dsrt_stream_write(s, rs.buf, 0, zeros, sizeof(int32_t) * (size_t)T));
    ck_ok(dsrt_mla_decode(s, &ql, &qp, &cplain, DSRT_CACHE_PLAIN, 4, &bt, &rs, &kl, NULL, 0.1f, &od));
    ck_ok(dsrt_mla_decode(s, &ql, &qp, &c8, DSRT_CACHE_FP8, 4, &bt, &rs, &kl, &idx, 0.1f, &od));
    ck_fails(dsrt_mla_decode(s, &ql, &qp, &c8, DSRT_CACHE_FP8, 0, &bt, &rs, &kl, NULL, 0.1f, &od), DSRT_CODE_INVALID_ARGUMENT,
             "mla_decode: page_size 0 must be >= 1");
    ck_fails(dsrt_mla_decode(s, &ql, &qp, &c8bad, DSRT_CACHE_FP8, 4, &bt, &rs, &kl, NULL, 0.1f, &od), DSRT_CODE_INVALID_ARGUMENT,
             "'cache' is u8[8,640], expected shape [*,656]");
    ck_fails(dsrt_mla_decode(s, &ql, &qp, &c8, DSRT_CACHE_PLAIN, 4, &bt, &rs, &kl, NULL, 0.1f, &od), DSRT_CODE_INVALID_ARGUMENT,
             "'cache' has dtype u8, expected f32/bf16/f16");
    ck_fails(dsrt_mla_decode(s, &ql, &qp, &c8, DSRT_CACHE_FP8, 4, &bt, &slots4, &kl, NULL, 0.1f, &od), DSRT_CODE_INVALID_ARGUMENT,
             "'row_seq' is i32[4], expected shape [3]");
    ck_fails(dsrt_mla_decode(s, &ql, &qp, &c8, DSRT_CACHE_FP8, 4, &rs, &rs, &kl, NULL, 0.1f, &od), DSRT_CODE_INVALID_ARGUMENT,
             "'block_table' has rank 1, expected 2");
    ck_fails(dsrt_mla_decode(s, &ql, &ql, &c8, DSRT_CACHE_FP8, 4, &bt, &rs, &kl, NULL, 0.1f, &od), DSRT_CODE_INVALID_ARGUMENT,
             "expected shape [*,1552]");

    /* indexer_scores */
    const int Hi = 4, D = 128;
    dsrt_tensor iq8 = mk(&a, d, DSRT_E4M3, 3, T, Hi, D), iqf = mk(&a, d, DSRT_BF16, 3, T, Hi, D);
    dsrt_tensor iw = mk(&a, d, DSRT_F32, 2, T, Hi, 0), kc8 = mk(&a, d, DSRT_U8, 2, 8, 132, 0);
    dsrt_tensor kcf = mk(&a, d, DSRT_BF16, 2, 8, 128, 0), sc = mk(&a, d, DSRT_F32, 2, T, 8, 0);
    dsrt_tensor sc16 = mk(&a, d, DSRT_F16, 2, T, 8, 0), iw5 = mk(&a, d, DSRT_F32, 2, T, Hi + 1, 0);
    ck_ok(dsrt_indexer_scores(s, &iqf, &iw, &kcf, DSRT_CACHE_PLAIN, 4, &bt, &rs, &kl, 1.0f, &sc));
    ck_fails(dsrt_indexer_scores(s, &iq8, &iw, &kc8, DSRT_CACHE_FP8, 4, &bt, &rs, &kl, 1.0f, &sc), DSRT_CODE_INVALID_ARGUMENT,
             "indexer_scores: with the FP8 format 'q' must carry 1x128 block scales");
    mk_scale(&a, d, &iq8, DSRT_F32, 1, 128);
    ck_ok(dsrt_indexer_scores(s, &iq8, &iw, &kc8, DSRT_CACHE_FP8, 4, &bt, &rs, &kl, 1.0f, &sc));
    ck_fails(dsrt_indexer_scores(s, &iqf, &iw, &kc8, DSRT_CACHE_FP8, 4, &bt, &rs, &kl, 1.0f, &sc), DSRT_CODE_INVALID_ARGUMENT,
             "'q' has dtype bf16, expected e4m3");
    ck_fails(dsrt_indexer_scores(s, &iqf, &iw5, &kcf, DSRT_CACHE_PLAIN, 4, &bt, &rs, &kl, 1.0f, &sc), DSRT_CODE_INVALID_ARGUMENT,
             "'weights' is f32[3,5], expected shape [3,4]");
    ck_fails(dsrt_indexer_scores(s, &iqf, &iw, &kcf, DSRT_CACHE_PLAIN, 4, &bt, &rs, &kl, 1.0f, &sc16), DSRT_CODE_INVALID_ARGUMENT,
             "'scores' has dtype f16, expected f32");
    ck_fails(dsrt_indexer_scores(s, &iq8, &iw, &kcf, DSRT_CACHE_FP8, 4, &bt, &rs, &kl, 1.0f, &sc), DSRT_CODE_INVALID_ARGUMENT,
             "'kcache' has dtype bf16, expected u8");
    ck_fails(dsrt_indexer_scores(s, &iqf, &iw, &kcf, DSRT_CACHE_PLAIN, 4, &bt, &rs, &kl, INFINITY, &sc), DSRT_CODE_INVALID_ARGUMENT,
             "scale is not finite");

    /* topk */
    dsrt_tensor ti = mk(&a, d, DSRT_I32, 2, T, 4, 0), ti5 = mk(&a, d, DSRT_I32, 2, T, 5, 0);
    ck_ok(dsrt_topk(s, &sc, &kl, 4, false, &ti));
    ck_ok(dsrt_topk(s, &sc, NULL, 4, false, &ti));
    ck_fails(dsrt_topk(s, &sc, NULL, 0, false, &ti), DSRT_CODE_INVALID_ARGUMENT, "topk: k = 0 must be >= 1");
    ck_fails(dsrt_topk(s, &sc, NULL, 4, false, &ti5), DSRT_CODE_INVALID_ARGUMENT, "'indices' is i32[3,5], expected shape [3,4]");
    ck_fails(dsrt_topk(s, &sc, &slots4, 4, false, &ti), DSRT_CODE_INVALID_ARGUMENT, "'lengths' is i32[4], expected shape [3]");
    ck_fails(dsrt_topk(s, &sc16, NULL, 4, false, &ti), DSRT_CODE_INVALID_ARGUMENT, "'scores' has dtype f16, expected f32");
    ck_ok(dsrt_stream_sync(s));
    arena_free(&a);
    dsrt_stream_release(s);
    dsrt_device_release(d);
}
END_TEST

START_TEST(test_op_validation_moe_sample)
{
    dsrt_device *d = open_cpu();
    dsrt_stream *s = new_stream(d);
    arena a = {0};
    const int T = 3, E = 16, H = 32;
    dsrt_tensor lg = mk(&a, d, DSRT_F32, 2, T, E, 0), bias = mk(&a, d, DSRT_F32, 1, E, 0, 0);
    dsrt_tensor bias8 = mk(&a, d, DSRT_F32, 1, 8, 0, 0), ids = mk(&a, d, DSRT_I32, 2, T, 4, 0);
    dsrt_tensor wts = mk(&a, d, DSRT_F32, 2, T, 4, 0);
    ck_ok(dsrt_moe_gate(s, &lg, &bias, 4, 4, 2, DSRT_SCORE_SIGMOID, true, 2.5f, &ids, &wts));
    ck_ok(dsrt_moe_gate(s, &lg, NULL, 4, 1, 1, DSRT_SCORE_SOFTMAX, false, 1.0f, &ids, &wts));
    ck_fails(dsrt_moe_gate(s, &lg, &bias, 17, 4, 2, DSRT_SCORE_SIGMOID, true, 1.0f, &ids, &wts), DSRT_CODE_INVALID_ARGUMENT,
             "moe_gate: k = 17 must be in 1..16 experts");
    ck_fails(dsrt_moe_gate(s, &lg, &bias, 4, 3, 2, DSRT_SCORE_SIGMOID, true, 1.0f, &ids, &wts), DSRT_CODE_INVALID_ARGUMENT,
             "n_group = 3 must divide the 16 experts");
    ck_fails(dsrt_moe_gate(s, &lg, &bias, 4, 4, 5, DSRT_SCORE_SIGMOID, true, 1.0f, &ids, &wts), DSRT_CODE_INVALID_ARGUMENT,
             "topk_group = 5 must be in 1..n_group (4)");
    ck_fails(dsrt_moe_gate(s, &lg, &bias, 4, 8, 1, DSRT_SCORE_SIGMOID, true, 1.0f, &ids, &wts), DSRT_CODE_INVALID_ARGUMENT,
             "k = 4 exceeds the 2 experts in the 1 kept groups");
    ck_fails(dsrt_moe_gate(s, &lg, &bias, 4, 4, 2, (dsrt_score_func)5, true, 1.0f, &ids, &wts), DSRT_CODE_INVALID_ARGUMENT,
             "unknown score function 5");
    ck_fails(dsrt_moe_gate(s, &lg, &bias8, 4, 4, 2, DSRT_SCORE_SIGMOID, true, 1.0f, &ids, &wts), DSRT_CODE_INVALID_ARGUMENT,
             "'bias' is f32[8], expected shape [16]");
    ck_fails(dsrt_moe_gate(s, &lg, &bias, 3, 4, 2, DSRT_SCORE_SIGMOID, true, 1.0f, &ids, &wts), DSRT_CODE_INVALID_ARGUMENT,
             "'ids' is i32[3,4], expected shape [3,3]");
    ck_fails(dsrt_moe_gate(s, &lg, &bias, 4, 4, 2, DSRT_SCORE_SIGMOID, true, NAN, &ids, &wts), DSRT_CODE_INVALID_ARGUMENT,
             "route_scale is not finite");
    ck_fails(dsrt_moe_gate(s, &lg, &bias, 4, 4, 2, DSRT_SCORE_SIGMOID, true, 1.0f, &ids, NULL), DSRT_CODE_INVALID_ARGUMENT,
             "required output 'weights' is missing");

    /* dispatch / combine */
    dsrt_tensor x = mk(&a, d, DSRT_BF16, 2, T, H, 0), xp = mk(&a, d, DSRT_BF16, 2, T * 4, H, 0);
    dsrt_tensor xp_small = mk(&a, d, DSRT_BF16, 2, T * 4 - 1, H, 0), off = mk(&a, d, DSRT_I32, 1, 9, 0, 0);
    dsrt_tensor rt = mk(&a, d, DSRT_I32, 1, T * 4, 0, 0), sr = mk(&a, d, DSRT_I32, 2, T, 4, 0);
    int32_t ids_v[12] = {0};
    ck_ok(dsrt_stream_write(s, ids.buf, 0, ids_v, sizeof ids_v));
    ck_ok(dsrt_moe_dispatch(s, &x, &ids, 0, 8, &xp, &off, &rt, &sr));
    ck_fails(dsrt_moe_dispatch(s, &x, &ids, 0, 8, &xp_small, &off, &rt, &sr), DSRT_CODE_INVALID_ARGUMENT,
             "x_perm and row_token need at least T*k = 12 rows");
    ck_fails(dsrt_moe_dispatch(s, &x, &ids, 0, 0, &xp, &off, &rt, &sr), DSRT_CODE_INVALID_ARGUMENT,
             "expert range begin 0 count 0 is invalid");
    ck_fails(dsrt_moe_dispatch(s, &x, &ids, -1, 8, &xp, &off, &rt, &sr), DSRT_CODE_INVALID_ARGUMENT, "begin -1");
    ck_fails(dsrt_moe_dispatch(s, &x, &ids, 0, 7, &xp, &off, &rt, &sr), DSRT_CODE_INVALID_ARGUMENT,
             "'offsets' is i32[9], expected shape [8]");
    ck_fails(dsrt_moe_dispatch(s, &x, &ids, 0, 8, &xp, &off, &rt, NULL), DSRT_CODE_INVALID_ARGUMENT,
             "required output 'slot_row' is missing");
    dsrt_tensor y = mk(&a, d, DSRT_BF16, 2, T, H, 0), wbf = mk(&a, d, DSRT_BF16, 2, T, 4, 0);
    dsrt_tensor sh_bad = mk(&a, d, DSRT_BF16, 2, T, H + 1, 0);
    int32_t neg[12];
    for (int i = 0; i < 12; i++) neg[i] = -1;
    ck_ok(dsrt_stream_write(s, sr.buf, 0, neg, sizeof neg));
    ck_ok(dsrt_moe_combine(s, &xp, &sr, &ids, &wts, &x, &y));
    ck_ok(dsrt_moe_combine(s, &xp, &sr, &ids, &wts, NULL, &y));
    ck_fails(dsrt_moe_combine(s, &xp, &sr, &ids, &wbf, NULL, &y), DSRT_CODE_INVALID_ARGUMENT, "moe_combine: 'weights' has dtype bf16, expected f32");
    ck_fails(dsrt_moe_combine(s, &xp, &sr, &ids, &wts, &sh_bad, &y), DSRT_CODE_INVALID_ARGUMENT, "'shared' is bf16[3,33], expected shape [3,32]");
    ck_fails(dsrt_moe_combine(s, &xp, &sr, &off, &wts, NULL, &y), DSRT_CODE_INVALID_ARGUMENT, "'ids' has rank 1, expected 2");

    /* sample */
    dsrt_tensor logits = mk(&a, d, DSRT_F32, 2, T, 50, 0), u = mk(&a, d, DSRT_F32, 1, T, 0, 0);
    dsrt_tensor u4 = mk(&a, d, DSRT_F32, 1, T + 1, 0, 0), out = mk(&a, d, DSRT_I32, 1, T, 0, 0);
    ck_ok(dsrt_sample(s, &logits, &u, 0.7f, 40, 0.9f, 0.05f, &out));
    ck_fails(dsrt_sample(s, &logits, &u, 0.7f, 40, 0.0f, 0.0f, &out), DSRT_CODE_INVALID_ARGUMENT, "sample: top_p 0 must be in (0, 1]");
    ck_fails(dsrt_sample(s, &logits, &u, 0.7f, 40, 1.5f, 0.0f, &out), DSRT_CODE_INVALID_ARGUMENT, "top_p 1.5");
    ck_fails(dsrt_sample(s, &logits, &u, 0.7f, 40, 1.0f, 1.0f, &out), DSRT_CODE_INVALID_ARGUMENT, "min_p 1 must be in [0, 1)");
    ck_fails(dsrt_sample(s, &logits, &u, 0.7f, -1, 1.0f, 0.0f, &out), DSRT_CODE_INVALID_ARGUMENT, "top_k -1 must be >= 0");
    ck_fails(dsrt_sample(s, &logits, &u, NAN, 0, 1.0f, 0.0f, &out), DSRT_CODE_INVALID_ARGUMENT, "temperature is NaN");
    ck_fails(dsrt_sample(s, &logits, &u4, 1.0f, 0, 1.0f, 0.0f, &out), DSRT_CODE_INVALID_ARGUMENT, "'uniform' is f32[4], expected shape [3]");
    ck_fails(dsrt_sample(s, &logits, &u, 1.0f, 0, 1.0f, 0.0f, &u), DSRT_CODE_INVALID_ARGUMENT, "'ids' has dtype f32, expected i32");

    /* Op tables and kinds. */
    dsrt_op bad = dsrt_op_init(DSRT_OP_COUNT);
    ck_fails(dsrt_op_validate(&bad), DSRT_CODE_INVALID_ARGUMENT, "invalid op kind");
    ck_fails(dsrt_enqueue(s, &bad), DSRT_CODE_INVALID_ARGUMENT, "invalid op kind");
    ck_fails(dsrt_op_validate(NULL), DSRT_CODE_INVALID_ARGUMENT, "op is NULL");
    ck_fails(dsrt_enqueue(NULL, &bad), DSRT_CODE_INVALID_ARGUMENT, "stream is NULL");
    ck_assert_ptr_null(dsrt_op_get_info(DSRT_OP_COUNT));
    ck_assert_str_eq(dsrt_op_name(DSRT_OP_MLA_DECODE), "mla_decode");
    ck_assert_str_eq(dsrt_op_name((dsrt_op_kind)99), "invalid-op");
    for (int k = 0; k < DSRT_OP_COUNT; k++) {
        dsrt_op_kind got;
        const dsrt_op_info *info = dsrt_op_get_info((dsrt_op_kind)k);
        ck_assert_ptr_nonnull(info);
        ck_ok(dsrt_op_parse(info->name, &got));
        ck_assert_int_eq(got, k);
        /* An op with no operands at all fails on its first required one, never crashes. */
        dsrt_op empty = dsrt_op_init((dsrt_op_kind)k);
        ck_fails(dsrt_op_validate(&empty), DSRT_CODE_INVALID_ARGUMENT, "is missing");
        ck_fails(dsrt_device_supports(d, &empty), DSRT_CODE_INVALID_ARGUMENT, info->name);
        /* A stray operand past the op's lists is refused before anything else is looked at. */
        int nin = 0, nout = 0;
        while (info->in_names[nin]) nin++;
        while (info->out_names[nout]) nout++;
        char want[96];
        if (nin < DSRT_OP_MAX_IN) {
            dsrt_op stray = dsrt_op_init((dsrt_op_kind)k);
            stray.in[nin] = logits;
            snprintf(want, sizeof want, "%s takes %d inputs; input %d is set", info->name, nin, nin);
            ck_fails(dsrt_op_validate(&stray), DSRT_CODE_INVALID_ARGUMENT, want);
        }
        if (nout < DSRT_OP_MAX_OUT) {
            dsrt_op stray = dsrt_op_init((dsrt_op_kind)k);
            stray.out[DSRT_OP_MAX_OUT - 1] = logits;
            snprintf(want, sizeof want, "%s takes %d outputs; output %d is set", info->name, nout, DSRT_OP_MAX_OUT - 1);
            ck_fails(dsrt_op_validate(&stray), DSRT_CODE_INVALID_ARGUMENT, want);
        }
    }
    dsrt_op_kind got;
    ck_fails(dsrt_op_parse("matmul", &got), DSRT_CODE_NOT_FOUND, "unknown op 'matmul'");
    ck_ok(dsrt_stream_sync(s));
    arena_free(&a);
    dsrt_stream_release(s);
    dsrt_device_release(d);
}
END_TEST

START_TEST(test_op_operands_on_another_device)
{
    dsrt_device *d1 = open_cpu(), *d2 = open_cpu();
    dsrt_stream *s = new_stream(d1);
    arena a = {0};
    dsrt_tensor x1 = mk(&a, d1, DSRT_F32, 2, 2, 8, 0), x2 = mk(&a, d2, DSRT_F32, 2, 2, 8, 0);
    ck_ok(dsrt_add(s, &x1, &x1, &x1));
    ck_fails(dsrt_add(s, &x2, &x1, &x1), DSRT_CODE_INVALID_ARGUMENT, "add: input 'a' lives on cpu:0, not on the stream's device cpu:0");
    ck_fails(dsrt_add(s, &x1, &x2, &x1), DSRT_CODE_INVALID_ARGUMENT, "input 'b' lives on");
    ck_fails(dsrt_add(s, &x1, &x1, &x2), DSRT_CODE_INVALID_ARGUMENT, "add: output 'y' lives on");
    /* The scales of an operand count too. */
    dsrt_tensor q = mk(&a, d1, DSRT_E4M3, 2, 2, 8, 0);
    mk_scale(&a, d2, &q, DSRT_F32, 1, 128);
    ck_fails(dsrt_act_quant(s, &x1, false, &q), DSRT_CODE_INVALID_ARGUMENT, "output 'q' lives on");
    ck_ok(dsrt_stream_sync(s));
    arena_free(&a);
    dsrt_stream_release(s);
    dsrt_device_release(d1);
    dsrt_device_release(d2);
}
END_TEST

/* ---- streams and events ---- */

/* A linear big enough to take a while, so that work on another stream would overtake it unless
 * ordered: y [M,N] = x [M,K] . w^T, all ones, so every y element is K. */
typedef struct {
    dsrt_tensor x, w, y;
} slow_op;

static slow_op make_slow(arena *a, dsrt_device *d, dsrt_stream *s, int M, int K, int N)
{
    slow_op o;
    o.x = mk(a, d, DSRT_F32, 2, M, K, 0);
    o.w = mk(a, d, DSRT_F32, 2, N, K, 0);
    o.y = mk(a, d, DSRT_F32, 2, M, N, 0);
    float one = 1.0f;
    ck_ok(dsrt_stream_fill(s, o.x.buf, 0, dsrt_buffer_size(o.x.buf), &one, 4));
    ck_ok(dsrt_stream_fill(s, o.w.buf, 0, dsrt_buffer_size(o.w.buf), &one, 4));
    ck_ok(dsrt_stream_sync(s));
    return o;
}

START_TEST(test_stream_event_ordering)
{
    dsrt_device *d = open_cpu();
    dsrt_stream *sa = new_stream(d), *sb = new_stream(d);
    arena a = {0};
    const int M = 32, K = 384, N = 256;
    slow_op so = make_slow(&a, d, sa, M, K, N);
    dsrt_tensor y2 = mk(&a, d, DSRT_F32, 2, M, N, 0);
    dsrt_event *e = NULL;
    ck_ok(dsrt_event_create(d, &e));
    bool done = false;
    ck_ok(dsrt_event_query(e, &done));
    ck_assert(done); /* never recorded */
    ck_ok(dsrt_event_sync(e));
    for (int rep = 0; rep < 3; rep++) {
        float zero = 0;
        ck_ok(dsrt_stream_fill(sa, so.y.buf, 0, dsrt_buffer_size(so.y.buf), &zero, 4));
        ck_ok(dsrt_linear(sa, &so.x, &so.w, false, false, 1.0f + (float)rep, &so.y));
        ck_ok(dsrt_event_record(e, sa));
        ck_ok(dsrt_stream_wait_event(sb, e));
        ck_ok(dsrt_add(sb, &so.y, &so.y, &y2)); /* must see the finished linear */
        ck_ok(dsrt_stream_sync(sb));
        ck_ok(dsrt_event_query(e, &done));
        ck_assert(done);
        const float *yv = dsrt_buffer_host_ptr(y2.buf);
        for (int i = 0; i < M * N; i++) ck_assert_msg(yv[i] == 2.0f * K * (1.0f + (float)rep), "rep %d elem %d: %g", rep, i, (double)yv[i]);
    }
    ck_ok(dsrt_stream_sync(sa));
    /* Events from another device: the HAL waits on the host. */
    dsrt_device *d2 = open_cpu();
    dsrt_stream *sc = new_stream(d2);
    dsrt_event *e2 = NULL;
    ck_ok(dsrt_event_create(d2, &e2));
    ck_fails(dsrt_event_record(e2, sa), DSRT_CODE_INVALID_ARGUMENT, "event of cpu:0 recorded on a stream of cpu:0");
    ck_ok(dsrt_linear(sa, &so.x, &so.w, false, false, 3.0f, &so.y));
    ck_ok(dsrt_event_record(e, sa));
    ck_ok(dsrt_stream_wait_event(sc, e));
    const float *yv = dsrt_buffer_host_ptr(so.y.buf);
    for (int i = 0; i < M * N; i++) ck_assert(yv[i] == 3.0f * K);
    ck_fails(dsrt_event_record(NULL, sa), DSRT_CODE_INVALID_ARGUMENT, "event is NULL");
    ck_fails(dsrt_stream_wait_event(sa, NULL), DSRT_CODE_INVALID_ARGUMENT, "event is NULL");
    dsrt_event_release(e2);
    dsrt_stream_release(sc);
    dsrt_device_release(d2);
    dsrt_event_release(e);
    arena_free(&a);
    dsrt_stream_release(sa);
    dsrt_stream_release(sb);
    dsrt_device_release(d);
}
END_TEST

START_TEST(test_event_released_while_waited_on)
{
    /* Releasing an event right after a stream was told to wait for it is legal (as with CUDA); the
     * queued wait must not touch freed memory. Stream b is kept busy so the wait is still queued when
     * the event goes. */
    dsrt_device *d = open_cpu();
    dsrt_stream *sa = new_stream(d), *sb = new_stream(d);
    arena a = {0};
    slow_op so = make_slow(&a, d, sb, 32, 384, 256);
    slow_op so2 = make_slow(&a, d, sa, 32, 384, 256);
    for (int rep = 0; rep < 4; rep++) {
        dsrt_event *e = NULL;
        ck_ok(dsrt_event_create(d, &e));
        ck_ok(dsrt_linear(sb, &so.x, &so.w, false, false, 1.0f, &so.y));
        ck_ok(dsrt_linear(sa, &so2.x, &so2.w, false, false, 1.0f, &so2.y));
        ck_ok(dsrt_event_record(e, sa));
        ck_ok(dsrt_stream_wait_event(sb, e));
        dsrt_event_release(e);
        ck_ok(dsrt_stream_sync(sb));
        ck_ok(dsrt_stream_sync(sa));
    }
    arena_free(&a);
    dsrt_stream_release(sa);
    dsrt_stream_release(sb);
    dsrt_device_release(d);
}
END_TEST

START_TEST(test_sticky_errors)
{
    dsrt_device *d = open_cpu();
    dsrt_stream *s = new_stream(d);
    arena a = {0};
    /* Offsets that only the running kernel can see are wrong (decreasing). */
    dsrt_tensor x = mk(&a, d, DSRT_F32, 2, 4, 8, 0), w = mk(&a, d, DSRT_F32, 3, 2, 3, 8);
    dsrt_tensor off = mk(&a, d, DSRT_I32, 1, 3, 0, 0), y = mk(&a, d, DSRT_F32, 2, 4, 3, 0);
    int32_t offs[3] = {0, 3, 1};
    ck_ok(dsrt_stream_write(s, off.buf, 0, offs, sizeof offs));
    ck_ok(dsrt_linear_grouped(s, &x, &w, &off, false, false, &y)); /* enqueued fine */
    float v = 5.0f, back = 0.0f;
    ck_ok(dsrt_stream_write(s, x.buf, 0, &v, 4)); /* later work is skipped after a failure */
    ck_fails(dsrt_stream_sync(s), DSRT_CODE_OUT_OF_RANGE, "linear_grouped: offsets[2] = 1 is not non-decreasing");
    ck_ok(dsrt_stream_sync(s)); /* reported once */
    ck_ok(dsrt_stream_write(s, x.buf, 4, &v, 4));
    ck_ok(dsrt_stream_read(s, x.buf, 4, &back, 4));
    ck_ok(dsrt_stream_sync(s));
    ck_assert(back == 5.0f);
    /* An offset past the rows. */
    int32_t offs2[3] = {0, 2, 9};
    ck_ok(dsrt_stream_write(s, off.buf, 0, offs2, sizeof offs2));
    ck_ok(dsrt_linear_grouped(s, &x, &w, &off, false, false, &y));
    ck_fails(dsrt_stream_sync(s), DSRT_CODE_OUT_OF_RANGE, "offsets[2] = 9");
    /* Records still happen after a failure, so waiters elsewhere never hang. */
    dsrt_stream *s2 = new_stream(d);
    dsrt_event *e = NULL;
    ck_ok(dsrt_event_create(d, &e));
    ck_ok(dsrt_linear_grouped(s, &x, &w, &off, false, false, &y));
    ck_ok(dsrt_event_record(e, s));
    ck_ok(dsrt_stream_wait_event(s2, e));
    ck_ok(dsrt_stream_sync(s2));
    ck_ok(dsrt_event_sync(e));
    ck_fails(dsrt_stream_sync(s), DSRT_CODE_OUT_OF_RANGE, "offsets");
    dsrt_event_release(e);
    dsrt_stream_release(s2);
    arena_free(&a);
    dsrt_stream_release(s);
    dsrt_device_release(d);
}
END_TEST

START_TEST(test_graph_capture_replay)
{
    dsrt_device *d = open_cpu();
    dsrt_stream *s = new_stream(d);
    arena a = {0};
    dsrt_tensor x = mk(&a, d, DSRT_F32, 2, 2, 16, 0), y = mk(&a, d, DSRT_BF16, 2, 2, 16, 0);
    dsrt_tensor z = mk(&a, d, DSRT_F32, 2, 2, 16, 0);
    float in[32], out[32];
    ck_fails(dsrt_stream_end_capture(s, &(dsrt_graph *){NULL}), DSRT_CODE_INVALID_ARGUMENT, "is not capturing");
    ck_ok(dsrt_stream_begin_capture(s));
    ck_fails(dsrt_stream_begin_capture(s), DSRT_CODE_INVALID_ARGUMENT, "already capturing");
    ck_fails(dsrt_stream_sync(s), DSRT_CODE_INVALID_ARGUMENT, "is capturing a graph and cannot be synced");
    dsrt_event *e = NULL;
    ck_ok(dsrt_event_create(d, &e));
    ck_fails(dsrt_event_record(e, s), DSRT_CODE_UNIMPLEMENTED, "cannot be captured");
    /* Recorded: host -> x, x + x -> y (bf16), convert y -> z, z -> host. Nothing runs yet. */
    for (int i = 0; i < 32; i++) in[i] = (float)i + 0.25f;
    memset(out, 0, sizeof out);
    ck_ok(dsrt_stream_write(s, x.buf, 0, in, sizeof in));
    ck_ok(dsrt_add(s, &x, &x, &y));
    ck_ok(dsrt_convert(s, &y, &z));
    ck_ok(dsrt_stream_read(s, z.buf, 0, out, sizeof out));
    ck_fails(dsrt_add(s, &x, &z, NULL), DSRT_CODE_INVALID_ARGUMENT,
             "required output 'y' is missing"); /* validation still applies while capturing */
    dsrt_graph *g = NULL;
    ck_ok(dsrt_stream_end_capture(s, &g));
    ck_assert_ptr_nonnull(g);
    ck_ok(dsrt_stream_sync(s));
    ck_assert(out[5] == 0.0f);
    for (int rep = 0; rep < 3; rep++) {
        for (int i = 0; i < 32; i++) in[i] = (float)(i * (rep + 1)) / 8.0f; /* replay sees new data (bf16-exact) */
        ck_ok(dsrt_graph_launch(g, s));
        ck_ok(dsrt_stream_sync(s));
        for (int i = 0; i < 32; i++) ck_assert_msg(out[i] == 2.0f * in[i], "rep %d elem %d: %g", rep, i, (double)out[i]);
    }
    /* Graphs do not nest, and belong to their device. */
    ck_ok(dsrt_stream_begin_capture(s));
    ck_fails(dsrt_graph_launch(g, s), DSRT_CODE_UNIMPLEMENTED, "cannot be captured");
    dsrt_graph *g2 = NULL;
    ck_ok(dsrt_stream_end_capture(s, &g2));
    dsrt_device *d2 = open_cpu();
    dsrt_stream *s2 = new_stream(d2);
    ck_fails(dsrt_graph_launch(g, s2), DSRT_CODE_INVALID_ARGUMENT, "graph of cpu:0 launched on a stream of cpu:0");
    ck_fails(dsrt_graph_launch(NULL, s2), DSRT_CODE_INVALID_ARGUMENT, "graph is NULL");
    dsrt_graph_launch(g2, s); /* an empty graph */
    ck_ok(dsrt_stream_sync(s));
    dsrt_stream_release(s2);
    dsrt_device_release(d2);
    dsrt_graph_release(g2);
    dsrt_event_release(e);
    dsrt_stream_release(s); /* the graph outlives the stream it was captured on */
    s = new_stream(d);
    for (int i = 0; i < 32; i++) in[i] = -1.5f * (float)i;
    ck_ok(dsrt_graph_launch(g, s));
    ck_ok(dsrt_stream_sync(s));
    for (int i = 0; i < 32; i++) ck_assert(out[i] == 2.0f * in[i]);
    dsrt_graph_release(g);
    arena_free(&a);
    dsrt_stream_release(s);
    dsrt_device_release(d);
}
END_TEST

/* ---- plugins ---- */

START_TEST(test_plugins)
{
    dsrt_backend *b = NULL;
    ck_ok(dsrt_registry_load_plugin(DSRT_TEST_PLUGIN_GOOD, &b));
    ck_assert_str_eq(dsrt_backend_name(b), "testplug");
    dsrt_backend *found = NULL;
    ck_ok(dsrt_backend_find("testplug", &found));
    ck_assert_ptr_eq(found, b);
    ck_fails(dsrt_backend_find("nope", &found), DSRT_CODE_NOT_FOUND, "testplug"); /* listed with the built-ins */
    /* Twice: the name is taken. */
    ck_fails(dsrt_registry_load_plugin(DSRT_TEST_PLUGIN_GOOD, NULL), DSRT_CODE_INVALID_ARGUMENT,
             "a backend named 'testplug' is already registered (from " DSRT_TEST_PLUGIN_GOOD ")");
    /* The refusals, each naming the file and what is wrong. */
    ck_fails(dsrt_registry_load_plugin(DSRT_TEST_PLUGIN_BADABI, NULL), DSRT_CODE_INCOMPATIBLE, "libdsrt-badabi.so");
    ck_fails(dsrt_registry_load_plugin(DSRT_TEST_PLUGIN_BADABI, NULL), DSRT_CODE_INCOMPATIBLE, "was built for backend ABI version 1003");
    ck_fails(dsrt_registry_load_plugin(DSRT_TEST_PLUGIN_NOENTRY, NULL), DSRT_CODE_INVALID_ARGUMENT,
             "libdsrt-noentry.so' does not export 'dsrt_backend_plugin_entry'");
    ck_fails(dsrt_registry_load_plugin(DSRT_TEST_PLUGIN_NOENQUEUE, NULL), DSRT_CODE_INVALID_ARGUMENT,
             "backend 'noenqueue' lacks the required entry 'enqueue_op'");
    ck_fails(dsrt_registry_load_plugin("/nonexistent/libdsrt-ghost.so", NULL), DSRT_CODE_NOT_FOUND,
             "backend plugin '/nonexistent/libdsrt-ghost.so': no such file");
    ck_fails(dsrt_registry_load_plugin("", NULL), DSRT_CODE_INVALID_ARGUMENT, "plugin path is empty");
    char dir[] = "/tmp/dsrt-test-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char fake[128];
    snprintf(fake, sizeof fake, "%s/libdsrt-fake.so", dir);
    FILE *f = fopen(fake, "w");
    ck_assert_ptr_nonnull(f);
    fputs("this is not an ELF file\n", f);
    fclose(f);
    ck_fails(dsrt_registry_load_plugin(fake, NULL), DSRT_CODE_INVALID_ARGUMENT, "could not be loaded");
    ck_fails(dsrt_registry_load_plugin(fake, NULL), DSRT_CODE_INVALID_ARGUMENT, "libdsrt-fake.so");
    ck_fails(dsrt_registry_load_plugin(dir, NULL), DSRT_CODE_INVALID_ARGUMENT, "could not be loaded");
    unlink(fake);
    rmdir(dir);
    ck_fails(dsrt_backend_find("noenqueue", &found), DSRT_CODE_NOT_FOUND, "unknown backend"); /* refused ones stay out */
    ck_fails(dsrt_backend_find("badabi", &found), DSRT_CODE_NOT_FOUND, "unknown backend");

    /* The loaded backend works through the HAL like a built-in one. */
    int n = 0;
    ck_ok(dsrt_backend_device_count(b, &n));
    ck_assert_int_eq(n, 1);
    dsrt_device *pd = NULL, *cd = NULL;
    ck_ok(dsrt_device_open_by_name("testplug:0", &pd));
    ck_fails(dsrt_device_open_by_name("testplug:1", &cd), DSRT_CODE_OUT_OF_RANGE, "backend 'testplug' has 1 device(s)");
    ck_ok(dsrt_device_open_by_name("cpu", &cd));
    ck_assert_str_eq(dsrt_device_get_caps(pd)->name, "dsrt test plugin device");
    dsrt_buffer *pb = NULL, *cb = NULL;
    ck_fails(dsrt_buffer_alloc(pd, 1u << 20, &pb), DSRT_CODE_RESOURCE_EXHAUSTED, "exceeds the device's largest allocation (65536 bytes)");
    float host[16];
    ck_fails(dsrt_buffer_wrap_host(pd, host, sizeof host, 0, &pb), DSRT_CODE_UNIMPLEMENTED, "testplug:0 cannot address host memory directly");
    ck_ok(dsrt_buffer_alloc(pd, 256, &pb));
    ck_assert_ptr_null(dsrt_buffer_host_ptr(pb));
    ck_ok(dsrt_buffer_alloc(cd, 256, &cb));
    dsrt_stream *ps = new_stream(pd), *cs = new_stream(cd);
    ck_fails(dsrt_stream_begin_capture(ps), DSRT_CODE_UNIMPLEMENTED, "backend 'testplug' has no graph capture");
    /* Across backends: cpu -> plugin -> cpu through the host. */
    float in[64], out[64];
    for (int i = 0; i < 64; i++) in[i] = (float)i - 31.5f;
    ck_ok(dsrt_stream_write(cs, cb, 0, in, sizeof in));
    ck_ok(dsrt_stream_copy(cs, cb, 0, pb, 0, 256));
    float zero = 0;
    ck_ok(dsrt_stream_fill(cs, cb, 0, 256, &zero, 4));
    ck_ok(dsrt_stream_sync(cs)); /* the copy below runs on other streams */
    ck_ok(dsrt_stream_copy(ps, pb, 0, cb, 0, 256));
    ck_ok(dsrt_stream_read(cs, cb, 0, out, sizeof out));
    ck_ok(dsrt_stream_sync(cs));
    ck_assert_mem_eq(in, out, sizeof in);
    /* Ops it does not run are refused with its reason. */
    dsrt_tensor t;
    ck_ok(dsrt_tensor_make(pb, 0, DSRT_F32, 1, (int64_t[]){64}, &t));
    ck_fails(dsrt_add(ps, &t, &t, &t), DSRT_CODE_UNIMPLEMENTED, "add: not supported on testplug:0: the test plugin runs no ops");
    dsrt_stream_release(ps);
    dsrt_stream_release(cs);
    dsrt_buffer_release(pb);
    dsrt_buffer_release(cb);
    dsrt_device_release(pd);
    dsrt_device_release(cd);
}
END_TEST

START_TEST(test_plugin_env_path)
{
    /* A folder in DSRT_BACKEND_PATH: every libdsrt-*.so in it loads; a broken one is reported while the
     * others still load; loading again loads nothing twice. Missing entries are reported. */
    char env[1024];
    snprintf(env, sizeof env, "%s:/nonexistent-dsrt-dir", DSRT_TEST_PLUGIN_ENVDIR);
    ck_assert_int_eq(setenv("DSRT_BACKEND_PATH", env, 1), 0);
    dsrt_status st = dsrt_registry_load_env_plugins();
    ck_assert_ptr_nonnull(st);
    ck_assert_msg(strstr(dsrt_status_message(st), "libdsrt-badabi.so"), "%s", dsrt_status_message(st));
    dsrt_status_free(st);
    dsrt_backend *b = NULL;
    ck_ok(dsrt_backend_find("testenv", &b));
    int count = dsrt_backend_count();
    st = dsrt_registry_load_env_plugins();
    ck_assert_ptr_nonnull(st); /* still the bad ABI one */
    ck_assert_msg(strstr(dsrt_status_message(st), "already registered") == NULL, "%s", dsrt_status_message(st));
    dsrt_status_free(st);
    ck_assert_int_eq(dsrt_backend_count(), count);
    ck_assert_int_eq(setenv("DSRT_BACKEND_PATH", "/nonexistent-dsrt-dir", 1), 0);
    ck_fails(dsrt_registry_load_env_plugins(), DSRT_CODE_NOT_FOUND, "DSRT_BACKEND_PATH entry '/nonexistent-dsrt-dir' does not exist");
    ck_assert_int_eq(setenv("DSRT_BACKEND_PATH", "", 1), 0);
    ck_ok(dsrt_registry_load_env_plugins());
    dsrt_device *d = NULL;
    ck_ok(dsrt_device_open_by_name("testenv", &d));
    dsrt_device_release(d);
}
END_TEST

static Suite *hal_suite(void)
{
    Suite *s = suite_create("hal");
    TCase *tc = tcase_create("objects");
    tcase_add_test(tc, test_status_basics);
    tcase_add_test(tc, test_backend_lookup);
    tcase_add_test(tc, test_lifetimes_device_released_first);
    tcase_add_test(tc, test_lifetimes_any_order);
    tcase_add_test(tc, test_buffers_released_while_queued);
    tcase_add_test(tc, test_wrapped_host_buffers);
    tcase_add_test(tc, test_alloc_errors);
    tcase_add_test(tc, test_tensor_views);
    tcase_add_test(tc, test_tensor_scales);
    tcase_add_test(tc, test_transfers);
    tcase_add_test(tc, test_cross_device_copy);
    suite_add_tcase(s, tc);
    tc = tcase_create("validation");
    tcase_add_test(tc, test_op_validation_elementwise);
    tcase_add_test(tc, test_op_validation_linear);
    tcase_add_test(tc, test_op_validation_attention);
    tcase_add_test(tc, test_op_validation_moe_sample);
    tcase_add_test(tc, test_op_operands_on_another_device);
    suite_add_tcase(s, tc);
    tc = tcase_create("streams");
    tcase_add_test(tc, test_stream_event_ordering);
    tcase_add_test(tc, test_event_released_while_waited_on);
    tcase_add_test(tc, test_sticky_errors);
    tcase_add_test(tc, test_graph_capture_replay);
    suite_add_tcase(s, tc);
    tc = tcase_create("plugins");
    tcase_add_test(tc, test_plugins);
    tcase_add_test(tc, test_plugin_env_path);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return dsrt_run_suite(hal_suite()); }
