/* dsrt_bench_ops: the V3.2 hot ops at deployment shapes, timed through the HAL on any device.
 *
 * Cases: MLA decode (128 heads, latent 512 + rope 64, FP8 cache, batch 64, dense at 4096 and 32768
 * positions; sparse over 2048 selected positions of 131072), the lightning indexer's scores and top-k
 * at 131072 positions (one query row, and 64), and the FP8 block-scaled GEMM beside a bf16 GEMM on
 * the projection shapes of the 671B model. Bytes counted are the fewest a kernel must move (inputs
 * read once, outputs written once); FLOPs count multiply and add. */
#include "bench_ops.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dsrt/buffer.h"
#include "dsrt/fp8.h"
#include "dsrt/half.h"
#include "dsrt/ops.h"
#include "dsrt/stream.h"
#include "dsrt/tensor.h"

#define ROTATE_BYTES (128.0 * 1024 * 1024)
#define MAX_COPIES 8
#define MAX_OPS 4
#define MAX_BUFS 512

typedef struct bench {
    dsrt_device *dev;
    dsrt_stream *s;
    const dsrt_device_caps *caps;
    double bw_limit; /* GB/s the fractions use: the device's peak, else the measured copy bandwidth */
    FILE *out;
    bool small;
    uint64_t rng;
    dsrt_buffer *bufs[MAX_BUFS];
    int nbufs;
    double dense4096_us; /* for the sparse / dense ratio */
} bench;

typedef struct bcase {
    char name[96];
    dsrt_op ops[MAX_COPIES][MAX_OPS];
    int nops, copies;
    double bytes, flops;
    bool fp8_peak; /* FLOPs against the fp8 peak (else bf16) */
} bcase;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t rnd(bench *b)
{
    uint64_t z = (b->rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static float rnormal(bench *b)
{
    float u1 = (float)((rnd(b) >> 40) + 1) / 16777217.0f, u2 = (float)(rnd(b) >> 40) / 16777216.0f;
    return sqrtf(-2.0f * logf(u1)) * cosf(6.28318530718f * u2);
}

static dsrt_status balloc(bench *b, size_t bytes, dsrt_buffer **out)
{
    if (b->nbufs == MAX_BUFS) return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "bench: too many buffers");
    DSRT_TRY(dsrt_buffer_alloc(b->dev, bytes, out));
    b->bufs[b->nbufs++] = *out;
    return DSRT_OK;
}

static void bfree_all(bench *b)
{
    dsrt_status_free(dsrt_stream_sync(b->s));
    for (int i = 0; i < b->nbufs; i++) dsrt_buffer_release(b->bufs[i]);
    b->nbufs = 0;
}

/* Random contents of dtype dt: up to 16 MiB made on the host, the rest replicated on the device. */
static dsrt_status fill_random(bench *b, dsrt_buffer *buf, size_t bytes, dsrt_dtype dt, float scale)
{
    size_t chunk = bytes < (16u << 20) ? bytes : (16u << 20);
    size_t es = dsrt_dtype_size(dt);
    chunk -= chunk % es;
    if (chunk == 0) chunk = bytes;
    uint8_t *h = malloc(chunk);
    if (!h) return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "bench: out of host memory");
    size_t n = chunk / (es ? es : 1);
    for (size_t i = 0; i < n; i++) {
        float v = rnormal(b) * scale;
        switch (dt) {
        case DSRT_F32: ((float *)h)[i] = v; break;
        case DSRT_BF16: ((uint16_t *)h)[i] = dsrt_f32_to_bf16(v); break;
        case DSRT_E4M3: ((uint8_t *)h)[i] = dsrt_f32_to_e4m3(v); break;
        case DSRT_UE8M0: ((uint8_t *)h)[i] = (uint8_t)(127 - 12 + (int)(rnd(b) % 6)); break;
        case DSRT_I32: ((int32_t *)h)[i] = (int32_t)(rnd(b) & 0x7fffffff); break;
        default: ((uint8_t *)h)[i] = (uint8_t)rnd(b); break;
        }
    }
    dsrt_status st = dsrt_stream_write(b->s, buf, 0, h, chunk);
    if (!st) st = dsrt_stream_sync(b->s);
    free(h);
    for (size_t done = chunk; !st && done < bytes;) {
        size_t c = done < bytes - done ? done : bytes - done;
        st = dsrt_stream_copy(b->s, buf, 0, buf, done, c);
        done += c;
    }
    if (!st) st = dsrt_stream_sync(b->s);
    return st;
}

