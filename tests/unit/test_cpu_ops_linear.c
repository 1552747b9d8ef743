/* CPU linear layers against naive loops written from ops.h: dense (float and FP8 weights with f32 or
 * UE8M0 block scales, partial edge blocks), the official FP8 GEMM (act_quant), grouped expert GEMMs and
 * per-head products. */
#include "test_cpu_ops_common.h"

/* A weight [G?, N, K] with values: float dtypes hold wv; e4m3 holds random codes and scales, and wv
 * receives the dequantized values fp8 * scale (fp32 product). */
typedef struct {
    dsrt_tensor t;
    float *wv; /* [G][N][K] dequantized */
} weight;

static weight make_weight(dsrt_rng *r, int64_t G, int64_t N, int64_t K, dsrt_dtype dt, dsrt_dtype sdt, int br, int bc,
                          bool int_codes)
{
    weight w;
    int nd = G ? 3 : 2;
    int64_t shape[3] = {G, N, K};
    w.t = tnew(dt, nd, nd == 3 ? shape : shape + 1);
    int64_t g1 = G ? G : 1, n = g1 * N * K;
    w.wv = falloc(n);
    if (dt != DSRT_E4M3) {
        frand(r, w.wv, n, 0.5f);
        tput(&w.t, w.wv);
        tget(&w.t, w.wv);
        return w;
    }
    tscale(&w.t, sdt, br, bc);
    uint8_t *q = tbase(&w.t);
    for (int64_t i = 0; i < n; i++) {
        if (int_codes) { /* small integers: every partial sum of products is exact in fp32 */
            q[i] = ref_e4m3_code((float)rand_int(r, -16, 16));
        } else {
            q[i] = (uint8_t)rand_int(r, 0, 255);
            if ((q[i] & 0x7f) == 0x7f) q[i] = 0x3a;
        }
    }
    int64_t gr = (N + br - 1) / br, gc = (K + bc - 1) / bc;
    for (int64_t g = 0; g < g1; g++)
        for (int64_t i = 0; i < gr; i++)
            for (int64_t j = 0; j < gc; j++) {
                uint8_t e = (uint8_t)rand_int(r, 118, 124);
                float v = 0.001f + 0.01f * dsrt_rng_uniform(r); /* f32 scales are not powers of two */
                tscale_set(&w.t, g, i, j, v, e);
            }
    for (int64_t g = 0; g < g1; g++)
        for (int64_t rr = 0; rr < N; rr++)
            for (int64_t c = 0; c < K; c++) {
                int64_t i = (g * N + rr) * K + c;
                w.wv[i] = ref_e4m3_decode(q[i]) * tscale_get(&w.t, g, rr / br, c / bc);
            }
    return w;
}

/* Reference of rows [r0, r1) of y = alpha * x . W^T (weight group g), into ref/mag (indexed by row). */
static void ref_linear_rows(const float *xv, int64_t K, const weight *w, int64_t g, int64_t N, int64_t r0, int64_t r1,
                            float alpha, bool act_quant, bool pow2, double *ref, double *mag)
{
    float *qa = falloc(K), *sa = falloc((K + 127) / 128);
    for (int64_t m = r0; m < r1; m++) {
        const float *x = xv + m * K;
        if (act_quant)
            for (int64_t b = 0; b * 128 < K; b++) ref_act_quant_block(x + b * 128, 128, pow2, qa + b * 128, sa + b);
        for (int64_t n = 0; n < N; n++) {
            const float *wr = w->wv + (g * N + n) * K;
            double acc = 0, ma = 0;
            if (!act_quant) {
                for (int64_t k = 0; k < K; k++) {
                    acc += (double)x[k] * wr[k];
                    ma += fabs((double)x[k] * wr[k]);
                }
                ref[m * N + n] = alpha * acc;
                mag[m * N + n] = fabs(alpha) * ma;
                continue;
            }
            /* The official FP8 GEMM: per 128-block partial sum of fp8 products, times (sa * sb), added
             * into an fp32 accumulator in block order. */
            float facc = 0;
            for (int64_t b = 0; b * 128 < K; b++) {
                double part = 0;
                for (int64_t k = b * 128; k < b * 128 + 128; k++) {
                    double qb = ref_e4m3_decode(((const uint8_t *)tbase(&w->t))[telem(&w->t, (g * N + n) * K + k)]);
                    part += (double)qa[k] * qb;
                    ma += fabs((double)qa[k] * qb) * sa[b] * tscale_get(&w->t, g, n / w->t.scale.block[0], k / w->t.scale.block[1]);
                }
                float sb = tscale_get(&w->t, g, n / w->t.scale.block[0], (b * 128) / w->t.scale.block[1]);
                facc += (float)part * (sa[b] * sb);
            }
            ref[m * N + n] = (double)(alpha * facc);
            mag[m * N + n] = fabs(alpha) * ma;
        }
    }
    free(qa);
    free(sa);
}

