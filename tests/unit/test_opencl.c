/* The OpenCL backend against the CPU reference: every op runs on both devices with the same random
 * inputs over several shapes (dims that are not multiples of 128, strided views, bf16 outputs, FP8
 * weights with f32 and UE8M0 scales, paged caches) and the outputs are compared by normalized mean
 * squared error (1e-7 element-wise, 5e-4 GEMMs and attention) or exactly (indices). Also: device
 * enumeration and selection, the kernel cache, streams and events, and the error reports.
 *
 * Skips (printing why) only when no OpenCL device exists. Runs without forking so the devices open
 * once; prints the largest error seen per op at the end. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "dsrt/act_quant.h"
#include "dsrt/fp8.h"
#include "dsrt/half.h"
#include "hal_internal.h"
#include "testutil.h"

/* White-box checks read the backend's device record, which needs the OpenCL headers; a build without
 * them has no OpenCL backend to test. */
#if defined(__has_include)
#if __has_include(<CL/cl.h>)
#define DSRT_TEST_HAVE_CL 1
#endif
#endif

#ifndef DSRT_TEST_HAVE_CL
int main(void)
{
    printf("test_opencl: skipped: built without the OpenCL headers (no OpenCL backend)\n");
    return 0;
}
#else
#define CL_TARGET_OPENCL_VERSION 120
#include "opencl/ocl_internal.h"

#define TOL_EW 1e-7
#define TOL_MM 5e-4

static dsrt_device *g_cpu, *g_ocl;
static dsrt_stream *g_cs, *g_gs;
static dsrt_rng g_rng = {12345};
static double g_worst[DSRT_OP_COUNT];
static int g_cases[DSRT_OP_COUNT];

/* ---- tensors that exist on both devices ---- */

typedef struct {
    dsrt_tensor c, g; /* the same view on the CPU and on the OpenCL device */
    dsrt_buffer *cb, *gb, *csb, *gsb;
    size_t bytes, sbytes;
} tp;

static tp *tp_make(dsrt_dtype dt, int nd, const int64_t *shape, int64_t pad, int64_t off)
{
    tp *t = calloc(1, sizeof *t);
    int64_t stride[DSRT_MAX_DIMS], s = 1;
    for (int i = nd - 1; i >= 0; i--) {
        stride[i] = s;
        s *= (i == nd - 1 ? shape[i] + pad : shape[i]);
        if (s == 0) s = 1;
    }
    size_t es = dsrt_dtype_size(dt);
    t->bytes = (size_t)(s + off) * es + 64;
    ck_ok(dsrt_buffer_alloc(g_cpu, t->bytes, &t->cb));
    ck_ok(dsrt_buffer_alloc(g_ocl, t->bytes, &t->gb));
    ck_ok(dsrt_tensor_make_strided(t->cb, (size_t)off * es, dt, nd, shape, stride, &t->c));
    ck_ok(dsrt_tensor_make_strided(t->gb, (size_t)off * es, dt, nd, shape, stride, &t->g));
    /* zero both, so elements an op leaves alone compare equal */
    uint8_t z = 0;
    ck_ok(dsrt_stream_fill(g_cs, t->cb, 0, t->bytes, &z, 1));
    ck_ok(dsrt_stream_fill(g_gs, t->gb, 0, t->bytes, &z, 1));
    ck_ok(dsrt_stream_sync(g_cs));
    ck_ok(dsrt_stream_sync(g_gs));
    return t;
}

static tp *tp_new(dsrt_dtype dt, int nd, int64_t d0, int64_t d1, int64_t d2, int64_t d3)
{
    int64_t sh[4] = {d0, d1, d2, d3};
    return tp_make(dt, nd, sh, 0, 0);
}

static void sync_both(void)
{
    ck_ok(dsrt_stream_sync(g_cs));
    ck_ok(dsrt_stream_sync(g_gs));
}

static void tp_upload(tp *t, const void *host)
{
    ck_ok(dsrt_stream_write(g_cs, t->cb, 0, host, t->bytes));
    ck_ok(dsrt_stream_write(g_gs, t->gb, 0, host, t->bytes));
    sync_both();
}

/* Fills the whole buffer (padding too) with N(0, amp) values of the dtype. */
static void tp_rand(tp *t, float amp)
{
    uint8_t *h = malloc(t->bytes);
    dsrt_dtype dt = t->c.dtype;
    size_t es = dsrt_dtype_size(dt), n = t->bytes / es;
    for (size_t i = 0; i < n; i++) {
        float v = amp * dsrt_rng_normal(&g_rng);
        switch (dt) {
        case DSRT_F32: memcpy(h + 4 * i, &v, 4); break;
        case DSRT_BF16: {
            uint16_t b = dsrt_f32_to_bf16(v);
            memcpy(h + 2 * i, &b, 2);
            break;
        }
        case DSRT_F16: {
            uint16_t b = dsrt_f32_to_f16(v);
            memcpy(h + 2 * i, &b, 2);
            break;
        }
        case DSRT_E4M3: h[i] = dsrt_f32_to_e4m3(v); break;
        case DSRT_E5M2: h[i] = dsrt_f32_to_e5m2_sat(v); break;
        case DSRT_I32: {
            int32_t x = (int32_t)(dsrt_rng_next(&g_rng) % 1000);
            memcpy(h + 4 * i, &x, 4);
            break;
        }
        default: h[i] = (uint8_t)dsrt_rng_next(&g_rng); break;
        }
    }
    tp_upload(t, h);
    free(h);
}

/* Element offset of logical element i (row-major over the view). */
static int64_t tp_at(const dsrt_tensor *t, int64_t i)
{
    int64_t off = 0;
    for (int d = t->ndim - 1; d >= 0; d--) {
        off += (i % t->shape[d]) * t->stride[d];
        i /= t->shape[d];
    }
    return off;
}

/* Sets the logical elements of an i32 tensor. */
static void tp_i32(tp *t, const int32_t *v)
{
    int32_t *h = calloc(1, t->bytes);
    int64_t n = dsrt_tensor_numel(&t->c);
    for (int64_t i = 0; i < n; i++) h[t->c.offset / 4 + tp_at(&t->c, i)] = v[i];
    tp_upload(t, h);
    free(h);
}

static void tp_f32(tp *t, const float *v)
{
    float *h = calloc(1, t->bytes);
    int64_t n = dsrt_tensor_numel(&t->c);
    for (int64_t i = 0; i < n; i++) h[t->c.offset / 4 + tp_at(&t->c, i)] = v[i];
    tp_upload(t, h);
    free(h);
}

/* A scale companion (br x bc blocks): ue8m0 exponents around 2^0, or f32 scales in [0.5, 2). */
static void tp_scale(tp *t, dsrt_dtype sdt, int br, int bc, bool random)
{
    dsrt_tensor tmp = t->c;
    tmp.scale.buf = t->cb;
    tmp.scale.block[0] = br;
    tmp.scale.block[1] = bc;
    int64_t n = dsrt_tensor_scale_numel(&tmp);
    t->sbytes = (size_t)n * dsrt_dtype_size(sdt) + 16;
    ck_ok(dsrt_buffer_alloc(g_cpu, t->sbytes, &t->csb));
    ck_ok(dsrt_buffer_alloc(g_ocl, t->sbytes, &t->gsb));
    ck_ok(dsrt_tensor_set_scale(&t->c, t->csb, 0, sdt, br, bc));
    ck_ok(dsrt_tensor_set_scale(&t->g, t->gsb, 0, sdt, br, bc));
    uint8_t *h = calloc(1, t->sbytes);
    if (random)
        for (int64_t i = 0; i < n; i++) {
            if (sdt == DSRT_UE8M0) h[i] = (uint8_t)(122 + dsrt_rng_next(&g_rng) % 8);
            else {
                float f = 0.5f + 1.5f * dsrt_rng_uniform(&g_rng);
                memcpy(h + 4 * i, &f, 4);
            }
        }
    ck_ok(dsrt_stream_write(g_cs, t->csb, 0, h, t->sbytes));
    ck_ok(dsrt_stream_write(g_gs, t->gsb, 0, h, t->sbytes));
    sync_both();
    free(h);
}

/* Fills both copies with 0xff bytes (NaN for floats): an element an op should write but does not shows. */
static void tp_poison(tp *t)
{
    uint8_t ff = 0xff;
    ck_ok(dsrt_stream_fill(g_cs, t->cb, 0, t->bytes, &ff, 1));
    ck_ok(dsrt_stream_fill(g_gs, t->gb, 0, t->bytes, &ff, 1));
    sync_both();
}