static dsrt_status tensor(bench *b, dsrt_dtype dt, int nd, const int64_t *shape, float scale, dsrt_tensor *t)
{
    int64_t n = 1;
    for (int i = 0; i < nd; i++) n *= shape[i];
    size_t bytes = (size_t)n * dsrt_dtype_size(dt);
    dsrt_buffer *buf;
    DSRT_TRY(balloc(b, bytes ? bytes : 1, &buf));
    if (scale != 0 && bytes) DSRT_TRY(fill_random(b, buf, bytes, dt, scale));
    return dsrt_tensor_make(buf, 0, dt, nd, shape, t);
}

static dsrt_status upload_i32(bench *b, const int32_t *v, int nd, const int64_t *shape, dsrt_tensor *t)
{
    DSRT_TRY(tensor(b, DSRT_I32, nd, shape, 0, t));
    DSRT_TRY(dsrt_stream_write(b->s, t->buf, 0, v, dsrt_tensor_nbytes(t)));
    return dsrt_stream_sync(b->s);
}

/* e4m3 weight [N,K] with UE8M0 128x128 scales. */
static dsrt_status fp8_weight(bench *b, int64_t N, int64_t K, dsrt_tensor *w)
{
    int64_t sh[2] = {N, K};
    DSRT_TRY(tensor(b, DSRT_E4M3, 2, sh, 24.0f, w));
    int64_t ns = ((N + 127) / 128) * ((K + 127) / 128);
    dsrt_buffer *sb;
    DSRT_TRY(balloc(b, (size_t)ns, &sb));
    DSRT_TRY(fill_random(b, sb, (size_t)ns, DSRT_UE8M0, 1.0f));
    return dsrt_tensor_set_scale(w, sb, 0, DSRT_UE8M0, 128, 128);
}

/* A paged cache of S rows written by cache_write (so FP8 rows carry real scales): a seed of rows is
 * written, then replicated. Row width: w1 (quantized) + w2 (bf16 tail). */
static dsrt_status fp8_cache(bench *b, int64_t S, int64_t w1, int64_t w2, dsrt_tensor *cache)
{
    int64_t row = w1 + 4 * ((w1 + 127) / 128) + 2 * w2, seed = S < 8192 ? S : 8192;
    int64_t sh[2] = {S, row};
    DSRT_TRY(tensor(b, DSRT_U8, 2, sh, 0, cache));
    dsrt_tensor src, src2, slots;
    int64_t s1[2] = {seed, w1}, s2[2] = {seed, w2}, s3[1] = {seed};
    DSRT_TRY(tensor(b, DSRT_BF16, 2, s1, 1.0f, &src));
    if (w2) DSRT_TRY(tensor(b, DSRT_BF16, 2, s2, 1.0f, &src2));
    int32_t *sl = malloc(sizeof(int32_t) * (size_t)seed);
    if (!sl) return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "bench: out of host memory");
    for (int64_t i = 0; i < seed; i++) sl[i] = (int32_t)i;
    dsrt_status st = upload_i32(b, sl, 1, s3, &slots);
    free(sl);
    DSRT_TRY(st);
    DSRT_TRY(dsrt_cache_write(b->s, &src, &slots, w2 ? &src2 : NULL, DSRT_CACHE_FP8, true, cache));
    DSRT_TRY(dsrt_stream_sync(b->s));
    size_t bytes = (size_t)(S * row), done = (size_t)(seed * row);
    while (done < bytes) {
        size_t c = done < bytes - done ? done : bytes - done;
        DSRT_TRY(dsrt_stream_copy(b->s, cache->buf, 0, cache->buf, done, c));
        done += c;
    }
    return dsrt_stream_sync(b->s);
}

/* Block table [T, P] of a random page permutation. */
static dsrt_status block_table(bench *b, int64_t T, int64_t P, dsrt_tensor *bt)
{
    int64_t n = T * P;
    int32_t *v = malloc(sizeof(int32_t) * (size_t)n);
    if (!v) return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "bench: out of host memory");
    for (int64_t i = 0; i < n; i++) v[i] = (int32_t)i;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)(rnd(b) % (uint64_t)(i + 1));
        int32_t t = v[i];
        v[i] = v[j];
        v[j] = t;
    }
    int64_t sh[2] = {T, P};
    dsrt_status st = upload_i32(b, v, 2, sh, bt);
    free(v);
    return st;
}

