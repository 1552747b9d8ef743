/* CPU reference kernels against naive loops written from ops.h: conversions, embedding, norms, RoPE,
 * SwiGLU, add, activation quantization, Hadamard and cache writes. (Linear layers, attention and MoE
 * are in test_cpu_ops_*.c.) Element-wise ops must round exactly like the reference formats. */
#include "test_cpu_ops_common.h"

static const dsrt_dtype FLOATS[3] = {DSRT_F32, DSRT_BF16, DSRT_F16};

/* Random values with special cases mixed in: ties of bf16/f16 rounding, zeros of both signs, values
 * past the f16 and e4m3 ranges, subnormals, infinities and NaN. */
static void special_values(dsrt_rng *r, float *v, int64_t n)
{
    static const float sp[] = {0.0f, -0.0f, 1.0f + 0x1p-8f, 1.0f + 0x3p-8f, -(1.0f + 0x1p-8f), 1.0f + 0x1p-11f,
                               1.0f + 0x3p-11f, 65519.0f, 65520.0f, 1e6f, 448.0f, 464.0f, 465.0f, -500.0f,
                               0x1p-10f, 0x1.8p-10f, 0x1p-133f, 0x1p-126f, 1e-40f, INFINITY, -INFINITY, NAN,
                               0x1.fffffep127f, 3.0e38f};
    for (int64_t i = 0; i < n; i++) {
        if (i < (int64_t)(sizeof sp / sizeof sp[0])) v[i] = sp[i];
        else v[i] = dsrt_rng_normal(r) * (float)ldexp(1.0, rand_int(r, -12, 12));
    }
}

/* ---- convert ---- */

START_TEST(test_convert_floats)
{
    dsrt_rng r = {1};
    const int64_t M = 7, N = 37;
    float *v = falloc(M * N), *want = falloc(M * N);
    special_values(&r, v, M * N);
    for (int a = 0; a < 3; a++)
        for (int b = 0; b < 4; b++) {
            dsrt_dtype dy = b < 3 ? FLOATS[b] : DSRT_E4M3;
            /* strided input and output (slices of wider rows) */
            dsrt_tensor x = tnew_cols(FLOATS[a], 2, (int64_t[]){M, N}, 3, 2);
            dsrt_tensor y = tnew_cols(dy, 2, (int64_t[]){M, N}, 1, 4);
            tput(&x, v);
            ck_ok(dsrt_convert(E.s, &x, &y));
            env_sync();
            for (int64_t i = 0; i < M * N; i++) want[i] = tget1(&x, i); /* the stored input */
            char what[64];
            snprintf(what, sizeof what, "convert %s->%s", dsrt_dtype_name(FLOATS[a]), dsrt_dtype_name(dy));
            expect_exact(what, &y, want);
            /* the columns around the slice are not written */
            for (int64_t m = 0; m < M; m++) {
                size_t es = dsrt_dtype_size(dy), row = (size_t)(N + 5) * es;
                expect_untouched(what, y.buf, m * row, m * row + es);
                expect_untouched(what, y.buf, m * row + (size_t)(1 + N) * es, (m + 1) * row);
            }
        }
    free(v);
    free(want);
}
END_TEST