static void tp_free(tp *t)
{
    if (!t) return;
    dsrt_buffer_release(t->cb);
    dsrt_buffer_release(t->gb);
    dsrt_buffer_release(t->csb);
    dsrt_buffer_release(t->gsb);
    free(t);
}

static float host_ld(const uint8_t *base, dsrt_dtype dt, int64_t i)
{
    switch (dt) {
    case DSRT_F32: {
        float f;
        memcpy(&f, base + 4 * i, 4);
        return f;
    }
    case DSRT_BF16: {
        uint16_t h;
        memcpy(&h, base + 2 * i, 2);
        return dsrt_bf16_to_f32(h);
    }
    case DSRT_F16: {
        uint16_t h;
        memcpy(&h, base + 2 * i, 2);
        return dsrt_f16_to_f32(h);
    }
    case DSRT_E4M3: return dsrt_e4m3_values[base[i]];
    case DSRT_E5M2: return dsrt_e5m2_values[base[i]];
    case DSRT_I32: {
        int32_t x;
        memcpy(&x, base + 4 * i, 4);
        return (float)x;
    }
    default: return (float)base[i];
    }
}

/* Reads back both copies of t's logical elements as floats. */
static int64_t tp_read(tp *t, float **cv, float **gv)
{
    uint8_t *hc = malloc(t->bytes), *hg = malloc(t->bytes);
    ck_ok(dsrt_stream_read(g_cs, t->cb, 0, hc, t->bytes));
    ck_ok(dsrt_stream_read(g_gs, t->gb, 0, hg, t->bytes));
    sync_both();
    int64_t n = dsrt_tensor_numel(&t->c);
    *cv = malloc(sizeof(float) * (size_t)(n + 1));
    *gv = malloc(sizeof(float) * (size_t)(n + 1));
    for (int64_t i = 0; i < n; i++) {
        int64_t e = tp_at(&t->c, i);
        (*cv)[i] = host_ld(hc + t->c.offset, t->c.dtype, e);
        (*gv)[i] = host_ld(hg + t->c.offset, t->c.dtype, e);
    }
    free(hc);
    free(hg);
    return n;
}

static double nmse(const float *ref, const float *got, int64_t n, int64_t *nan_mismatch)
{
    double num = 0, den = 0;
    *nan_mismatch = 0;
    for (int64_t i = 0; i < n; i++) {
        if (isnan(ref[i]) || isnan(got[i])) {
            if (isnan(ref[i]) != isnan(got[i])) (*nan_mismatch)++;
            continue;
        }
        if (isinf(ref[i]) || isinf(got[i])) {
            if (ref[i] != got[i]) (*nan_mismatch)++;
            continue;
        }
        double d = (double)ref[i] - (double)got[i];
        num += d * d;
        den += (double)ref[i] * (double)ref[i];
    }
    return den > 0 ? num / den : num;
}

static void check_close(dsrt_op_kind k, const char *what, tp *t, double tol)
{
    float *c, *g;
    int64_t n = tp_read(t, &c, &g), bad;
    double e = nmse(c, g, n, &bad);
    if (e > g_worst[k]) g_worst[k] = e;
    g_cases[k]++;
    if (!(e <= tol) || bad) {
        int64_t worst = 0;
        for (int64_t i = 0; i < n; i++)
            if (fabsf(c[i] - g[i]) > fabsf(c[worst] - g[worst]) || (isnan(c[i]) != isnan(g[i]))) worst = i;
        ck_abort_msg("%s %s: nmse %.3g (limit %.1g), %lld inf/nan mismatches; e.g. [%lld] cpu %.9g opencl %.9g",
                     dsrt_op_name(k), what, e, tol, (long long)bad, (long long)worst, (double)c[worst],
                     (double)g[worst]);
    }
    free(c);
    free(g);
}

static void check_exact(dsrt_op_kind k, const char *what, tp *t)
{
    float *c, *g;
    int64_t n = tp_read(t, &c, &g);
    g_cases[k]++;
    if (getenv("DSRT_TEST_VERBOSE")) {
        printf("%s %s cpu/opencl:", dsrt_op_name(k), what);
        for (int64_t i = 0; i < n && i < 48; i++) printf(" %g/%g", (double)c[i], (double)g[i]);
        printf("\n");
    }
    for (int64_t i = 0; i < n; i++)
        if (c[i] != g[i] && !(isnan(c[i]) && isnan(g[i])))
            ck_abort_msg("%s %s: element %lld differs: cpu %.9g opencl %.9g", dsrt_op_name(k), what, (long long)i,
                         (double)c[i], (double)g[i]);
    free(c);
    free(g);
}

/* Runs op (kind and parameters set) with the given operands on both devices. */
static void run(dsrt_op op, tp *const *in, int nin, tp *const *out, int nout)
{
    dsrt_op c = op, g = op;
    for (int i = 0; i < nin; i++) {
        if (!in[i]) continue;
        c.in[i] = in[i]->c;
        g.in[i] = in[i]->g;
    }
    for (int i = 0; i < nout; i++) {
        if (!out[i]) continue;
        c.out[i] = out[i]->c;
        g.out[i] = out[i]->g;
    }
    ck_ok(dsrt_enqueue(g_cs, &c));
    ck_ok(dsrt_enqueue(g_gs, &g));
    sync_both();
}

#define RUN(op, ins, outs) run((op), ins, (int)(sizeof ins / sizeof ins[0]), outs, (int)(sizeof outs / sizeof outs[0]))

static void setup(void)
{
    if (g_ocl) return;
    ck_ok(dsrt_device_open_by_name("cpu", &g_cpu));
    ck_ok(dsrt_device_open_by_name("opencl:0", &g_ocl));
    ck_ok(dsrt_stream_create(g_cpu, &g_cs));
    ck_ok(dsrt_stream_create(g_ocl, &g_gs));
}

/* ---- devices, cache, streams, errors ---- */

START_TEST(test_device_caps)
{
    const dsrt_device_caps *c = dsrt_device_get_caps(g_ocl);
    ck_assert(c->name[0] && c->vendor[0] && c->driver[0]);
    ck_assert(c->memory_bytes > 0 && c->max_alloc_bytes > 0 && c->local_mem_bytes > 0);
    ck_assert(c->compute_units > 0 && c->max_work_group > 0);
    printf("opencl:0 = %s (%s, driver %s): %d CUs, local %llu B, max WG %d, subgroup %d, fp16 %s, unified %s\n",
           c->name, c->vendor, c->driver, c->compute_units, (unsigned long long)c->local_mem_bytes, c->max_work_group,
           c->subgroup_size, c->native_fp16 ? "yes" : "no", c->unified_memory ? "yes" : "no");
    char cmd[1024], out[8192] = "";
    snprintf(cmd, sizeof cmd, "%s/dsrt devices 2>&1", DSRT_BINARY_DIR);
    FILE *f = popen(cmd, "r");
    ck_assert(f != NULL);
    size_t n = fread(out, 1, sizeof out - 1, f);
    out[n] = 0;
    pclose(f);
    ck_assert_msg(strstr(out, "opencl:0") != NULL, "dsrt devices does not list opencl:0:\n%s", out);
}
END_TEST

/* Output (stdout and stderr) of `env dsrt ARGS`. */
static void run_dsrt(const char *env, const char *args, char *out, size_t len)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s %s/dsrt %s 2>&1", env, DSRT_BINARY_DIR, args);
    FILE *f = popen(cmd, "r");
    ck_assert(f != NULL);
    size_t n = fread(out, 1, len - 1, f);
    out[n] = 0;
    pclose(f);
}

static void run_cmd(const char *env, char *out, size_t len) { run_dsrt(env, "devices", out, len); }

/* DSRT_OPENCL_PROFILE=1: the kernels a run launched, with their device time, printed at stream release;
 * DSRT_OPENCL_TRACE=1: each launch as it is enqueued. */
START_TEST(test_profile)
{
    char out[16384];
    run_dsrt("DSRT_OPENCL_PROFILE=1", "conform --backend opencl:0 --quick --ops rms_norm,topk", out, sizeof out);
    ck_assert_msg(strstr(out, "opencl profile of a stream on") != NULL, "no profile printed:\n%s", out);
    const char *t = strstr(out, "  rms_norm "), *k = strstr(out, "  topk ");
    ck_assert_msg(t && k, "rms_norm and topk missing from the profile:\n%s", out);
    long calls = 0;
    double total = -1, mean = -1;
    ck_assert_msg(sscanf(t, " rms_norm %ld %lf %lf", &calls, &total, &mean) == 3 && calls > 0 && total > 0 && mean > 0,
                  "bad profile line: %.80s", t);
    run_dsrt("", "conform --backend opencl:0 --quick --ops rms_norm", out, sizeof out);
    ck_assert_msg(strstr(out, "opencl profile") == NULL, "profile printed without DSRT_OPENCL_PROFILE:\n%s", out);
    ck_assert_msg(strstr(out, "dsrt opencl: launch") == NULL, "launches printed without DSRT_OPENCL_TRACE:\n%s", out);
    /* DSRT_OPENCL_TRACE=1: each launch named before it is enqueued */
    run_dsrt("DSRT_OPENCL_TRACE=1", "conform --backend opencl:0 --quick --ops add", out, sizeof out);
    ck_assert_msg(strstr(out, "dsrt opencl: launch add global ") != NULL, "no launch trace:\n%s", out);
}
END_TEST