static dsrt_status const_i32(bench *b, int64_t n, int32_t step, int32_t base, dsrt_tensor *t)
{
    int32_t *v = malloc(sizeof(int32_t) * (size_t)n);
    if (!v) return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "bench: out of host memory");
    for (int64_t i = 0; i < n; i++) v[i] = base + step * (int32_t)i;
    int64_t sh[1] = {n};
    dsrt_status st = upload_i32(b, v, 1, sh, t);
    free(v);
    return st;
}

static int copies_for(double bytes)
{
    int c = (int)ceil(ROTATE_BYTES / (bytes > 1 ? bytes : 1));
    return c < 1 ? 1 : c > MAX_COPIES ? MAX_COPIES : c;
}

/* ---- timing ---- */

static dsrt_status run_copy(bench *b, const bcase *c, int copy)
{
    for (int k = 0; k < c->nops; k++) DSRT_TRY(dsrt_enqueue(b->s, &c->ops[copy][k]));
    return DSRT_OK;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static dsrt_status time_case(bench *b, const bcase *c, double *sec)
{
    for (int w = 0; w < 3; w++) DSRT_TRY(run_copy(b, c, w % c->copies));
    DSRT_TRY(dsrt_stream_sync(b->s));
    double t0 = now();
    DSRT_TRY(run_copy(b, c, 0));
    DSRT_TRY(dsrt_stream_sync(b->s));
    double one = now() - t0;
    int reps = (int)(0.02 / (one > 1e-7 ? one : 1e-7));
    if (reps < 1) reps = 1;
    if (reps > 20000) reps = 20000;
    double batch[7];
    int i = 0;
    for (int bt = 0; bt < 7; bt++) {
        t0 = now();
        for (int r = 0; r < reps; r++, i++) DSRT_TRY(run_copy(b, c, i % c->copies));
        DSRT_TRY(dsrt_stream_sync(b->s));
        batch[bt] = (now() - t0) / reps;
    }
    qsort(batch, 7, sizeof batch[0], cmp_d);
    *sec = batch[3];
    return DSRT_OK;
}

static void report(bench *b, const bcase *c, double sec)
{
    double gbs = c->bytes / sec / 1e9, tfs = c->flops / sec / 1e12;
    double pbw = b->bw_limit, pfl = c->fp8_peak ? b->caps->peak_tflops_fp8 : b->caps->peak_tflops_bf16;
    char fbw[16] = "-", ffl[16] = "-";
    if (pbw > 0) snprintf(fbw, sizeof fbw, "%.1f%%", 100.0 * gbs / pbw);
    if (pfl > 0 && c->flops > 0) snprintf(ffl, sizeof ffl, "%.1f%%%s", 100.0 * tfs / pfl, c->fp8_peak ? " f8" : "");
    fprintf(b->out, "%-52s %10.1f %9.1f %8s %9.1f %9s\n", c->name, sec * 1e6, gbs, fbw, c->flops > 0 ? tfs : 0.0, ffl);
    fflush(b->out);
}

static bool wanted(const char *name, const char *filter) { return !filter || !*filter || strstr(name, filter); }

/* Times and reports a built case; a failure is reported on its line and does not stop the run. */
static void finish(bench *b, bcase *c, dsrt_status built, double *us_out)
{
    double sec = 0;
    dsrt_status st = built ? built : time_case(b, c, &sec);
    if (st) {
        fprintf(b->out, "%-52s not run: %s\n", c->name, dsrt_status_message(st));
        dsrt_status_free(st);
        dsrt_status_free(dsrt_stream_sync(b->s));
    } else {
        report(b, c, sec);
        if (us_out) *us_out = sec * 1e6;
    }
    bfree_all(b);
}

/* ---- cases ---- */

static dsrt_status build_decode(bench *b, bcase *c, int64_t T, int64_t ctx, int64_t ksel)
{
    const int64_t Hh = 128, Dc = 512, Dr = 64, page = 64, P = (ctx + page - 1) / page;
    dsrt_tensor ql, qp, cache, bt, rs, kl, idx, o;
    memset(&idx, 0, sizeof idx);
    int64_t s3[3] = {T, Hh, Dc}, s4[3] = {T, Hh, Dr};
    DSRT_TRY(tensor(b, DSRT_BF16, 3, s3, 0.3f, &ql));
    DSRT_TRY(tensor(b, DSRT_BF16, 3, s4, 0.3f, &qp));
    DSRT_TRY(tensor(b, DSRT_BF16, 3, s3, 0, &o));
    DSRT_TRY(fp8_cache(b, T * P * page, Dc, Dr, &cache));
    DSRT_TRY(block_table(b, T, P, &bt));
    DSRT_TRY(const_i32(b, T, 1, 0, &rs));
    DSRT_TRY(const_i32(b, T, 0, (int32_t)ctx, &kl));
    int64_t n = ctx;
    if (ksel) { /* distinct random positions per row, in no particular order (as top-k returns them) */
        int32_t *v = malloc(sizeof(int32_t) * (size_t)(T * ksel));
        uint8_t *seen = calloc((size_t)ctx, 1);
        if (!v || !seen) {
            free(v);
            free(seen);
            return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "bench: out of host memory");
        }
        for (int64_t t = 0; t < T; t++) {
            memset(seen, 0, (size_t)ctx);
            for (int64_t j = 0; j < ksel;) {
                int64_t p = (int64_t)(rnd(b) % (uint64_t)ctx);
                if (seen[p]) continue;
                seen[p] = 1;
                v[t * ksel + j++] = (int32_t)p;
            }
        }
        int64_t sh[2] = {T, ksel};
        dsrt_status st = upload_i32(b, v, 2, sh, &idx);
        free(v);
        free(seen);
        DSRT_TRY(st);
        n = ksel;
    }
    dsrt_op op = dsrt_op_init(DSRT_OP_MLA_DECODE);
    op.in[0] = ql;
    op.in[1] = qp;
    op.in[2] = cache;
    op.in[3] = bt;
    op.in[4] = rs;
    op.in[5] = kl;
    if (ksel) op.in[6] = idx;
    op.out[0] = o;
    op.p.format = DSRT_CACHE_FP8;
    op.p.page_size = (int32_t)page;
    op.p.scale = 0.1352337788608801f * 0.1352337788608801f / sqrtf(192.0f);
    c->ops[0][0] = op;
    c->nops = 1;
    c->copies = 1; /* the cache is far larger than any L2 */
    c->bytes = (double)T * (double)n * 656.0 + 2.0 * (double)(T * Hh * (Dc + Dr)) + 2.0 * (double)(T * Hh * Dc);
    c->flops = 2.0 * (double)T * (double)n * (double)Hh * (double)(Dc + Dr + Dc);
    return DSRT_OK;
}