START_TEST(test_convert_scaled_fp8)
{
    /* W[r][c] = fp8[r][c] * s[r/br][c/bc], the product in fp32, edge blocks partial. */
    dsrt_rng r = {2};
    struct {
        int nd;
        int64_t shape[3];
        int br, bc;
        dsrt_dtype sdt;
    } cases[] = {
        {2, {130, 200}, 128, 128, DSRT_F32},  {2, {130, 200}, 128, 128, DSRT_UE8M0},
        {3, {2, 129, 131}, 128, 128, DSRT_UE8M0}, {2, {5, 300}, 1, 128, DSRT_F32},
        {1, {300}, 1, 128, DSRT_F32},
    };
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        dsrt_tensor x = tnew(DSRT_E4M3, cases[ci].nd, cases[ci].shape);
        tscale(&x, cases[ci].sdt, cases[ci].br, cases[ci].bc);
        int64_t n = tnumel(&x);
        uint8_t *q = tbase(&x);
        for (int64_t i = 0; i < n; i++) {
            q[i] = (uint8_t)rand_int(&r, 0, 255);
            if ((q[i] & 0x7f) == 0x7f) q[i] = 0x42; /* NaN codes are tested elsewhere */
        }
        int64_t grid = dsrt_tensor_scale_numel(&x);
        for (int64_t i = 0; i < grid; i++) {
            uint8_t e = (uint8_t)rand_int(&r, 110, 140);
            if (cases[ci].sdt == DSRT_UE8M0) ((uint8_t *)dsrt_buffer_host_ptr(x.scale.buf))[i] = e;
            else ((float *)dsrt_buffer_host_ptr(x.scale.buf))[i] = 0.01f + dsrt_rng_uniform(&r); /* not powers of 2 */
        }
        int nd = cases[ci].nd;
        int64_t rows = nd >= 2 ? x.shape[nd - 2] : 1, cols = x.shape[nd - 1];
        float *want = falloc(n);
        for (int64_t i = 0; i < n; i++) {
            int64_t c = i % cols, rr = (i / cols) % rows, lead = i / (cols * rows);
            want[i] = ref_e4m3_decode(q[i]) * tscale_get(&x, lead, rr / cases[ci].br, c / cases[ci].bc);
        }
        for (int b = 0; b < 3; b++) {
            dsrt_tensor y = tnew(FLOATS[b], nd, cases[ci].shape);
            ck_ok(dsrt_convert(E.s, &x, &y));
            env_sync();
            char what[64];
            snprintf(what, sizeof what, "dequant case %zu to %s", ci, dsrt_dtype_name(FLOATS[b]));
            expect_exact(what, &y, want);
        }
        free(want);
    }
}
END_TEST

START_TEST(test_convert_integers_and_empty)
{
    dsrt_tensor a = T2(DSRT_I32, 3, 5), b = T2(DSRT_I32, 3, 5);
    int32_t v[15];
    for (int i = 0; i < 15; i++) v[i] = (i - 7) * 1000003;
    tput_i32(&a, v);
    ck_ok(dsrt_convert(E.s, &a, &b));
    dsrt_tensor u = T1(DSRT_U8, 9), u2 = T1(DSRT_U8, 9);
    for (int i = 0; i < 9; i++) ((uint8_t *)tbase(&u))[i] = (uint8_t)(250 + i);
    ck_ok(dsrt_convert(E.s, &u, &u2));
    dsrt_tensor e = T2(DSRT_F32, 0, 8), e2 = T2(DSRT_BF16, 0, 8);
    ck_ok(dsrt_convert(E.s, &e, &e2));
    env_sync();
    for (int i = 0; i < 15; i++) ck_assert_int_eq(tget_i32(&b, i), v[i]);
    ck_assert_mem_eq(tbase(&u), tbase(&u2), 9);
    expect_untouched("empty convert", e2.buf, 0, 1);
}
END_TEST

/* ---- embed ---- */

START_TEST(test_embed)
{
    dsrt_rng r = {3};
    const int64_t V = 11, H = 37;
    float *tab = falloc(V * H);
    frand(&r, tab, V * H, 2.0f);
    for (int a = 0; a < 3; a++) {
        dsrt_tensor table = tnew_cols(FLOATS[a], 2, (int64_t[]){V, H}, 2, 0);
        tput(&table, tab);
        int32_t ids[7] = {3, 0, 10, -1, 11, 3, 2147483647};
        dsrt_tensor tid = T1(DSRT_I32, 7);
        tput_i32(&tid, ids);
        for (int b = 0; b < 3; b++) {
            dsrt_tensor y = tnew_cols(FLOATS[b], 2, (int64_t[]){7, H}, 0, 3);
            ck_ok(dsrt_embed(E.s, &table, &tid, &y));
            env_sync();
            float *want = falloc(7 * H);
            for (int t = 0; t < 7; t++)
                for (int64_t h = 0; h < H; h++)
                    want[t * H + h] = (ids[t] >= 0 && ids[t] < V) ? tget1(&table, ids[t] * H + h) : 0.0f;
            expect_exact("embed", &y, want);
            free(want);
        }
    }
    dsrt_tensor none = T1(DSRT_I32, 0), ty = T2(DSRT_F32, 0, H), table = T2(DSRT_F32, V, H);
    ck_ok(dsrt_embed(E.s, &table, &none, &ty));
    env_sync();
    free(tab);
}
END_TEST