START_TEST(test_selection_and_errors)
{
    char out[8192];
    /* no platform at all: the backend reports 0 devices and why, in one line */
    run_cmd("OCL_ICD_VENDORS=/nonexistent-dsrt-vendors", out, sizeof out);
    ck_assert_msg(strstr(out, "opencl: no device (no OpenCL platform found") != NULL, "got:\n%s", out);
    /* selection by name substring and by index; a selector that matches nothing says what exists */
    run_cmd("DSRT_OPENCL_DEVICE=no-such-device", out, sizeof out);
    ck_assert_msg(strstr(out, "DSRT_OPENCL_DEVICE='no-such-device' matches none of the devices") != NULL, "got:\n%s", out);
    run_cmd("DSRT_OPENCL_PLATFORM=no-such-platform", out, sizeof out);
    ck_assert_msg(strstr(out, "matches none of the platforms") != NULL, "got:\n%s", out);
    run_cmd("DSRT_OPENCL_PLATFORM=0 DSRT_OPENCL_DEVICE=0", out, sizeof out);
    ck_assert_msg(strstr(out, "opencl:0") != NULL, "got:\n%s", out);
    char sel[200];
    snprintf(sel, sizeof sel, "DSRT_OPENCL_DEVICE='%.40s'", dsrt_device_get_caps(g_ocl)->name);
    run_cmd(sel, out, sizeof out);
    ck_assert_msg(strstr(out, "opencl:0") != NULL, "got:\n%s", out);

    /* device index out of range */
    dsrt_device *d = NULL;
    ck_fails(dsrt_device_open_by_name("opencl:99", &d), DSRT_CODE_OUT_OF_RANGE, "out of range");
    /* an allocation above CL_DEVICE_MAX_MEM_ALLOC_SIZE */
    dsrt_buffer *b = NULL;
    ck_fails(dsrt_buffer_alloc(g_ocl, (size_t)dsrt_device_get_caps(g_ocl)->max_alloc_bytes + 1, &b),
             DSRT_CODE_RESOURCE_EXHAUSTED, "largest allocation");
    /* a kernel that fails to build: the message carries the driver's build log */
    setenv("DSRT_OPENCL_BUILD_OPTIONS", "-DDSRT_FORCE_BUILD_ERROR", 1);
    dsrt_status st = dsrt_device_open_by_name("opencl:0", &d);
    unsetenv("DSRT_OPENCL_BUILD_OPTIONS");
    ck_assert_msg(st != DSRT_OK, "a forced build error did not fail");
    ck_assert_int_eq(dsrt_status_code(st), DSRT_CODE_DEVICE);
    ck_assert_msg(strstr(dsrt_status_message(st), "build log") && strstr(dsrt_status_message(st), "DSRT_FORCE_BUILD_ERROR"),
                  "message lacks the build log: %s", dsrt_status_message(st));
    dsrt_status_free(st);
    /* an op the device cannot run says why */
    dsrt_op op = dsrt_op_init(DSRT_OP_TOPK);
    tp *sc = tp_new(DSRT_F32, 2, 1, 1 << 20, 0, 0), *ix = tp_new(DSRT_I32, 2, 1, 1 << 20, 0, 0);
    op.p.k = 1 << 20;
    op.in[0] = sc->g;
    op.out[0] = ix->g;
    if (dsrt_device_get_caps(g_ocl)->local_mem_bytes < (8u << 20))
        ck_fails(dsrt_device_supports(g_ocl, &op), DSRT_CODE_UNIMPLEMENTED, "local memory can sort");
    tp_free(sc);
    tp_free(ix);
}
END_TEST

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

START_TEST(test_kernel_cache)
{
    char dir[256];
    snprintf(dir, sizeof dir, "%s/opencl-cache-test-%ld", DSRT_BINARY_DIR, (long)getpid());
    setenv("DSRT_OPENCL_CACHE", dir, 1);
    double t0 = now_s();
    dsrt_device *a = NULL, *b = NULL;
    ck_ok(dsrt_device_open_by_name("opencl:0", &a));
    double t1 = now_s();
    ck_ok(dsrt_device_open_by_name("opencl:0", &b));
    double t2 = now_s();
    unsetenv("DSRT_OPENCL_CACHE");
    const dsrt_ocl_device *da = a->dctx, *db = b->dctx;
    ck_assert_msg(!da->from_cache, "a fresh cache directory already held the program");
    ck_assert_msg(db->from_cache, "the second start did not use the cached binary %s", db->cache_path);
    struct stat sb;
    ck_assert_msg(stat(db->cache_path, &sb) == 0 && sb.st_size > 0, "no cache file at %s", db->cache_path);
    printf("kernel cache: first start %.3f s (program %.3f s, compiled), second start %.3f s (program %.3f s, "
           "from %s, %lld bytes)\n",
           t1 - t0, da->build_seconds, t2 - t1, db->build_seconds, db->cache_path, (long long)sb.st_size);
    dsrt_device_release(a);
    dsrt_device_release(b);
    remove(db->cache_path);
    rmdir(dir);
}
END_TEST

START_TEST(test_streams_events)
{
    const size_t n = 1 << 16;
    uint8_t *h = malloc(n), *r = malloc(n);
    for (size_t i = 0; i < n; i++) h[i] = (uint8_t)(i * 7 + 3);
    dsrt_buffer *b;
    ck_ok(dsrt_buffer_alloc(g_ocl, n, &b));
    dsrt_stream *s2;
    ck_ok(dsrt_stream_create(g_ocl, &s2));
    dsrt_event *e;
    ck_ok(dsrt_event_create(g_ocl, &e));
    ck_ok(dsrt_stream_write(g_gs, b, 0, h, n));
    ck_ok(dsrt_event_record(e, g_gs));
    ck_ok(dsrt_stream_wait_event(s2, e));
    /* overlapping copy inside one buffer behaves like memmove */
    ck_ok(dsrt_stream_copy(s2, b, 0, b, 100, 1000));
    uint16_t pat = 0xabcd;
    ck_ok(dsrt_stream_fill(s2, b, 4096, 512, &pat, 2));
    ck_ok(dsrt_stream_read(s2, b, 0, r, n));
    ck_ok(dsrt_stream_sync(s2));
    bool done = false;
    ck_ok(dsrt_event_query(e, &done));
    ck_assert(done);
    memmove(h + 100, h, 1000);
    for (size_t i = 4096; i < 4096 + 512; i += 2) memcpy(h + i, &pat, 2);
    ck_assert(memcmp(h, r, n) == 0);
    dsrt_event_release(e);
    dsrt_stream_release(s2);
    dsrt_buffer_release(b);
    free(h);
    free(r);
}
END_TEST

/* ---- element-wise and row ops ---- */