typedef struct {
    int64_t M, K, N;
    dsrt_dtype dx, dw, sdt, dy;
    int br, bc;
    bool act_quant, pow2, strided;
    float alpha;
} lin_case;

static void run_linear(dsrt_rng *r, const lin_case *c)
{
    weight w = make_weight(r, 0, c->N, c->K, c->dw, c->sdt, c->br, c->bc, false);
    dsrt_tensor x = c->strided ? tnew_cols(c->dx, 2, (int64_t[]){c->M, c->K}, 5, 2) : T2(c->dx, c->M, c->K);
    dsrt_tensor y = c->strided ? tnew_cols(c->dy, 2, (int64_t[]){c->M, c->N}, 3, 1) : T2(c->dy, c->M, c->N);
    float *xv = falloc(c->M * c->K);
    for (int64_t m = 0; m < c->M; m++) {
        float amp = (float)ldexp(1.0, rand_int(r, -3, 3));
        for (int64_t k = 0; k < c->K; k++) xv[m * c->K + k] = amp * dsrt_rng_normal(r);
    }
    tput(&x, xv);
    tget(&x, xv);
    ck_ok(dsrt_linear(E.s, &x, &w.t, c->act_quant, c->pow2, c->alpha, &y));
    env_sync();
    double *ref = dalloc(c->M * c->N), *mag = dalloc(c->M * c->N);
    ref_linear_rows(xv, c->K, &w, 0, c->N, 0, c->M, c->alpha, c->act_quant, c->pow2, ref, mag);
    char what[160];
    snprintf(what, sizeof what, "linear M=%lld K=%lld N=%lld x %s w %s/%s %dx%d y %s aq=%d p2=%d", (long long)c->M,
             (long long)c->K, (long long)c->N, dsrt_dtype_name(c->dx), dsrt_dtype_name(c->dw), dsrt_dtype_name(c->sdt),
             c->br, c->bc, dsrt_dtype_name(c->dy), c->act_quant, c->pow2);
    expect_close(what, &y, ref, mag, 1e-5);
    if (c->strided && c->M > 0) { /* columns beside the output slice stay untouched */
        size_t es = dsrt_dtype_size(c->dy), row = (size_t)(c->N + 4) * es;
        for (int64_t m = 0; m < c->M; m++) {
            expect_untouched(what, y.buf, m * row, m * row + 3 * es);
            expect_untouched(what, y.buf, m * row + (size_t)(3 + c->N) * es, (m + 1) * row);
        }
    }
    free(xv);
    free(w.wv);
    free(ref);
    free(mag);
}