/* ---- norms ---- */

static void rms_case(dsrt_rng *r, int64_t M, int64_t D, dsrt_dtype dx, dsrt_dtype dw, bool with_res, dsrt_dtype dres,
                     dsrt_dtype dy, bool alias)
{
    float *xv = falloc(M * D), *wv = falloc(D), *rv = falloc(M * D);
    frand(r, xv, M * D, 1.5f);
    frand(r, wv, D, 1.0f);
    frand(r, rv, M * D, 3.0f);
    dsrt_tensor x = tnew_cols(dx, 2, (int64_t[]){M, D}, 1, 1), w = T1(dw, D);
    dsrt_tensor res = T2(dres, M, D), y = T2(dy, M, D), ro = alias ? res : T2(dres, M, D);
    tput(&x, xv);
    tput(&w, wv);
    tput(&res, rv);
    /* the reference reads what the tensors hold */
    tget(&x, xv);
    tget(&w, wv);
    tget(&res, rv);
    float eps = 1e-6f;
    ck_ok(dsrt_rms_norm(E.s, &x, &w, with_res ? &res : NULL, eps, &y, with_res ? &ro : NULL));
    env_sync();
    double *ref = dalloc(M * D);
    float *sum = falloc(M * D);
    for (int64_t m = 0; m < M; m++) {
        double ss = 0;
        for (int64_t i = 0; i < D; i++) {
            float s = with_res ? xv[m * D + i] + rv[m * D + i] : xv[m * D + i]; /* fp32 sum */
            sum[m * D + i] = s;
            ss += (double)s * s;
        }
        double inv = 1.0 / sqrt(ss / (double)D + eps);
        for (int64_t i = 0; i < D; i++) ref[m * D + i] = wv[i] * (sum[m * D + i] * inv); /* from the fp32 sum */
    }
    char what[96];
    snprintf(what, sizeof what, "rms_norm M=%lld D=%lld %s res=%d %s -> %s", (long long)M, (long long)D,
             dsrt_dtype_name(dx), with_res, dsrt_dtype_name(dres), dsrt_dtype_name(dy));
    expect_close(what, &y, ref, NULL, 1e-5);
    if (with_res) expect_exact(what, &ro, sum);
    free(xv);
    free(wv);
    free(rv);
    free(ref);
    free(sum);
}

START_TEST(test_rms_norm)
{
    dsrt_rng r = {4};
    rms_case(&r, 5, 64, DSRT_F32, DSRT_F32, false, DSRT_F32, DSRT_F32, false);
    rms_case(&r, 1, 7, DSRT_BF16, DSRT_BF16, false, DSRT_F32, DSRT_BF16, false);
    rms_case(&r, 3, 300, DSRT_BF16, DSRT_F32, false, DSRT_F32, DSRT_F16, false);
    rms_case(&r, 0, 64, DSRT_F32, DSRT_F32, true, DSRT_F32, DSRT_F32, false);
    /* With a residual: residual_out = round(x + r), and the norm reads the fp32 sum. A bf16 residual
     * with an f32 y makes a kernel that normalizes the rounded sum miss by far more than 1e-5. */
    rms_case(&r, 4, 300, DSRT_BF16, DSRT_BF16, true, DSRT_BF16, DSRT_F32, false);
    rms_case(&r, 4, 129, DSRT_BF16, DSRT_BF16, true, DSRT_BF16, DSRT_BF16, true); /* residual_out aliases */
    rms_case(&r, 2, 64, DSRT_F32, DSRT_BF16, true, DSRT_F16, DSRT_F32, true);
    rms_case(&r, 3, 48, DSRT_F16, DSRT_F32, true, DSRT_F32, DSRT_BF16, false);
}
END_TEST