START_TEST(test_convert)
{
    struct {
        dsrt_dtype x, y;
        int nd;
        int64_t sh[4], pad;
    } cases[] = {
        {DSRT_F32, DSRT_BF16, 2, {7, 300}, 3}, {DSRT_BF16, DSRT_F32, 3, {3, 5, 129}, 0},
        {DSRT_F32, DSRT_F16, 2, {4, 77}, 1},   {DSRT_F16, DSRT_F32, 1, {1000}, 0},
        {DSRT_F32, DSRT_E4M3, 2, {6, 200}, 0}, {DSRT_E5M2, DSRT_F32, 2, {3, 64}, 0},
        {DSRT_BF16, DSRT_F16, 4, {2, 3, 4, 33}, 2}, {DSRT_I32, DSRT_I32, 2, {5, 17}, 4},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        tp *x = tp_make(cases[i].x, cases[i].nd, cases[i].sh, cases[i].pad, 0);
        tp *y = tp_make(cases[i].y, cases[i].nd, cases[i].sh, 0, 0);
        tp_rand(x, 3.0f);
        tp *in[] = {x}, *out[] = {y};
        RUN(dsrt_op_init(DSRT_OP_CONVERT), in, out);
        check_close(DSRT_OP_CONVERT, dsrt_dtype_name(cases[i].y), y, TOL_EW);
        tp_free(x);
        tp_free(y);
    }
    /* FP8 weights with scale companions: 128x128 ue8m0 and f32, rank 2 and stacked rank 3 */
    int64_t s2[2] = {300, 260}, s3[3] = {3, 130, 200};
    for (int r = 0; r < 2; r++)
        for (int f = 0; f < 2; f++) {
            int64_t *sh = r ? s3 : s2;
            tp *x = tp_make(DSRT_E4M3, r ? 3 : 2, sh, 0, 0), *y = tp_make(f ? DSRT_BF16 : DSRT_F32, r ? 3 : 2, sh, 0, 0);
            tp_rand(x, 50.0f);
            tp_scale(x, f ? DSRT_F32 : DSRT_UE8M0, 128, 128, true);
            tp *in[] = {x}, *out[] = {y};
            RUN(dsrt_op_init(DSRT_OP_CONVERT), in, out);
            check_close(DSRT_OP_CONVERT, "e4m3 with scales", y, TOL_EW);
            tp_free(x);
            tp_free(y);
        }
}
END_TEST

START_TEST(test_embed)
{
    tp *tab = tp_new(DSRT_BF16, 2, 50, 130, 0, 0), *ids = tp_new(DSRT_I32, 1, 9, 0, 0, 0);
    tp *y = tp_new(DSRT_F32, 2, 9, 130, 0, 0);
    tp_rand(tab, 1.0f);
    int32_t iv[9] = {0, 49, 3, -1, 50, 7, 7, 12, 1000};
    tp_i32(ids, iv);
    tp *in[] = {tab, ids}, *out[] = {y};
    RUN(dsrt_op_init(DSRT_OP_EMBED), in, out);
    check_close(DSRT_OP_EMBED, "bf16 table", y, TOL_EW);
    tp_free(tab);
    tp_free(ids);
    tp_free(y);
}
END_TEST

START_TEST(test_norms)
{
    int64_t shapes[][2] = {{5, 300}, {1, 7168}, {3, 64}};
    for (int i = 0; i < 3; i++) {
        int64_t M = shapes[i][0], D = shapes[i][1], sh[2] = {M, D}, w1[1] = {D};
        tp *x = tp_make(DSRT_BF16, 2, sh, 5, 0), *w = tp_make(DSRT_F32, 1, w1, 0, 0), *res = tp_make(DSRT_BF16, 2, sh, 0, 0);
        tp *y = tp_make(i == 1 ? DSRT_F32 : DSRT_BF16, 2, sh, 0, 0);
        tp_rand(x, 2.0f);
        tp_rand(w, 1.0f);
        tp_rand(res, 2.0f);
        dsrt_op op = dsrt_op_init(DSRT_OP_RMS_NORM);
        op.p.eps = 1e-6f;
        /* residual_out aliases residual: the norm must read the fp32 sum */
        tp *in[] = {x, w, res}, *out[] = {y, res};
        RUN(op, in, out);
        check_close(DSRT_OP_RMS_NORM, "with residual", y, TOL_EW);
        check_close(DSRT_OP_RMS_NORM, "residual_out", res, TOL_EW);
        tp *in2[] = {x, w}, *out2[] = {y};
        RUN(op, in2, out2);
        check_close(DSRT_OP_RMS_NORM, "plain", y, TOL_EW);
        tp *b = tp_make(DSRT_F32, 1, w1, 0, 0);
        tp_rand(b, 1.0f);
        dsrt_op ln = dsrt_op_init(DSRT_OP_LAYER_NORM);
        tp *in3[] = {x, w, b}, *out3[] = {y};
        RUN(ln, in3, out3);
        check_close(DSRT_OP_LAYER_NORM, "bias", y, TOL_EW);
        tp_free(x);
        tp_free(w);
        tp_free(res);
        tp_free(y);
        tp_free(b);
    }
}
END_TEST

START_TEST(test_rope)
{
    int64_t P = 40, R = 64;
    tp *cs = tp_new(DSRT_F32, 3, P, R / 2, 2, 0);
    float *tab = malloc(sizeof(float) * (size_t)(P * R));
    for (int64_t p = 0; p < P; p++)
        for (int64_t i = 0; i < R / 2; i++) {
            float th = (float)p * powf(10000.0f, -2.0f * (float)i / (float)R);
            tab[(p * R / 2 + i) * 2] = cosf(th);
            tab[(p * R / 2 + i) * 2 + 1] = sinf(th);
        }
    tp_f32(cs, tab);
    free(tab);
    int32_t pos[6] = {0, 5, 39, -1, 40, 17};
    tp *ps = tp_new(DSRT_I32, 1, 6, 0, 0, 0);
    tp_i32(ps, pos);
    for (int inter = 0; inter < 2; inter++) {
        int64_t s3[3] = {6, 3, R}, s2[2] = {6, R};
        tp *x = tp_make(DSRT_BF16, 3, s3, 8, 0), *y = tp_make(DSRT_BF16, 3, s3, 0, 0);
        tp_rand(x, 1.0f);
        dsrt_op op = dsrt_op_init(DSRT_OP_ROPE);
        op.p.interleaved = inter;
        tp *in[] = {x, ps, cs}, *out[] = {y};
        RUN(op, in, out);
        check_close(DSRT_OP_ROPE, "[T,H,R]", y, TOL_EW);
        tp *x2 = tp_make(DSRT_F32, 2, s2, 0, 0);
        tp_rand(x2, 1.0f);
        tp *in2[] = {x2, ps, cs}, *out2[] = {x2}; /* in place */
        RUN(op, in2, out2);
        check_close(DSRT_OP_ROPE, "[T,R] in place", x2, TOL_EW);
        tp_free(x);
        tp_free(y);
        tp_free(x2);
    }
    tp_free(cs);
    tp_free(ps);
}
END_TEST

START_TEST(test_elementwise)
{
    int64_t sh[2] = {5, 2048 + 7};
    tp *g = tp_make(DSRT_BF16, 2, sh, 3, 0), *u = tp_make(DSRT_BF16, 2, sh, 0, 0), *y = tp_make(DSRT_BF16, 2, sh, 0, 0);
    tp_rand(g, 3.0f);
    tp_rand(u, 1.0f);
    tp *in[] = {g, u}, *out[] = {y};
    RUN(dsrt_op_init(DSRT_OP_SWIGLU), in, out);
    check_close(DSRT_OP_SWIGLU, "bf16", y, TOL_EW);
    int64_t s4[4] = {2, 3, 4, 100};
    tp *a = tp_make(DSRT_F32, 4, s4, 4, 0), *b = tp_make(DSRT_BF16, 4, s4, 0, 0);
    tp_rand(a, 1.0f);
    tp_rand(b, 1.0f);
    tp *in2[] = {a, b}, *out2[] = {a}; /* y aliases a */
    RUN(dsrt_op_init(DSRT_OP_ADD), in2, out2);
    check_close(DSRT_OP_ADD, "rank 4 in place", a, TOL_EW);
    tp_free(g);
    tp_free(u);
    tp_free(y);
    tp_free(a);
    tp_free(b);
}
END_TEST

START_TEST(test_act_quant_hadamard)
{
    struct {
        int64_t M, K;
        int blk;
        dsrt_dtype sdt;
        bool pow2;
    } cases[] = {{3, 512, 128, DSRT_UE8M0, true}, {4, 300, 128, DSRT_F32, false}, {2, 200, 64, DSRT_F32, true}};
    for (int i = 0; i < 3; i++) {
        int64_t sh[2] = {cases[i].M, cases[i].K};
        tp *x = tp_make(DSRT_BF16, 2, sh, 2, 0), *q = tp_make(DSRT_E4M3, 2, sh, 0, 0);
        tp_rand(x, 5.0f);
        tp_scale(q, cases[i].sdt, 1, cases[i].blk, false);
        dsrt_op op = dsrt_op_init(DSRT_OP_ACT_QUANT);
        op.p.scale_pow2 = cases[i].pow2;
        tp *in[] = {x}, *out[] = {q};
        RUN(op, in, out);
        check_exact(DSRT_OP_ACT_QUANT, "codes", q);
        /* scales: compare the companion buffers byte for byte */
        uint8_t *hc = malloc(q->sbytes), *hg = malloc(q->sbytes);
        ck_ok(dsrt_stream_read(g_cs, q->csb, 0, hc, q->sbytes));
        ck_ok(dsrt_stream_read(g_gs, q->gsb, 0, hg, q->sbytes));
        sync_both();
        ck_assert_msg(memcmp(hc, hg, q->sbytes) == 0, "act_quant scales differ");
        free(hc);
        free(hg);
        tp_free(x);
        tp_free(q);
    }
    for (int n = 16; n <= 256; n *= 4) {
        int64_t sh[2] = {7, n};
        tp *x = tp_make(DSRT_BF16, 2, sh, 1, 0), *y = tp_make(DSRT_F32, 2, sh, 0, 0);
        tp_rand(x, 1.0f);
        tp *in[] = {x}, *out[] = {y};
        RUN(dsrt_op_init(DSRT_OP_HADAMARD), in, out);
        check_close(DSRT_OP_HADAMARD, "rows", y, TOL_EW);
        tp_free(x);
        tp_free(y);
    }
}
END_TEST