static void case_decode(bench *b, const char *filter, int64_t T, int64_t ctx, int64_t ksel)
{
    bcase c;
    memset(&c, 0, sizeof c);
    if (ksel)
        snprintf(c.name, sizeof c.name, "mla_decode sparse b%lld top%lld of %lld, fp8", (long long)T, (long long)ksel,
                 (long long)ctx);
    else snprintf(c.name, sizeof c.name, "mla_decode dense b%lld ctx%lld, fp8 cache", (long long)T, (long long)ctx);
    if (!wanted(c.name, filter)) return;
    double us = 0;
    finish(b, &c, build_decode(b, &c, T, ctx, ksel), &us);
    if (!ksel && ctx == (b->small ? 128 : 4096)) b->dense4096_us = us;
    if (ksel && us > 0 && b->dense4096_us > 0)
        fprintf(b->out, "%-52s %10.2fx (sparse step / dense %s step)\n", "  ratio", us / b->dense4096_us,
                b->small ? "128" : "4096");
}

/* Indexer scores (which = 1), top-k (2), or both (3) for T query rows over ctx positions. */
static dsrt_status build_indexer(bench *b, bcase *c, int64_t T, int64_t ctx, int which)
{
    const int64_t Hi = 64, D = 128, page = 64, P = (ctx + page - 1) / page, k = 2048;
    double cache_bytes = (double)(T * ctx) * 132.0;
    c->copies = copies_for(cache_bytes);
    dsrt_tensor bt, rs, kl, w;
    DSRT_TRY(block_table(b, T, P, &bt));
    DSRT_TRY(const_i32(b, T, 1, 0, &rs));
    DSRT_TRY(const_i32(b, T, 0, (int32_t)ctx, &kl));
    int64_t sw[2] = {T, Hi};
    DSRT_TRY(tensor(b, DSRT_F32, 2, sw, 1.0f, &w));
    for (int cp = 0; cp < c->copies; cp++) {
        dsrt_tensor q, kc, sc, ix;
        int64_t sq[3] = {T, Hi, D}, ss[2] = {T, ctx}, si[2] = {T, k};
        DSRT_TRY(tensor(b, DSRT_E4M3, 3, sq, 24.0f, &q));
        dsrt_buffer *qs;
        DSRT_TRY(balloc(b, sizeof(float) * (size_t)(T * Hi), &qs));
        float *h = malloc(sizeof(float) * (size_t)(T * Hi));
        if (!h) return dsrt_error(DSRT_CODE_RESOURCE_EXHAUSTED, "bench: out of host memory");
        for (int64_t i = 0; i < T * Hi; i++) h[i] = ldexpf(1.0f, -8 - (int)(rnd(b) % 3));
        dsrt_status st = dsrt_stream_write(b->s, qs, 0, h, sizeof(float) * (size_t)(T * Hi));
        if (!st) st = dsrt_stream_sync(b->s);
        free(h);
        DSRT_TRY(st);
        DSRT_TRY(dsrt_tensor_set_scale(&q, qs, 0, DSRT_F32, 1, 128));
        DSRT_TRY(fp8_cache(b, T * P * page, D, 0, &kc));
        DSRT_TRY(tensor(b, DSRT_F32, 2, ss, which == 2 ? 1.0f : 0, &sc));
        DSRT_TRY(tensor(b, DSRT_I32, 2, si, 0, &ix));
        int n = 0;
        if (which & 1) {
            dsrt_op op = dsrt_op_init(DSRT_OP_INDEXER_SCORES);
            op.in[0] = q;
            op.in[1] = w;
            op.in[2] = kc;
            op.in[3] = bt;
            op.in[4] = rs;
            op.in[5] = kl;
            op.out[0] = sc;
            op.p.format = DSRT_CACHE_FP8;
            op.p.page_size = (int32_t)page;
            op.p.scale = 1.0f / sqrtf((float)D);
            c->ops[cp][n++] = op;
        }
        if (which & 2) {
            dsrt_op op = dsrt_op_init(DSRT_OP_TOPK);
            op.in[0] = sc;
            op.in[1] = kl;
            op.out[0] = ix;
            op.p.k = (int32_t)k;
            c->ops[cp][n++] = op;
        }
        c->nops = n;
    }
    c->bytes = 0;
    c->flops = 0;
    if (which & 1) {
        c->bytes += cache_bytes + 4.0 * (double)(T * ctx);
        c->flops += 2.0 * (double)(T * ctx) * (double)(Hi * D);
    }
    if (which & 2) c->bytes += 4.0 * (double)(T * ctx) + 4.0 * (double)(T * k);
    return DSRT_OK;
}