START_TEST(test_layer_norm)
{
    dsrt_rng r = {5};
    const int64_t Ms[] = {3, 1, 2, 0}, Ds[] = {128, 1, 257, 16};
    for (int c = 0; c < 4; c++) {
        int64_t M = Ms[c], D = Ds[c];
        dsrt_dtype dx = FLOATS[c % 3], dy = FLOATS[(c + 1) % 3];
        float *xv = falloc(M * D), *wv = falloc(D), *bv = falloc(D);
        frand(&r, xv, M * D, 2.0f);
        for (int64_t i = 0; i < M * D; i++) xv[i] += 3.0f; /* a mean far from 0 */
        frand(&r, wv, D, 1.0f);
        frand(&r, bv, D, 1.0f);
        dsrt_tensor x = tnew_cols(dx, 2, (int64_t[]){M, D}, 0, 2), w = T1(DSRT_BF16, D), b = T1(DSRT_F32, D);
        dsrt_tensor y = T2(dy, M, D);
        tput(&x, xv);
        tput(&w, wv);
        tput(&b, bv);
        tget(&x, xv);
        tget(&w, wv);
        ck_ok(dsrt_layer_norm(E.s, &x, &w, &b, 1e-6f, &y));
        env_sync();
        double *ref = dalloc(M * D), *mag = dalloc(M * D);
        for (int64_t m = 0; m < M; m++) {
            double mean = 0, var = 0;
            for (int64_t i = 0; i < D; i++) mean += xv[m * D + i];
            mean /= (double)D;
            for (int64_t i = 0; i < D; i++) var += (xv[m * D + i] - mean) * (xv[m * D + i] - mean);
            var /= (double)D; /* biased */
            for (int64_t i = 0; i < D; i++) {
                double nrm = (xv[m * D + i] - mean) / sqrt(var + 1e-6);
                ref[m * D + i] = nrm * wv[i] + bv[i];
                /* the centred value loses the bits of the mean: scale the tolerance by it */
                mag[m * D + i] = fabs(wv[i]) * (fabs(nrm) + fabs(mean) / sqrt(var + 1e-6) * 4.0) + fabs(bv[i]);
            }
        }
        expect_close("layer_norm", &y, ref, mag, 1e-5);
        free(xv);
        free(wv);
        free(bv);
        free(ref);
        free(mag);
    }
}
END_TEST

/* ---- RoPE ---- */

static void rope_case(dsrt_rng *r, int64_t T, int64_t H, int64_t R, bool interleaved, dsrt_dtype dx, dsrt_dtype dy,
                      bool in_place, bool strided)
{
    const int64_t P = 9;
    int nd = H ? 3 : 2;
    int64_t shape[3] = {T, H ? H : R, R};
    float *cs = falloc(P * R);
    for (int64_t p = 0; p < P; p++)
        for (int64_t i = 0; i < R / 2; i++) {
            float ang = (float)p * powf(10000.0f, -2.0f * (float)i / (float)R) + 0.3f * dsrt_rng_uniform(r);
            cs[(p * (R / 2) + i) * 2] = cosf(ang);
            cs[(p * (R / 2) + i) * 2 + 1] = sinf(ang);
        }
    dsrt_tensor tab = T3(DSRT_F32, P, R / 2, 2);
    tput(&tab, cs);
    /* x: a slice of the last dimension (the rope part of q: [nope | rope]) when strided */
    dsrt_tensor x = strided ? tnew_cols(dx, nd, shape, 5, 0) : tnew(dx, nd, shape);
    dsrt_tensor y = in_place ? x : tnew(dy, nd, shape);
    int64_t n = tnumel(&x), rows = n / R;
    float *xv = falloc(n), *want = falloc(n);
    frand(r, xv, n, 1.0f);
    tput(&x, xv);
    tget(&x, xv);
    int32_t *pos = calloc((size_t)T + 1, sizeof(int32_t));
    for (int64_t t = 0; t < T; t++) pos[t] = t % 4 == 3 ? (t % 8 == 3 ? -1 : (int32_t)P) : rand_int(r, 0, (int)P - 1);
    dsrt_tensor tp = T1(DSRT_I32, T);
    tput_i32(&tp, pos);
    ck_ok(dsrt_rope(E.s, &x, &tp, &tab, interleaved, &y));
    env_sync();
    for (int64_t row = 0; row < rows; row++) {
        int64_t t = row / (H ? H : 1);
        const float *v = xv + row * R;
        float *o = want + row * R;
        if (pos[t] < 0 || pos[t] >= P) {
            memcpy(o, v, sizeof(float) * (size_t)R); /* copied unchanged */
            continue;
        }
        for (int64_t i = 0; i < R / 2; i++) {
            int64_t a = interleaved ? 2 * i : i, b = interleaved ? 2 * i + 1 : i + R / 2;
            float c = cs[(pos[t] * (R / 2) + i) * 2], s = cs[(pos[t] * (R / 2) + i) * 2 + 1];
            float xa = v[a] * c, xb = v[b] * s; /* y_a = x_a cos - x_b sin, in fp32 */
            o[a] = xa - xb;
            float ya = v[b] * c, yb = v[a] * s; /* y_b = x_b cos + x_a sin */
            o[b] = ya + yb;
        }
    }
    char what[96];
    snprintf(what, sizeof what, "rope T=%lld H=%lld R=%lld il=%d %s->%s%s", (long long)T, (long long)H, (long long)R,
             interleaved, dsrt_dtype_name(dx), dsrt_dtype_name(dy), in_place ? " in place" : "");
    expect_exact(what, &y, want);
    free(cs);
    free(xv);
    free(want);
    free(pos);
}