/* ---- linear layers ---- */

static void linear_case(int64_t M, int64_t K, int64_t N, dsrt_dtype xdt, dsrt_dtype wdt, dsrt_dtype sdt, int bc,
                        dsrt_dtype ydt, bool act, bool pow2, float alpha, int64_t xpad, int64_t woff)
{
    int64_t xs[2] = {M, K}, ws[2] = {N, K}, ys[2] = {M, N};
    tp *x = tp_make(xdt, 2, xs, xpad, 0), *w = tp_make(wdt, 2, ws, 0, woff), *y = tp_make(ydt, 2, ys, 0, 0);
    tp_rand(x, 1.0f);
    tp_rand(w, wdt == DSRT_E4M3 ? 60.0f : 0.05f);
    if (wdt == DSRT_E4M3) tp_scale(w, sdt, 128, bc, true);
    tp_poison(y);
    dsrt_op op = dsrt_op_init(DSRT_OP_LINEAR);
    op.p.act_quant = act;
    op.p.scale_pow2 = pow2;
    op.p.alpha = alpha;
    tp *in[] = {x, w}, *out[] = {y};
    RUN(op, in, out);
    char what[160];
    snprintf(what, sizeof what, "M=%lld K=%lld N=%lld x %s w %s%s%s y %s%s", (long long)M, (long long)K, (long long)N,
             dsrt_dtype_name(xdt), dsrt_dtype_name(wdt), wdt == DSRT_E4M3 ? " scales " : "",
             wdt == DSRT_E4M3 ? dsrt_dtype_name(sdt) : "", dsrt_dtype_name(ydt), act ? " act_quant" : "");
    check_close(DSRT_OP_LINEAR, what, y, TOL_MM);
    tp_free(x);
    tp_free(w);
    tp_free(y);
}

START_TEST(test_linear)
{
    /* decode GEMV, FP8 weights, official FP8 GEMM with UE8M0 scales */
    linear_case(1, 512, 300, DSRT_BF16, DSRT_E4M3, DSRT_UE8M0, 128, DSRT_BF16, true, true, 1.0f, 0, 0);
    linear_case(3, 384, 130, DSRT_BF16, DSRT_E4M3, DSRT_F32, 128, DSRT_F32, true, false, 1.0f, 8, 0);
    /* dequantized FP8 (f32 scales), K not a multiple of 16, odd weight offset: scalar path */
    linear_case(2, 200, 70, DSRT_F32, DSRT_E4M3, DSRT_F32, 128, DSRT_BF16, false, false, 0.5f, 3, 5);
    linear_case(4, 256, 129, DSRT_F16, DSRT_E4M3, DSRT_UE8M0, 64, DSRT_F32, false, false, 1.0f, 0, 0);
    /* float weights: bf16, f16, f32 */
    linear_case(2, 320, 33, DSRT_BF16, DSRT_BF16, DSRT_F32, 128, DSRT_BF16, false, false, 1.0f, 0, 0);
    linear_case(5, 96, 40, DSRT_F32, DSRT_F16, DSRT_F32, 128, DSRT_F32, false, false, 2.0f, 0, 0);
    linear_case(1, 128, 64, DSRT_F32, DSRT_F32, DSRT_F32, 128, DSRT_F32, false, false, 1.0f, 0, 0);
    /* few output rows, long K: split-K */
    linear_case(1, 4096, 3, DSRT_BF16, DSRT_E4M3, DSRT_UE8M0, 128, DSRT_BF16, true, true, 1.0f, 0, 0);
    linear_case(2, 4096, 5, DSRT_F32, DSRT_BF16, DSRT_F32, 128, DSRT_F32, false, false, 1.0f, 0, 0);
    /* many rows: tiled GEMM (FP8, act and dequantized) and CLBlast SGEMM where built */
    linear_case(70, 256, 100, DSRT_BF16, DSRT_E4M3, DSRT_UE8M0, 128, DSRT_BF16, true, true, 1.0f, 0, 0);
    linear_case(33, 200, 65, DSRT_F32, DSRT_E4M3, DSRT_F32, 128, DSRT_F32, false, false, 1.0f, 4, 0);
    linear_case(40, 200, 70, DSRT_F32, DSRT_F32, DSRT_F32, 128, DSRT_F32, false, false, 0.25f, 2, 0);
    linear_case(20, 100, 30, DSRT_BF16, DSRT_BF16, DSRT_F32, 128, DSRT_BF16, false, false, 1.0f, 0, 0);
}
END_TEST

/* The FP8 GEMV with the other decoder (table vs integer ops) on a second instance of the device. */
START_TEST(test_linear_fp8_decoders)
{
    const dsrt_ocl_device *d = g_ocl->dctx;
    setenv("DSRT_OPENCL_FP8_DECODE", d->cfg.fp8_arith ? "table" : "arith", 1);
    dsrt_device *other = NULL;
    dsrt_status st = dsrt_device_open_by_name("opencl:0", &other);
    unsetenv("DSRT_OPENCL_FP8_DECODE");
    ck_ok(st);
    const dsrt_ocl_device *od = other->dctx;
    if (!od->info->denorms && od->cfg.fp8_arith) {
        dsrt_device_release(other);
        return; /* the integer decoder needs denormals */
    }
    dsrt_device *keep = g_ocl;
    dsrt_stream *keep_s = g_gs;
    g_ocl = other;
    ck_ok(dsrt_stream_create(other, &g_gs));
    linear_case(2, 1024, 200, DSRT_BF16, DSRT_E4M3, DSRT_UE8M0, 128, DSRT_BF16, true, true, 1.0f, 0, 0);
    linear_case(1, 256, 64, DSRT_F32, DSRT_E4M3, DSRT_F32, 128, DSRT_F32, false, false, 1.0f, 0, 0);
    dsrt_stream_release(g_gs);
    g_gs = keep_s;
    g_ocl = keep;
    dsrt_device_release(other);
}
END_TEST

static void grouped_case(int64_t G, int64_t R, int64_t K, int64_t N, const int32_t *off, bool act, dsrt_dtype wdt)
{
    int64_t xs[2] = {R, K}, ws[3] = {G, N, K}, ys[2] = {R, N}, os[1] = {G + 1};
    tp *x = tp_make(DSRT_BF16, 2, xs, 0, 0), *w = tp_make(wdt, 3, ws, 0, 0), *y = tp_make(DSRT_BF16, 2, ys, 0, 0);
    tp *o = tp_make(DSRT_I32, 1, os, 0, 0);
    tp_rand(x, 1.0f);
    tp_rand(w, wdt == DSRT_E4M3 ? 60.0f : 0.05f);
    if (wdt == DSRT_E4M3) tp_scale(w, act ? DSRT_UE8M0 : DSRT_F32, 128, 128, true);
    tp_i32(o, off);
    tp_poison(y);
    dsrt_op op = dsrt_op_init(DSRT_OP_LINEAR_GROUPED);
    op.p.act_quant = act;
    op.p.scale_pow2 = act;
    tp *in[] = {x, w, o}, *out[] = {y};
    RUN(op, in, out);
    char what[96];
    snprintf(what, sizeof what, "G=%lld R=%lld K=%lld N=%lld %s%s", (long long)G, (long long)R, (long long)K,
             (long long)N, dsrt_dtype_name(wdt), act ? " act_quant" : "");
    check_close(DSRT_OP_LINEAR_GROUPED, what, y, TOL_MM);
    tp_free(x);
    tp_free(w);
    tp_free(y);
    tp_free(o);
}