static void case_indexer(bench *b, const char *filter, int64_t T, int64_t ctx, int which)
{
    static const char *what[] = {"", "indexer_scores", "topk2048", "indexer_scores+topk2048"};
    bcase c;
    memset(&c, 0, sizeof c);
    snprintf(c.name, sizeof c.name, "%s T%lld ctx%lld", what[which], (long long)T, (long long)ctx);
    if (!wanted(c.name, filter)) return;
    double us = 0;
    finish(b, &c, build_indexer(b, &c, T, ctx, which), &us);
    if (us > 0 && which == 3)
        fprintf(b->out, "%-52s %10.2f us per query token per layer\n", "  per token", us / (double)T);
}

static dsrt_status build_gemm(bench *b, bcase *c, int64_t M, int64_t N, int64_t K, bool fp8)
{
    double wbytes = (double)(N * K) * (fp8 ? 1.0 : 2.0);
    c->copies = copies_for(wbytes);
    dsrt_tensor x, y;
    int64_t sx[2] = {M, K}, sy[2] = {M, N};
    DSRT_TRY(tensor(b, DSRT_BF16, 2, sx, 1.0f, &x));
    DSRT_TRY(tensor(b, DSRT_BF16, 2, sy, 0, &y));
    for (int cp = 0; cp < c->copies; cp++) {
        dsrt_tensor w;
        if (fp8) {
            DSRT_TRY(fp8_weight(b, N, K, &w));
        } else {
            int64_t sw[2] = {N, K};
            DSRT_TRY(tensor(b, DSRT_BF16, 2, sw, 0.05f, &w));
        }
        dsrt_op op = dsrt_op_init(DSRT_OP_LINEAR);
        op.in[0] = x;
        op.in[1] = w;
        op.out[0] = y;
        op.p.act_quant = fp8;
        op.p.scale_pow2 = true;
        c->ops[cp][0] = op;
    }
    c->nops = 1;
    c->bytes = 2.0 * (double)(M * K) + wbytes + 2.0 * (double)(M * N);
    c->flops = 2.0 * (double)M * (double)N * (double)K;
    c->fp8_peak = fp8;
    return DSRT_OK;
}