START_TEST(test_rope)
{
    dsrt_rng r = {6};
    for (int il = 0; il < 2; il++) {
        rope_case(&r, 9, 0, 64, il, DSRT_BF16, DSRT_BF16, false, false);
        rope_case(&r, 8, 3, 16, il, DSRT_F32, DSRT_F32, false, true);
        rope_case(&r, 5, 2, 6, il, DSRT_BF16, DSRT_F32, false, false);
        rope_case(&r, 8, 4, 64, il, DSRT_BF16, DSRT_BF16, true, true); /* in place on a strided view */
        rope_case(&r, 1, 1, 2, il, DSRT_F16, DSRT_F16, true, false);
        rope_case(&r, 0, 2, 8, il, DSRT_F32, DSRT_F32, false, false);
    }
}
END_TEST

/* ---- swiglu, add ---- */

START_TEST(test_swiglu)
{
    dsrt_rng r = {7};
    const int64_t Ms[] = {4, 1, 0}, Is[] = {37, 256, 8};
    for (int c = 0; c < 3; c++)
        for (int k = 0; k < 3; k++) {
            int64_t M = Ms[c], I = Is[c];
            dsrt_tensor g = tnew_cols(FLOATS[k], 2, (int64_t[]){M, I}, 0, I), u = tnew_cols(FLOATS[(k + 1) % 3], 2, (int64_t[]){M, I}, I, 0);
            dsrt_tensor y = T2(FLOATS[(k + c) % 3], M, I);
            float *gv = falloc(M * I), *uv = falloc(M * I), *want = falloc(M * I);
            frand(&r, gv, M * I, 4.0f);
            frand(&r, uv, M * I, 2.0f);
            if (M * I > 4) {
                gv[0] = 100.0f;
                gv[1] = -100.0f;
                gv[2] = 0.0f;
            }
            tput(&g, gv);
            tput(&u, uv);
            tget(&g, gv);
            tget(&u, uv);
            ck_ok(dsrt_swiglu(E.s, &g, &u, &y));
            env_sync();
            for (int64_t i = 0; i < M * I; i++) {
                float si = gv[i] / (1.0f + expf(-gv[i])); /* silu(g) = g / (1 + exp(-g)), fp32 */
                want[i] = si * uv[i];
            }
            expect_exact("swiglu", &y, want);
            free(gv);
            free(uv);
            free(want);
        }
}
END_TEST

START_TEST(test_add)
{
    dsrt_rng r = {8};
    const int64_t shapes[][4] = {{37, 0, 0, 0}, {3, 5, 0, 0}, {2, 3, 4, 0}, {2, 1, 3, 9}};
    for (int nd = 1; nd <= 4; nd++)
        for (int k = 0; k < 3; k++)
            for (int alias = 0; alias < 3; alias++) {
                dsrt_tensor a = tnew_cols(FLOATS[k], nd, shapes[nd - 1], 1, 0), b = tnew(FLOATS[(k + 2) % 3], nd, shapes[nd - 1]);
                dsrt_tensor y = alias == 1 ? a : alias == 2 ? b : tnew(FLOATS[(k + 1) % 3], nd, shapes[nd - 1]);
                int64_t n = tnumel(&a);
                float *av = falloc(n), *bv = falloc(n), *want = falloc(n);
                special_values(&r, av, n);
                frand(&r, bv, n, 3.0f);
                tput(&a, av);
                tput(&b, bv);
                tget(&a, av);
                tget(&b, bv);
                ck_ok(dsrt_add(E.s, &a, &b, &y));
                env_sync();
                for (int64_t i = 0; i < n; i++) want[i] = av[i] + bv[i];
                expect_exact("add", &y, want);
                free(av);
                free(bv);
                free(want);
            }
}
END_TEST