START_TEST(test_linear_grouped)
{
    int32_t o1[7] = {0, 2, 2, 3, 3, 3, 6}; /* empty experts in between */
    grouped_case(6, 7, 256, 200, o1, true, DSRT_E4M3);
    grouped_case(6, 7, 384, 96, o1, false, DSRT_E4M3);
    int32_t o2[5] = {1, 1, 4, 5, 8}; /* rows outside [offsets[0], offsets[G]) stay untouched */
    grouped_case(4, 9, 160, 64, o2, false, DSRT_BF16);
    int32_t o3[4] = {0, 150, 150, 290}; /* many rows per expert: tiled path */
    grouped_case(3, 300, 256, 130, o3, true, DSRT_E4M3);
    grouped_case(3, 300, 192, 70, o3, false, DSRT_F32);
}
END_TEST

START_TEST(test_head_linear)
{
    int64_t Ts[] = {2, 40};
    for (int ti = 0; ti < 2; ti++)
        for (int tw = 0; tw < 2; tw++)
            for (int f = 0; f < 2; f++) {
                int64_t T = Ts[ti], Hh = 4, K = 64, N = 48;
                int64_t xs[3] = {T, Hh, K}, ws[3] = {Hh, tw ? K : N, tw ? N : K}, ys[3] = {T, Hh, N};
                dsrt_dtype dt = f ? DSRT_F32 : DSRT_BF16;
                tp *x = tp_make(dt, 3, xs, 2, 0), *w = tp_make(dt, 3, ws, 0, 0), *y = tp_make(dt, 3, ys, 0, 0);
                tp_rand(x, 1.0f);
                tp_rand(w, 0.1f);
                tp_poison(y);
                dsrt_op op = dsrt_op_init(DSRT_OP_HEAD_LINEAR);
                op.p.transpose_w = tw;
                tp *in[] = {x, w}, *out[] = {y};
                RUN(op, in, out);
                check_close(DSRT_OP_HEAD_LINEAR, tw ? "transposed" : "plain", y, TOL_MM);
                tp_free(x);
                tp_free(w);
                tp_free(y);
            }
}
END_TEST

/* ---- attention ---- */

static void prefill_cases(void)
{
    for (int variant = 0; variant < 4; variant++) {
        int64_t T = variant == 3 ? 70 : 6, Hh = 3, Dn = 32, Dr = 16, Dv = 24, L = variant == 3 ? 90 : 20;
        dsrt_dtype dt = variant == 1 ? DSRT_F32 : DSRT_BF16;
        int64_t qs[3] = {T, Hh, Dn + Dr}, kns[3] = {L, Hh, Dn}, kps[2] = {L, Dr}, vs[3] = {L, Hh, Dv}, os[3] = {T, Hh, Dv};
        tp *q = tp_make(dt, 3, qs, 0, 0), *kn = tp_make(dt, 3, kns, 4, 0), *kp = tp_make(dt, 2, kps, 0, 0);
        tp *v = tp_make(dt, 3, vs, 0, 0), *o = tp_make(dt, 3, os, 0, 0);
        tp *st = tp_new(DSRT_I32, 1, T, 0, 0, 0), *ln = tp_new(DSRT_I32, 1, T, 0, 0, 0), *ix = NULL;
        tp_rand(q, 1.0f);
        tp_rand(kn, 1.0f);
        tp_rand(kp, 1.0f);
        tp_rand(v, 1.0f);
        int32_t sv[70], lv[70];
        int32_t s6[6] = {0, 0, 5, 10, -3, 18}, l6[6] = {1, 6, 8, 10, 7, 5};
        for (int64_t t = 0; t < T; t++) { /* variant 3: causal prefill of 70 rows after a 20-row prefix */
            sv[t] = variant == 3 ? 0 : s6[t];
            lv[t] = variant == 3 ? (int32_t)(21 + t) : l6[t];
        }
        tp_i32(st, sv);
        tp_i32(ln, lv);
        if (variant == 2) { /* DSA: selected positions, duplicates and -1 entries */
            ix = tp_new(DSRT_I32, 2, T, 5, 0, 0);
            int32_t iv[30] = {0, -1, 0, 3, 9, 5, 1, 2, 2, 0, 4, 7, 7, -1, 6, 9, 8, 1, 0, 3, 0, 1, 2, 3, 4, -1, -1, -1, -1, -1};
            tp_i32(ix, iv);
        }
        dsrt_op op = dsrt_op_init(DSRT_OP_MLA_PREFILL);
        op.p.scale = 0.125f;
        tp *in[] = {q, kn, kp, v, st, ln, ix}, *out[] = {o};
        RUN(op, in, out);
        check_close(DSRT_OP_MLA_PREFILL, variant == 2 ? "DSA" : variant == 3 ? "causal 70x90" : dsrt_dtype_name(dt), o,
                    TOL_MM);
        tp_free(q);
        tp_free(kn);
        tp_free(kp);
        tp_free(v);
        tp_free(o);
        tp_free(st);
        tp_free(ln);
        tp_free(ix);
    }
}

START_TEST(test_mla_prefill) { prefill_cases(); }
END_TEST

/* The same cases through the per-row list kernels (the DSA path) on a second instance of the device. */
START_TEST(test_mla_prefill_lists)
{
    setenv("DSRT_OPENCL_PREFILL", "lists", 1);
    dsrt_device *other = NULL;
    dsrt_status st = dsrt_device_open_by_name("opencl:0", &other);
    unsetenv("DSRT_OPENCL_PREFILL");
    ck_ok(st);
    dsrt_device *keep = g_ocl;
    dsrt_stream *keep_s = g_gs;
    g_ocl = other;
    ck_ok(dsrt_stream_create(other, &g_gs));
    prefill_cases();
    dsrt_stream_release(g_gs);
    g_gs = keep_s;
    g_ocl = keep;
    dsrt_device_release(other);
}
END_TEST

/* A paged cache filled on both devices by cache_write (which is compared too). */
static tp *make_cache(int64_t S, int64_t Dc, int64_t Dr, bool fp8, dsrt_dtype plain_dt, bool pow2)
{
    int64_t C = fp8 ? Dc + 4 * ((Dc + 127) / 128) + 2 * Dr : Dc + Dr;
    int64_t cs[2] = {S, C}, ss[2] = {S, Dc}, rs[2] = {S, Dr};
    tp *cache = tp_make(fp8 ? DSRT_U8 : plain_dt, 2, cs, 0, 0);
    tp *src = tp_make(DSRT_BF16, 2, ss, 0, 0), *src2 = Dr ? tp_make(DSRT_BF16, 2, rs, 0, 0) : NULL;
    tp *slots = tp_new(DSRT_I32, 1, S, 0, 0, 0);
    tp_rand(src, 1.0f);
    if (src2) tp_rand(src2, 1.0f);
    int32_t *sv = malloc(sizeof(int32_t) * (size_t)S);
    for (int64_t i = 0; i < S; i++) sv[i] = (int32_t)((i * 7) % S); /* a permutation (S not a multiple of 7) */
    tp_i32(slots, sv);
    free(sv);
    dsrt_op op = dsrt_op_init(DSRT_OP_CACHE_WRITE);
    op.p.format = fp8 ? DSRT_CACHE_FP8 : DSRT_CACHE_PLAIN;
    op.p.scale_pow2 = pow2;
    tp *in[] = {src, slots, src2}, *out[] = {cache};
    RUN(op, in, out);
    if (fp8) check_exact(DSRT_OP_CACHE_WRITE, "fp8 rows", cache);
    else check_close(DSRT_OP_CACHE_WRITE, "plain rows", cache, TOL_EW);
    tp_free(src);
    tp_free(src2);
    tp_free(slots);
    return cache;
}