START_TEST(test_linear_float_weights)
{
    dsrt_rng r = {21};
    const lin_case cases[] = {
        {5, 130, 33, DSRT_BF16, DSRT_BF16, DSRT_F32, DSRT_BF16, 0, 0, false, false, true, 1.0f},
        {1, 256, 129, DSRT_F32, DSRT_F32, DSRT_F32, DSRT_F32, 0, 0, false, false, false, 1.0f},
        {67, 1, 1, DSRT_F16, DSRT_F16, DSRT_F32, DSRT_F16, 0, 0, false, false, true, 0.5f},
        {70, 64, 40, DSRT_BF16, DSRT_F32, DSRT_F32, DSRT_F32, 0, 0, false, false, true, -2.0f},
        {0, 64, 8, DSRT_BF16, DSRT_BF16, DSRT_F32, DSRT_BF16, 0, 0, false, false, false, 1.0f},
        {3, 7, 0, DSRT_F32, DSRT_BF16, DSRT_F32, DSRT_F32, 0, 0, false, false, false, 1.0f},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_linear(&r, &cases[i]);
}
END_TEST

START_TEST(test_linear_fp8_weights)
{
    /* W dequantized exactly (fp8 * scale in fp32), 128x128 blocks with partial edges, f32 and UE8M0. */
    dsrt_rng r = {22};
    const lin_case cases[] = {
        {4, 200, 130, DSRT_BF16, DSRT_E4M3, DSRT_F32, DSRT_BF16, 128, 128, false, false, true, 1.0f},
        {3, 300, 257, DSRT_F32, DSRT_E4M3, DSRT_UE8M0, DSRT_F32, 128, 128, false, false, false, 1.0f},
        {1, 129, 1, DSRT_BF16, DSRT_E4M3, DSRT_UE8M0, DSRT_F16, 128, 128, false, false, true, 0.25f},
        {66, 256, 31, DSRT_BF16, DSRT_E4M3, DSRT_F32, DSRT_BF16, 1, 128, false, false, false, 1.0f},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_linear(&r, &cases[i]);
}
END_TEST

START_TEST(test_linear_act_quant)
{
    /* The official FP8 GEMM, random data: tolerance on the per-block partial sums only. */
    dsrt_rng r = {23};
    const lin_case cases[] = {
        {5, 256, 130, DSRT_BF16, DSRT_E4M3, DSRT_UE8M0, DSRT_BF16, 128, 128, true, true, true, 1.0f},
        {3, 384, 40, DSRT_F32, DSRT_E4M3, DSRT_F32, DSRT_F32, 128, 128, true, false, false, 1.0f},
        {1, 128, 1, DSRT_BF16, DSRT_E4M3, DSRT_F32, DSRT_F32, 128, 128, true, true, true, 3.0f},
        {66, 256, 33, DSRT_BF16, DSRT_E4M3, DSRT_F32, DSRT_F32, 128, 256, true, false, false, 1.0f},
        {0, 128, 4, DSRT_BF16, DSRT_E4M3, DSRT_UE8M0, DSRT_BF16, 128, 128, true, true, false, 1.0f},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_linear(&r, &cases[i]);
}
END_TEST

START_TEST(test_linear_act_quant_exact)
{
    /* With activations that quantize to integers and integer weight codes every per-block partial sum is
     * exact, so the result is fixed by the op's arithmetic order: acc += part * (sa * sb) per block in
     * fp32, y = round(alpha * acc). f32 scales that are not powers of two make a different order, e.g.
     * (part * sa) * sb, round differently. */
    dsrt_rng r = {24};
    const int64_t M = 6, K = 384, N = 50;
    for (int p = 0; p < 2; p++)
        for (int d = 0; d < 2; d++) {
            dsrt_dtype dy = d ? DSRT_BF16 : DSRT_F32;
            weight w = make_weight(&r, 0, N, K, DSRT_E4M3, DSRT_F32, 128, 128, true);
            dsrt_tensor x = T2(DSRT_F32, M, K), y = T2(dy, M, N);
            float *xv = falloc(M * K), *qa = falloc(K), *sa = falloc(3);
            for (int64_t m = 0; m < M; m++)
                for (int64_t b = 0; b < 3; b++) {
                    float c = 0.37f * (float)(m + 1) * (float)(b + 2) * dsrt_rng_uniform(&r) + 0.01f;
                    for (int64_t k = 0; k < 128; k++) xv[m * K + b * 128 + k] = c * (float)rand_int(&r, -12, 12);
                    xv[m * K + b * 128 + rand_int(&r, 0, 127)] = c * 448.0f; /* the block's amax */
                }
            tput(&x, xv);
            ck_ok(dsrt_linear(E.s, &x, &w.t, true, p, 0.75f, &y));
            env_sync();
            float *want = falloc(M * N);
            const uint8_t *wq = tbase(&w.t);
            for (int64_t m = 0; m < M; m++) {
                for (int64_t b = 0; b < 3; b++) ref_act_quant_block(xv + m * K + b * 128, 128, p, qa + b * 128, sa + b);
                for (int64_t n = 0; n < N; n++) {
                    float acc = 0;
                    for (int64_t b = 0; b < 3; b++) {
                        float part = 0;
                        for (int64_t k = b * 128; k < b * 128 + 128; k++) part += qa[k] * ref_e4m3_decode(wq[n * K + k]);
                        acc += part * (sa[b] * tscale_get(&w.t, 0, n / 128, b));
                    }
                    want[m * N + n] = 0.75f * acc;
                }
            }
            expect_exact(p ? "act_quant exact (pow2)" : "act_quant exact (f32 scales)", &y, want);
            free(xv);
            free(qa);
            free(sa);
            free(want);
            free(w.wv);
        }
}
END_TEST

/* ---- grouped ---- */

START_TEST(test_linear_grouped)
{
    /* Rows outside [offsets[0], offsets[G]) are not written; empty groups are fine. */
    dsrt_rng r = {25};
    struct {
        dsrt_dtype dw, sdt;
        bool act_quant, pow2;
        int64_t K;
    } cases[] = {
        {DSRT_BF16, DSRT_F32, false, false, 70},
        {DSRT_E4M3, DSRT_UE8M0, false, false, 200},
        {DSRT_E4M3, DSRT_F32, true, false, 256},
        {DSRT_E4M3, DSRT_UE8M0, true, true, 128},
    };
    const int64_t G = 5, N = 35, R = 13;
    const int32_t offs[6] = {2, 2, 5, 5, 11, 11};
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        int64_t K = cases[ci].K;
        weight w = make_weight(&r, G, N, K, cases[ci].dw, cases[ci].sdt, 128, 128, false);
        dsrt_tensor x = tnew_cols(DSRT_BF16, 2, (int64_t[]){R, K}, 1, 0), y = T2(DSRT_F32, R, N), off = T1(DSRT_I32, G + 1);
        float *xv = falloc(R * K);
        frand(&r, xv, R * K, 1.0f);
        tput(&x, xv);
        tget(&x, xv);
        tput_i32(&off, offs);
        ck_ok(dsrt_linear_grouped(E.s, &x, &w.t, &off, cases[ci].act_quant, cases[ci].pow2, &y));
        env_sync();
        double *ref = dalloc(R * N), *mag = dalloc(R * N);
        for (int64_t g = 0; g < G; g++)
            ref_linear_rows(xv, K, &w, g, N, offs[g], offs[g + 1], 1.0f, cases[ci].act_quant, cases[ci].pow2, ref, mag);
        dsrt_tensor used;
        ck_ok(dsrt_tensor_slice(&y, 0, offs[0], offs[G] - offs[0], &used));
        char what[64];
        snprintf(what, sizeof what, "linear_grouped case %zu", ci);
        expect_close(what, &used, ref + offs[0] * N, mag + offs[0] * N, 1e-5);
        expect_untouched(what, y.buf, 0, (size_t)(offs[0] * N * 4));
        expect_untouched(what, y.buf, (size_t)(offs[G] * N * 4), (size_t)(R * N * 4));
        free(xv);
        free(w.wv);
        free(ref);
        free(mag);
    }
    /* All groups empty: nothing is written. */
    weight w = make_weight(&r, 2, 4, 8, DSRT_F32, DSRT_F32, 1, 1, false);
    dsrt_tensor x = T2(DSRT_F32, 3, 8), y = T2(DSRT_F32, 3, 4), off = T1(DSRT_I32, 3);
    tput_i32(&off, (const int32_t[]){1, 1, 1});
    ck_ok(dsrt_linear_grouped(E.s, &x, &w.t, &off, false, false, &y));
    env_sync();
    expect_untouched("linear_grouped (all empty)", y.buf, 0, 48);
    free(w.wv);
}
END_TEST

/* ---- head_linear ---- */

START_TEST(test_head_linear)
{
    dsrt_rng r = {26};
    const int64_t Ts[] = {3, 1, 0}, Hs[] = {4, 2, 3}, Ks[] = {24, 130, 8}, Ns[] = {40, 7, 5};
    const dsrt_dtype dts[] = {DSRT_BF16, DSRT_F32, DSRT_F16};
    for (int c = 0; c < 3; c++)
        for (int tr = 0; tr < 2; tr++) {
            int64_t T = Ts[c], Hh = Hs[c], K = Ks[c], N = Ns[c];
            /* x: the nope part of q [T, Hh, K + 6] (a strided view), as the absorbed MLA uses it */
            dsrt_tensor x = tnew_cols(dts[c], 3, (int64_t[]){T, Hh, K}, 0, 6);
            dsrt_tensor w = tr ? T3(dts[(c + 1) % 3], Hh, K, N) : T3(dts[(c + 1) % 3], Hh, N, K);
            dsrt_tensor y = T3(dts[(c + 2) % 3], T, Hh, N);
            float *xv = falloc(T * Hh * K), *wv = falloc(Hh * N * K);
            frand(&r, xv, T * Hh * K, 1.0f);
            frand(&r, wv, Hh * N * K, 1.0f);
            tput(&x, xv);
            tput(&w, wv);
            tget(&x, xv);
            tget(&w, wv);
            ck_ok(dsrt_head_linear(E.s, &x, &w, tr, &y));
            env_sync();
            double *ref = dalloc(T * Hh * N), *mag = dalloc(T * Hh * N);
            for (int64_t t = 0; t < T; t++)
                for (int64_t h = 0; h < Hh; h++)
                    for (int64_t n = 0; n < N; n++) {
                        double acc = 0, ma = 0;
                        for (int64_t k = 0; k < K; k++) {
                            double wk = tr ? wv[(h * K + k) * N + n] : wv[(h * N + n) * K + k]; /* W[h,k,n] or W[h,n,k] */
                            acc += xv[(t * Hh + h) * K + k] * wk;
                            ma += fabs(xv[(t * Hh + h) * K + k] * wk);
                        }
                        ref[(t * Hh + h) * N + n] = acc;
                        mag[(t * Hh + h) * N + n] = ma;
                    }
            expect_close(tr ? "head_linear (transposed)" : "head_linear", &y, ref, mag, 1e-5);
            free(xv);
            free(wv);
            free(ref);
            free(mag);
        }
}
END_TEST

int main(void)
{
    Suite *s = ops_suite("cpu_ops_linear");
    TCase *tc = ops_tcase(s, "linear");
    tcase_add_test(tc, test_linear_float_weights);
    tcase_add_test(tc, test_linear_fp8_weights);
    tcase_add_test(tc, test_linear_act_quant);
    tcase_add_test(tc, test_linear_act_quant_exact);
    tcase_add_test(tc, test_linear_grouped);
    tcase_add_test(tc, test_head_linear);
    return dsrt_run_suite(s);
}