/* ---- act_quant ---- */

static void act_quant_case(dsrt_rng *r, int64_t M, int64_t K, int blk, bool pow2, dsrt_dtype sdt, dsrt_dtype dx)
{
    dsrt_tensor x = tnew_cols(dx, 2, (int64_t[]){M, K}, 2, 1);
    dsrt_tensor q = tnew_cols(DSRT_E4M3, 2, (int64_t[]){M, K}, 0, 3);
    tscale(&q, sdt, 1, blk);
    float *xv = falloc(M * K), *qv = falloc(K);
    for (int64_t m = 0; m < M; m++) {
        float amp = (float)ldexp(1.0, rand_int(r, -20, 20));
        for (int64_t k = 0; k < K; k++) xv[m * K + k] = amp * dsrt_rng_normal(r);
        if (m == 1)
            for (int64_t k = 0; k < K; k++) xv[m * K + k] = 0; /* amax floor 1e-4 */
        if (m == 2 && K >= 3) { /* amax * fl(1/448) is about a power of two: the ceil is delicate */
            xv[m * K] = 448.0f;
            xv[m * K + 1] = -224.0f;
            if (K > 128) xv[m * K + 128] = 896.0f;
        }
        if (m == 3 && K >= 2) {
            xv[m * K] = 448.0f * 1.0000001f;
            xv[m * K + 1] = 1e-6f;
        }
    }
    tput(&x, xv);
    tget(&x, xv);
    ck_ok(dsrt_act_quant(E.s, &x, pow2, &q));
    env_sync();
    int64_t nb = (K + blk - 1) / blk;
    for (int64_t m = 0; m < M; m++)
        for (int64_t b = 0; b < nb; b++) {
            int64_t k0 = b * blk, n = K - k0 < blk ? K - k0 : blk;
            float s;
            ref_act_quant_block(xv + m * K + k0, n, pow2, qv, &s);
            float got_s = tscale_get(&q, 0, m, b);
            ck_assert_msg(got_s == s, "act_quant row %lld block %lld: scale %.9g, expected %.9g", (long long)m, (long long)b,
                          (double)got_s, (double)s);
            for (int64_t i = 0; i < n; i++) {
                uint8_t got = (uint8_t)tbits(&q, m * K + k0 + i), want = ref_e4m3_code(qv[i]);
                ck_assert_msg(got == want, "act_quant [%lld][%lld]: code %02x, expected %02x (x = %g, s = %g)", (long long)m,
                              (long long)(k0 + i), got, want, (double)xv[m * K + k0 + i], (double)s);
            }
        }
    free(xv);
    free(qv);
}

START_TEST(test_act_quant)
{
    dsrt_rng r = {9};
    for (int p = 0; p < 2; p++) {
        act_quant_case(&r, 5, 256, 128, p, DSRT_F32, DSRT_BF16);
        act_quant_case(&r, 4, 300, 128, p, DSRT_F32, DSRT_F32); /* a partial last block */
        act_quant_case(&r, 4, 1, 128, p, DSRT_F32, DSRT_F16);
        act_quant_case(&r, 6, 200, 64, p, DSRT_F32, DSRT_BF16); /* other block widths */
        act_quant_case(&r, 0, 128, 128, p, DSRT_F32, DSRT_BF16);
    }
    act_quant_case(&r, 5, 384, 128, true, DSRT_UE8M0, DSRT_BF16);
    act_quant_case(&r, 4, 130, 128, true, DSRT_UE8M0, DSRT_F32);
}
END_TEST

/* ---- hadamard ---- */