static void decode_case(int64_t T, int64_t Hh, int64_t Dc, int64_t Dr, bool fp8, dsrt_dtype qdt, bool dsa, int page)
{
    int64_t S = 10 * page + 3, P = 12;
    tp *cache = make_cache(S, Dc, Dr, fp8, DSRT_BF16, true);
    int64_t qls[3] = {T, Hh, Dc}, qps[3] = {T, Hh, Dr}, bts[2] = {2, P};
    tp *ql = tp_make(qdt, 3, qls, 0, 0), *qp = tp_make(qdt, 3, qps, 0, 0), *o = tp_make(qdt, 3, qls, 0, 0);
    tp_rand(ql, 0.3f);
    tp_rand(qp, 0.3f);
    tp *bt = tp_make(DSRT_I32, 2, bts, 0, 0), *rs = tp_new(DSRT_I32, 1, T, 0, 0, 0), *kl = tp_new(DSRT_I32, 1, T, 0, 0, 0);
    int32_t btv[24];
    for (int i = 0; i < 24; i++) btv[i] = (int32_t)((i * 3 + 1) % 10);
    btv[5] = -1; /* a missing page: its positions are skipped */
    btv[12 + 2] = 11; /* a page beyond the cache: skipped too */
    tp_i32(bt, btv);
    int32_t *rsv = malloc(sizeof(int32_t) * (size_t)T), *klv = malloc(sizeof(int32_t) * (size_t)T);
    for (int64_t t = 0; t < T; t++) {
        rsv[t] = (int32_t)(t % 3 == 2 ? 5 : t % 2); /* 5: no such sequence */
        klv[t] = (int32_t)((t * 13 + 7) % (P * page + 5));
    }
    tp_i32(rs, rsv);
    tp_i32(kl, klv);
    tp *ix = NULL;
    if (dsa) {
        int64_t k = 16;
        ix = tp_new(DSRT_I32, 2, T, k, 0, 0);
        int32_t *iv = malloc(sizeof(int32_t) * (size_t)(T * k));
        for (int64_t i = 0; i < T * k; i++) iv[i] = (int32_t)(dsrt_rng_next(&g_rng) % (uint64_t)(P * page + 4)) - 2;
        tp_i32(ix, iv);
        free(iv);
    }
    dsrt_op op = dsrt_op_init(DSRT_OP_MLA_DECODE);
    op.p.format = fp8 ? DSRT_CACHE_FP8 : DSRT_CACHE_PLAIN;
    op.p.page_size = page;
    op.p.scale = 0.07f;
    tp *in[] = {ql, qp, cache, bt, rs, kl, ix}, *out[] = {o};
    RUN(op, in, out);
    char what[128];
    snprintf(what, sizeof what, "T=%lld Hh=%lld Dc=%lld Dr=%lld %s cache, q %s%s", (long long)T, (long long)Hh,
             (long long)Dc, (long long)Dr, fp8 ? "fp8" : "bf16", dsrt_dtype_name(qdt), dsa ? ", DSA" : "");
    check_close(DSRT_OP_MLA_DECODE, what, o, TOL_MM);
    free(rsv);
    free(klv);
    tp_free(cache);
    tp_free(ql);
    tp_free(qp);
    tp_free(o);
    tp_free(bt);
    tp_free(rs);
    tp_free(kl);
    tp_free(ix);
}

START_TEST(test_mla_decode)
{
    decode_case(3, 5, 160, 32, true, DSRT_BF16, false, 4);
    decode_case(3, 5, 160, 32, false, DSRT_F32, false, 4);
    decode_case(4, 3, 96, 16, true, DSRT_F32, true, 8);
    decode_case(2, 9, 64, 8, false, DSRT_BF16, true, 3);
    /* more heads than one work group covers: head batches in both kernels */
    decode_case(2, 300, 64, 16, true, DSRT_BF16, false, 4);
    /* full width: 128 heads, 512 latent, 64 rope, FP8 cache (656-byte rows) */
    decode_case(1, 128, 512, 64, true, DSRT_BF16, false, 16);
}
END_TEST

START_TEST(test_cache_write)
{
    tp_free(make_cache(37, 512, 64, true, DSRT_BF16, true));   /* 656-byte rows */
    tp_free(make_cache(23, 128, 0, true, DSRT_BF16, false));   /* 132-byte indexer keys, f32 scales */
    tp_free(make_cache(19, 200, 13, true, DSRT_BF16, true));   /* partial block, odd tail */
    tp_free(make_cache(29, 100, 30, false, DSRT_F32, false));  /* plain */
    tp_free(make_cache(29, 64, 16, false, DSRT_BF16, false));
}
END_TEST

/* ---- indexer, top-k ---- */

static void indexer_case(int64_t T, int64_t Hi, int64_t D, bool fp8, int page)
{
    int64_t S = 12 * page, P = 12, Lout = P * page + 5;
    tp *kc = make_cache(S, D, 0, fp8, DSRT_BF16, true);
    int64_t qs[3] = {T, Hi, D}, ws[2] = {T, Hi}, os[2] = {T, Lout}, bts[1][2] = {{2, P}};
    tp *q = tp_make(fp8 ? DSRT_E4M3 : DSRT_BF16, 3, qs, 0, 0), *w = tp_make(DSRT_F32, 2, ws, 0, 0);
    tp *out = tp_make(DSRT_F32, 2, os, 0, 0);
    tp_rand(q, fp8 ? 100.0f : 1.0f);
    if (fp8) tp_scale(q, DSRT_F32, 1, 128, true);
    tp_rand(w, 1.0f);
    tp *bt = tp_make(DSRT_I32, 2, bts[0], 0, 0), *rs = tp_new(DSRT_I32, 1, T, 0, 0, 0), *kl = tp_new(DSRT_I32, 1, T, 0, 0, 0);
    int32_t btv[24];
    for (int i = 0; i < 24; i++) btv[i] = (int32_t)((i * 5 + 2) % 12);
    btv[3] = -1;
    tp_i32(bt, btv);
    int32_t rsv[4] = {0, 1, 0, 1}, klv[4] = {(int32_t)(P * page), 17, 0, (int32_t)(P * page + 9)};
    tp_i32(rs, rsv);
    tp_i32(kl, klv);
    dsrt_op op = dsrt_op_init(DSRT_OP_INDEXER_SCORES);
    op.p.format = fp8 ? DSRT_CACHE_FP8 : DSRT_CACHE_PLAIN;
    op.p.page_size = page;
    op.p.scale = 1.0f / sqrtf((float)D) / sqrtf((float)Hi);
    tp *in[] = {q, w, kc, bt, rs, kl}, *outs[] = {out};
    RUN(op, in, outs);
    char what[96];
    snprintf(what, sizeof what, "T=%lld Hi=%lld D=%lld %s", (long long)T, (long long)Hi, (long long)D, fp8 ? "fp8" : "plain");
    check_close(DSRT_OP_INDEXER_SCORES, what, out, TOL_MM);
    tp_free(kc);
    tp_free(q);
    tp_free(w);
    tp_free(out);
    tp_free(bt);
    tp_free(rs);
    tp_free(kl);
}

START_TEST(test_indexer_scores)
{
    indexer_case(4, 8, 128, true, 16);  /* official FP8 order (D = 128) */
    indexer_case(2, 64, 128, true, 8);  /* 64 heads */
    indexer_case(3, 5, 256, true, 4);   /* two 128-blocks per key */
    indexer_case(2, 70, 64, false, 5);  /* plain bf16 keys, more heads than one head block */
}
END_TEST

START_TEST(test_topk)
{
    int64_t T = 4, L = 3000, k = 64;
    float *sv = malloc(sizeof(float) * (size_t)(T * L));
    for (int64_t i = 0; i < T * L; i++) {
        float v = roundf(dsrt_rng_normal(&g_rng) * 4.0f) / 4.0f; /* many ties */
        if (i % 97 == 0) v = -INFINITY;
        if (i % 131 == 0) v = NAN;
        if (i % 211 == 0) v = -0.0f;
        sv[i] = v;
    }
    for (int64_t j = 0; j < 10; j++) sv[3 * L + j] = (float)j; /* a short row of few valid entries */
    tp *s = tp_new(DSRT_F32, 2, T, L, 0, 0), *ln = tp_new(DSRT_I32, 1, T, 0, 0, 0), *ix = tp_new(DSRT_I32, 2, T, k, 0, 0);
    tp_f32(s, sv);
    int32_t lv[4] = {3000, 1000, 50, 10};
    tp_i32(ln, lv);
    dsrt_op op = dsrt_op_init(DSRT_OP_TOPK);
    op.p.k = (int32_t)k;
    tp *in[] = {s, ln}, *out[] = {ix};
    RUN(op, in, out);
    check_exact(DSRT_OP_TOPK, "with lengths", ix);
    tp *in2[] = {s, NULL};
    RUN(op, in2, out);
    check_exact(DSRT_OP_TOPK, "whole rows", ix);
    tp_free(ix);
    op.p.k = 2048; /* the DSA size */
    ix = tp_new(DSRT_I32, 2, T, 2048, 0, 0);
    tp *out3[] = {ix};
    RUN(op, in2, out3);
    check_exact(DSRT_OP_TOPK, "k=2048", ix);
    free(sv);
    tp_free(s);
    tp_free(ln);
    tp_free(ix);
}
END_TEST

/* ---- MoE ---- */