static void case_gemm(bench *b, const char *filter, int64_t M, int64_t N, int64_t K, bool fp8)
{
    bcase c;
    memset(&c, 0, sizeof c);
    snprintf(c.name, sizeof c.name, "%s M%lld N%lld K%lld", fp8 ? "gemm_fp8_blockscaled" : "gemm_bf16", (long long)M,
             (long long)N, (long long)K);
    if (!wanted(c.name, filter)) return;
    finish(b, &c, build_gemm(b, &c, M, N, K, fp8), NULL);
}

int dsrt_bench_ops(dsrt_device *dev, const char *filter, double measured_gbs, FILE *out)
{
    bench b;
    memset(&b, 0, sizeof b);
    b.dev = dev;
    b.caps = dsrt_device_get_caps(dev);
    b.out = out ? out : stdout;
    b.rng = 0x5eedb37c4ull;
    b.small = b.caps->type == DSRT_DEVICE_CPU;
    dsrt_status st = dsrt_stream_create(dev, &b.s);
    if (st) {
        fprintf(b.out, "dsrt bench --ops: %s\n", dsrt_status_message(st));
        dsrt_status_free(st);
        return 1;
    }
    fprintf(b.out, "device %s: %s (%s)%s\n", dsrt_device_label(dev), b.caps->name, b.caps->driver,
            b.small ? "  [CPU: shapes scaled down]" : "");
    b.bw_limit = b.caps->peak_mem_gbs > 0 ? b.caps->peak_mem_gbs : measured_gbs;
    fprintf(b.out, "peaks: memory %.0f GB/s%s, bf16 %.1f TFLOP/s, fp8 %.1f TFLOP/s\n", b.bw_limit,
            b.caps->peak_mem_gbs > 0 || b.bw_limit <= 0 ? "" : " (measured device copy: the device reports no peak)",
            b.caps->peak_tflops_bf16, b.caps->peak_tflops_fp8);
    fprintf(b.out, "%-52s %10s %9s %8s %9s %9s\n", "case", "time(us)", "GB/s", "%peakBW", "TFLOP/s", "%peak");
    int64_t T = b.small ? 2 : 64, s = b.small ? 32 : 1;
    case_decode(&b, filter, T, 4096 / s, 0);
    case_decode(&b, filter, T, 32768 / s, 0);
    case_decode(&b, filter, T, 131072 / s, 2048 / (b.small ? 16 : 1));
    int64_t tis[2] = {1, T};
    for (int i = 0; i < 2; i++)
        for (int which = 1; which <= 3; which++) case_indexer(&b, filter, tis[i], 131072 / s, which);
    static const int64_t nk[][2] = {{2112, 7168}, {24576, 1536}, {32768, 512}, {7168, 16384}, {4096, 7168}, {7168, 2048}};
    int64_t ms[5] = {1, 64, 128, 512, 4096}; /* 1: a decode step's GEMV; 512: a prefill chunk */
    for (int mi = 0; mi < 5; mi++)
        for (size_t j = 0; j < sizeof nk / sizeof nk[0]; j++) {
            int64_t M = b.small ? (ms[mi] + 15) / 16 : ms[mi], N = b.small ? nk[j][0] / 8 : nk[j][0],
                    K = b.small ? nk[j][1] / 8 : nk[j][1];
            if (b.small) K = (K + 127) / 128 * 128;
            case_gemm(&b, filter, M, N, K, true);
            case_gemm(&b, filter, M, N, K, false);
        }
    dsrt_stream_release(b.s);
    return 0;
}