START_TEST(test_hadamard)
{
    dsrt_rng r = {10};
    const int64_t ns[] = {1, 2, 8, 128, 256};
    for (int c = 0; c < 5; c++)
        for (int k = 0; k < 3; k++) {
            int64_t M = 3, n = ns[c];
            dsrt_tensor x = tnew_cols(FLOATS[k], 2, (int64_t[]){M, n}, 0, 1), y = T2(FLOATS[(k + 1) % 3], M, n);
            float *xv = falloc(M * n);
            frand(&r, xv, M * n, 1.0f);
            tput(&x, xv);
            tget(&x, xv);
            ck_ok(dsrt_hadamard(E.s, &x, &y));
            env_sync();
            double *ref = dalloc(M * n), *mag = dalloc(M * n);
            for (int64_t m = 0; m < M; m++)
                for (int64_t j = 0; j < n; j++) {
                    double acc = 0, ma = 0;
                    for (int64_t i = 0; i < n; i++) {
                        int sign = __builtin_popcountll((unsigned long long)(i & j)) & 1 ? -1 : 1; /* H[i][j] */
                        acc += sign * (double)xv[m * n + i];
                        ma += fabs(xv[m * n + i]);
                    }
                    ref[m * n + j] = acc / sqrt((double)n);
                    mag[m * n + j] = ma / sqrt((double)n);
                }
            expect_close("hadamard", &y, ref, mag, 1e-5);
            free(xv);
            free(ref);
            free(mag);
        }
}
END_TEST

/* ---- cache_write ---- */

START_TEST(test_cache_write_plain)
{
    dsrt_rng r = {11};
    const int64_t T = 6, S = 10;
    const int64_t W1s[] = {512, 100}, W2s[] = {64, 0};
    for (int c = 0; c < 2; c++)
        for (int k = 0; k < 3; k++) {
            int64_t W1 = W1s[c], W2 = W2s[c], W = W1 + W2;
            dsrt_tensor src = tnew_cols(FLOATS[k], 2, (int64_t[]){T, W1}, 0, 2), src2 = T2(DSRT_BF16, T, W2 ? W2 : 1);
            dsrt_tensor cache = T2(FLOATS[(k + 1) % 3], S, W);
            float *sv = falloc(T * W1), *s2v = falloc(T * (W2 ? W2 : 1));
            frand(&r, sv, T * W1, 1.0f);
            frand(&r, s2v, T * W2, 1.0f);
            tput(&src, sv);
            tput(&src2, s2v);
            tget(&src, sv);
            tget(&src2, s2v);
            int32_t slots[6] = {7, -1, 0, 9, -5, 3};
            dsrt_tensor ts = T1(DSRT_I32, T);
            tput_i32(&ts, slots);
            ck_ok(dsrt_cache_write(E.s, &src, &ts, W2 ? &src2 : NULL, DSRT_CACHE_PLAIN, false, &cache));
            env_sync();
            size_t row = (size_t)W * dsrt_dtype_size(cache.dtype);
            bool used[10] = {false};
            for (int t = 0; t < T; t++) {
                if (slots[t] < 0) continue;
                used[slots[t]] = true;
                dsrt_tensor crow;
                ck_ok(dsrt_tensor_slice(&cache, 0, slots[t], 1, &crow));
                float *want = falloc(W);
                memcpy(want, sv + t * W1, sizeof(float) * (size_t)W1);
                memcpy(want + W1, s2v + t * W2, sizeof(float) * (size_t)W2);
                expect_exact("cache_write plain", &crow, want);
                free(want);
            }
            for (int sl = 0; sl < S; sl++)
                if (!used[sl]) expect_untouched("cache_write plain (skipped slot)", cache.buf, sl * row, (sl + 1) * row);
            free(sv);
            free(s2v);
        }
}
END_TEST