START_TEST(test_moe)
{
    struct {
        int64_t E;
        int k, G, tg, softmax, bias, norm;
        float rs;
    } g[] = {{64, 6, 8, 3, 0, 1, 1, 2.5f}, {256, 8, 8, 4, 0, 1, 1, 2.5f}, {32, 4, 1, 1, 1, 0, 0, 1.0f}, {16, 3, 4, 2, 0, 0, 1, 1.0f}};
    for (int c = 0; c < 4; c++) {
        int64_t T = 5, E = g[c].E;
        tp *lg = tp_new(DSRT_F32, 2, T, E, 0, 0), *b = tp_new(DSRT_F32, 1, E, 0, 0, 0);
        tp *ids = tp_new(DSRT_I32, 2, T, g[c].k, 0, 0), *wt = tp_new(DSRT_F32, 2, T, g[c].k, 0, 0);
        tp_rand(lg, 2.0f);
        tp_rand(b, 0.1f);
        dsrt_op op = dsrt_op_init(DSRT_OP_MOE_GATE);
        op.p.k = g[c].k;
        op.p.n_group = g[c].G;
        op.p.topk_group = g[c].tg;
        op.p.score_func = g[c].softmax ? DSRT_SCORE_SOFTMAX : DSRT_SCORE_SIGMOID;
        op.p.norm_topk = g[c].norm;
        op.p.route_scale = g[c].rs;
        tp *in[] = {lg, g[c].bias ? b : NULL}, *out[] = {ids, wt};
        RUN(op, in, out);
        check_exact(DSRT_OP_MOE_GATE, "ids", ids);
        check_close(DSRT_OP_MOE_GATE, "weights", wt, TOL_EW);
        tp_free(lg);
        tp_free(b);
        tp_free(ids);
        tp_free(wt);
    }
    /* dispatch a subset of experts, then combine (with the shared expert) */
    int64_t T = 7, k = 3, H = 130, e0 = 2, G = 5;
    tp *x = tp_new(DSRT_BF16, 2, T, H, 0, 0), *ids = tp_new(DSRT_I32, 2, T, k, 0, 0), *xp = tp_new(DSRT_BF16, 2, T * k + 2, H, 0, 0);
    tp *off = tp_new(DSRT_I32, 1, G + 1, 0, 0, 0), *rt = tp_new(DSRT_I32, 1, T * k + 2, 0, 0, 0), *sr = tp_new(DSRT_I32, 2, T, k, 0, 0);
    tp_rand(x, 1.0f);
    int32_t iv[21] = {2, 5, 6, 0, 3, 2, 6, 2, 9, 4, 3, 1, 6, 5, 2, 3, 4, 5, 8, 7, 2};
    tp_i32(ids, iv);
    dsrt_op op = dsrt_op_init(DSRT_OP_MOE_DISPATCH);
    op.p.expert_begin = (int32_t)e0;
    op.p.expert_count = (int32_t)G;
    tp *in[] = {x, ids}, *out[] = {xp, off, rt, sr};
    RUN(op, in, out);
    check_exact(DSRT_OP_MOE_DISPATCH, "offsets", off);
    check_exact(DSRT_OP_MOE_DISPATCH, "row_token", rt);
    check_exact(DSRT_OP_MOE_DISPATCH, "slot_row", sr);
    check_close(DSRT_OP_MOE_DISPATCH, "x_perm", xp, TOL_EW);
    tp *wt = tp_new(DSRT_F32, 2, T, k, 0, 0), *sh = tp_new(DSRT_BF16, 2, T, H, 0, 0), *y = tp_new(DSRT_BF16, 2, T, H, 0, 0);
    tp_rand(wt, 1.0f);
    tp_rand(sh, 1.0f);
    tp_rand(xp, 1.0f); /* stands for the experts' outputs */
    dsrt_op cb = dsrt_op_init(DSRT_OP_MOE_COMBINE);
    tp *cin[] = {xp, sr, ids, wt, sh}, *cout[] = {y};
    RUN(cb, cin, cout);
    check_close(DSRT_OP_MOE_COMBINE, "with shared", y, TOL_EW);
    tp *cin2[] = {xp, sr, ids, wt, NULL};
    RUN(cb, cin2, cout);
    check_close(DSRT_OP_MOE_COMBINE, "routed only", y, TOL_EW);
    tp_free(x);
    tp_free(ids);
    tp_free(xp);
    tp_free(off);
    tp_free(rt);
    tp_free(sr);
    tp_free(wt);
    tp_free(sh);
    tp_free(y);
}
END_TEST

START_TEST(test_sample)
{
    struct {
        int64_t V;
        float temp, top_p, min_p, amp;
        int top_k;
    } c[] = {
        {1000, 0.0f, 1.0f, 0.0f, 3.0f, 0},   {129280, 0.0f, 1.0f, 0.0f, 3.0f, 0}, {1000, 1.0f, 1.0f, 0.0f, 3.0f, 40},
        {5000, 0.8f, 0.9f, 0.0f, 8.0f, 0},   {3000, 1.0f, 1.0f, 0.05f, 4.0f, 0},  {2500, 1.0f, 1.0f, 0.0f, 0.5f, 0},
        {4000, 0.7f, 0.95f, 0.01f, 6.0f, 100}, {129280, 1.0f, 0.95f, 0.0f, 8.0f, 0}, {129280, 0.6f, 1.0f, 0.0f, 8.0f, 0},
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        int64_t B = 4;
        tp *lg = tp_new(DSRT_F32, 2, B, c[i].V, 0, 0), *u = tp_new(DSRT_F32, 1, B, 0, 0, 0), *ids = tp_new(DSRT_I32, 1, B, 0, 0, 0);
        tp_rand(lg, c[i].amp);
        float uv[4] = {0.1f, 0.5f, 0.93f, 0.0f};
        tp_f32(u, uv);
        dsrt_op op = dsrt_op_init(DSRT_OP_SAMPLE);
        op.p.temperature = c[i].temp;
        op.p.top_k = c[i].top_k;
        op.p.top_p = c[i].top_p;
        op.p.min_p = c[i].min_p;
        tp *in[] = {lg, u}, *out[] = {ids};
        RUN(op, in, out);
        check_exact(DSRT_OP_SAMPLE, "ids", ids);
        tp_free(lg);
        tp_free(u);
        tp_free(ids);
    }
}
END_TEST

/* One test case per test, so CK_RUN_CASE=<name> runs one (e.g. CK_RUN_CASE=mla_decode). */
static void add(Suite *s, const char *name, const TTest *t)
{
    TCase *tc = tcase_create(name);
    tcase_set_timeout(tc, 900);
    tcase_add_test(tc, t);
    suite_add_tcase(s, tc);
}

static Suite *suite(void)
{
    Suite *s = suite_create("opencl");
    add(s, "device_caps", test_device_caps);
    add(s, "selection_and_errors", test_selection_and_errors);
    add(s, "profile", test_profile);
    add(s, "kernel_cache", test_kernel_cache);
    add(s, "streams_events", test_streams_events);
    add(s, "convert", test_convert);
    add(s, "embed", test_embed);
    add(s, "norms", test_norms);
    add(s, "rope", test_rope);
    add(s, "elementwise", test_elementwise);
    add(s, "act_quant_hadamard", test_act_quant_hadamard);
    add(s, "cache_write", test_cache_write);
    add(s, "linear", test_linear);
    add(s, "linear_fp8_decoders", test_linear_fp8_decoders);
    add(s, "linear_grouped", test_linear_grouped);
    add(s, "head_linear", test_head_linear);
    add(s, "mla_prefill", test_mla_prefill);
    add(s, "mla_prefill_lists", test_mla_prefill_lists);
    add(s, "mla_decode", test_mla_decode);
    add(s, "indexer_scores", test_indexer_scores);
    add(s, "topk", test_topk);
    add(s, "moe", test_moe);
    add(s, "sample", test_sample);
    return s;
}

int main(void)
{
    dsrt_backend *b = NULL;
    dsrt_status st = dsrt_backend_find("opencl", &b);
    if (st) {
        printf("test_opencl: skipped: %s\n", dsrt_status_message(st));
        dsrt_status_free(st);
        return 0;
    }
    int n = 0;
    dsrt_status_free(dsrt_backend_device_count(b, &n));
    if (n == 0) {
        printf("test_opencl: skipped: no OpenCL device (%s)\n", dsrt_backend_unavailable_reason(b));
        return 0;
    }
    setup();
    SRunner *sr = srunner_create(suite());
    /* No fork: the devices (and the compiled program) stay open across tests. */
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    printf("\n%-16s %6s %12s\n", "op", "cases", "max nmse");
    for (int k = 0; k < DSRT_OP_COUNT; k++)
        if (g_cases[k]) printf("%-16s %6d %12.3g\n", dsrt_op_name((dsrt_op_kind)k), g_cases[k], g_worst[k]);
    dsrt_stream_release(g_cs);
    dsrt_stream_release(g_gs);
    dsrt_device_release(g_cpu);
    dsrt_device_release(g_ocl);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
#endif