START_TEST(test_cache_write_fp8)
{
    /* The byte layout: W1 e4m3 codes (ACT_QUANT rule, 1x128 blocks), then ceil(W1/128) f32 scales, then
     * W2 bf16 values. 512 + 16 + 128 = 656 bytes for the latent, 128 + 4 = 132 for the indexer key. */
    dsrt_rng r = {12};
    const int64_t T = 5, S = 8;
    const int64_t W1s[] = {512, 128, 200}, W2s[] = {64, 0, 5};
    const int64_t bytes[] = {656, 132, 200 + 8 + 10};
    for (int c = 0; c < 3; c++)
        for (int p = 0; p < 2; p++) {
            int64_t W1 = W1s[c], W2 = W2s[c], nb = (W1 + 127) / 128, C = W1 + 4 * nb + 2 * W2;
            ck_assert_int_eq(C, bytes[c]);
            dsrt_tensor src = tnew_cols(DSRT_BF16, 2, (int64_t[]){T, W1}, 3, 0), src2 = T2(DSRT_F32, T, W2 ? W2 : 1);
            dsrt_tensor cache = T2(DSRT_U8, S, C);
            float *sv = falloc(T * W1), *s2v = falloc(T * (W2 ? W2 : 1)), *qv = falloc(128);
            for (int64_t t = 0; t < T; t++) {
                float amp = (float)ldexp(1.0, rand_int(&r, -8, 8));
                for (int64_t i = 0; i < W1; i++) sv[t * W1 + i] = amp * dsrt_rng_normal(&r);
            }
            frand(&r, s2v, T * W2, 10.0f);
            tput(&src, sv);
            tput(&src2, s2v);
            tget(&src, sv);
            int32_t slots[5] = {6, -1, 0, 3, 1};
            dsrt_tensor ts = T1(DSRT_I32, T);
            tput_i32(&ts, slots);
            ck_ok(dsrt_cache_write(E.s, &src, &ts, W2 ? &src2 : NULL, DSRT_CACHE_FP8, p, &cache));
            env_sync();
            const uint8_t *base = tbase(&cache);
            bool used[8] = {false};
            for (int t = 0; t < T; t++) {
                if (slots[t] < 0) continue;
                used[slots[t]] = true;
                const uint8_t *row = base + slots[t] * C;
                for (int64_t b = 0; b < nb; b++) {
                    int64_t k0 = b * 128, n = W1 - k0 < 128 ? W1 - k0 : 128;
                    float s, got_s;
                    ref_act_quant_block(sv + t * W1 + k0, n, p, qv, &s);
                    memcpy(&got_s, row + W1 + 4 * b, 4);
                    ck_assert_msg(got_s == s, "fp8 cache W1=%lld slot %d block %lld: scale %.9g, expected %.9g", (long long)W1,
                                  slots[t], (long long)b, (double)got_s, (double)s);
                    for (int64_t i = 0; i < n; i++)
                        ck_assert_msg(row[k0 + i] == ref_e4m3_code(qv[i]), "fp8 cache slot %d byte %lld: %02x, expected %02x",
                                      slots[t], (long long)(k0 + i), row[k0 + i], ref_e4m3_code(qv[i]));
                }
                for (int64_t i = 0; i < W2; i++) {
                    uint16_t h;
                    memcpy(&h, row + W1 + 4 * nb + 2 * i, 2);
                    ck_assert_msg(h == ref_bf16_bits(s2v[t * W2 + i]), "fp8 cache tail slot %d [%lld]: %04x, expected %04x",
                                  slots[t], (long long)i, h, ref_bf16_bits(s2v[t * W2 + i]));
                }
            }
            for (int sl = 0; sl < S; sl++)
                if (!used[sl]) expect_untouched("cache_write fp8 (skipped slot)", cache.buf, (size_t)(sl * C), (size_t)((sl + 1) * C));
            free(sv);
            free(s2v);
            free(qv);
        }
}
END_TEST

int main(void)
{
    Suite *s = ops_suite("cpu_ops");
    TCase *tc = ops_tcase(s, "elementwise");
    tcase_add_test(tc, test_convert_floats);
    tcase_add_test(tc, test_convert_scaled_fp8);
    tcase_add_test(tc, test_convert_integers_and_empty);
    tcase_add_test(tc, test_embed);
    tcase_add_test(tc, test_rope);
    tcase_add_test(tc, test_swiglu);
    tcase_add_test(tc, test_add);
    tc = ops_tcase(s, "norms");
    tcase_add_test(tc, test_rms_norm);
    tcase_add_test(tc, test_layer_norm);
    tc = ops_tcase(s, "quant");
    tcase_add_test(tc, test_act_quant);
    tcase_add_test(tc, test_hadamard);
    tcase_add_test(tc, test_cache_write_plain);
    tcase_add_test(tc, test_cache_write_fp8);
    return dsrt_run_suite(s);
}
